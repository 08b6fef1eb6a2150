"""Optimizer steps inside the backward pass: each parameter is updated as soon as its gradient is
complete, and the gradient is freed at once (torchtune's ``optimizer_in_bwd``).

A step then never holds every gradient at the same time: the peak falls by up to one copy of
the trained weights (the gradients), at no cost in arithmetic. The update is the optimizer's
own, on the optimizer's own state, so results are the same bit for bit, and checkpoints,
learning-rate schedules and ``optimizer.step()`` (which then finds no gradient left to apply)
work unchanged.

It needs every gradient to be final when its parameter's accumulation ends, so it excludes
gradient accumulation, clipping by the global norm (which needs all gradients first), data
and model parallelism (gradients are reduced after the hook; pipelines run several backward
passes per step) and fp16 loss scaling; see :func:`step_in_backward_problem`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.hooks import RemovableHandle


def step_in_backward(optimizer: torch.optim.Optimizer) -> list[RemovableHandle]:
    """Makes ``optimizer`` update each of its parameters when the backward pass has finished
    that parameter's gradient, then drop the gradient. Returns the hook handles (``.remove()``
    them to go back to stepping after the backward pass)."""
    stepper = _ParameterStepper(optimizer)
    params = [param for group in optimizer.param_groups for param in group["params"]]
    return [param.register_post_accumulate_grad_hook(stepper) for param in params]


class _ParameterStepper:
    """``optimizer.step()`` over one parameter: every group's parameter list is narrowed for the
    call (to ``[param]`` in its own group, empty elsewhere) and put back after."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        self._groups: list[dict[str, Any]] | None = None
        self._group_of: dict[int, int] = {}

    def __call__(self, param: torch.Tensor) -> None:
        groups = self.optimizer.param_groups
        own = self._group_index(groups, param)
        saved = [group["params"] for group in groups]
        try:
            for index, group in enumerate(groups):
                group["params"] = [param] if index == own else []
            self.optimizer.step()
        finally:
            for group, params in zip(groups, saved, strict=True):
                group["params"] = params
        param.grad = None

    def _group_index(self, groups: list[dict[str, Any]], param: torch.Tensor) -> int:
        # NOTE: looked up per call, not captured: ``load_state_dict`` (a resumed run) replaces
        # the group dicts, and a stale one would leave the parameter out of its own step.
        if groups is not self._groups:
            self._groups = groups
            self._group_of = {id(p): i for i, group in enumerate(groups) for p in group["params"]}
        return self._group_of[id(param)]


def step_in_backward_problem(
    *,
    world_size: int,
    accumulate_grad_batches: int,
    gradient_clip_val: float | None,
    fp16_scaler: bool,
) -> str | None:
    """Why the optimizer cannot step inside the backward pass of this run, or None if it can."""
    if world_size > 1:
        return (
            f"it runs in one process only (this run has {world_size}): data and model "
            "parallelism reduce gradients after the backward hooks"
        )
    if accumulate_grad_batches > 1:
        return f"gradients must not accumulate (accumulate_grad_batches={accumulate_grad_batches})"
    if gradient_clip_val:
        return (
            f"clipping by the global norm needs every gradient first (trainer.gradient_clip_val="
            f"{gradient_clip_val}; set it to None)"
        )
    if fp16_scaler:
        return "fp16 loss scaling unscales all gradients before the step (use bf16)"
    return None
