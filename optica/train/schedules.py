"""Learning-rate schedules: seed 000's ``WarmupPolicy``, cosine annealing with warm-up, constant.

Each schedule is a small config dataclass whose ``factor(step, max_steps)`` is the multiplier of
each group's peak LR at optimizer step ``step`` (0-based); :func:`build_scheduler` wraps it in a
``LambdaLR`` stepped once per optimizer step. Warm-up is linear from ``1/(warmup_steps)`` of the
peak (never 0, so the first step already moves) to the peak at ``step = warmup_steps - 1``, as
NeMo's ``WarmupPolicy`` does; ``warmup_ratio`` is a fraction of ``max_steps`` instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from optica.run.errors import ConfigError


@dataclass
class _Warmup:
    warmup_steps: int | None = None
    warmup_ratio: float | None = None

    def __post_init__(self) -> None:
        if self.warmup_steps is not None and self.warmup_ratio is not None:
            raise ConfigError("optim.sched: give warmup_steps or warmup_ratio, not both")
        if self.warmup_ratio is not None and not 0.0 <= self.warmup_ratio < 1.0:
            raise ConfigError(
                f"optim.sched.warmup_ratio must be in [0, 1), not {self.warmup_ratio}"
            )
        if self.warmup_steps is not None and self.warmup_steps < 0:
            raise ConfigError(f"optim.sched.warmup_steps must be >= 0, not {self.warmup_steps}")

    def resolved_warmup(self, max_steps: int | None) -> int:
        if self.warmup_ratio is None:
            return self.warmup_steps or 0
        if not max_steps or max_steps < 0:
            raise ConfigError("optim.sched.warmup_ratio needs trainer.max_steps to be set")
        return int(self.warmup_ratio * max_steps)

    def warmup_factor(self, step: int, warmup: int) -> float | None:
        """The warm-up multiplier, or None once warm-up is over."""
        return (step + 1) / warmup if step < warmup else None


@dataclass
class WarmupPolicy(_Warmup):
    """Linear warm-up to the peak LR, then constant (seed 000's default schedule)."""

    def factor(self, step: int, max_steps: int | None) -> float:
        warm = self.warmup_factor(step, self.resolved_warmup(max_steps))
        return 1.0 if warm is None else warm


@dataclass
class CosineAnnealing(_Warmup):
    """Linear warm-up, ``constant_steps`` at the peak, then cosine decay to ``min_lr``.

    ``min_lr`` is absolute for the default group and scales with each group's own peak
    (a group at half the LR decays to half of ``min_lr``).
    """

    constant_steps: int = 0
    min_lr: float = 0.0
    max_lr: float | None = None  # the optimizer's lr; filled in by build_scheduler

    def factor(self, step: int, max_steps: int | None) -> float:
        if not max_steps or max_steps < 0:
            raise ConfigError("optim.sched: cosine annealing needs trainer.max_steps to be set")
        warmup = self.resolved_warmup(max_steps)
        warm = self.warmup_factor(step, warmup)
        if warm is not None:
            return warm
        decay_start = warmup + self.constant_steps
        if step < decay_start:
            return 1.0
        progress = min(1.0, (step - decay_start) / max(1, max_steps - decay_start))
        floor = self.min_lr / self.max_lr if self.max_lr else 0.0
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass
class Constant:
    """The peak LR throughout."""

    def factor(self, step: int, max_steps: int | None) -> float:
        return 1.0


Scheduler = WarmupPolicy | CosineAnnealing | Constant


def build_scheduler(
    schedule: Scheduler | None,
    optimizer: torch.optim.Optimizer,
    *,
    max_steps: int | None,
    lr: float,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` over ``optimizer`` following ``schedule`` (constant when None)."""
    schedule = schedule if schedule is not None else Constant()
    if isinstance(schedule, CosineAnnealing):
        if schedule.min_lr > lr:
            raise ConfigError(f"optim.sched.min_lr ({schedule.min_lr}) exceeds optim.lr ({lr})")
        if schedule.max_lr is None:
            schedule = CosineAnnealing(**{**vars(schedule), "max_lr": lr})
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda=lambda step: schedule.factor(step, max_steps)
    )
