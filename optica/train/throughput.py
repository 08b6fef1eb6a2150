"""Throughput and MFU of a training run: tokens/s, samples/s, model TFLOPS per device and model
FLOPs utilisation (Chowdhery et al., 2022, "PaLM", appendix B), logged with the other metrics and
printed at the end of the run.

Model FLOPs come from ``optica.autoconfig.flops`` — the formulas the auto-configurator sizes jobs
with, so there is one definition — applied to the model's shape (its family's ``shape``) at what
each batch holds: its sequence length (with every image's tokens spliced in) and its images.
They count the forward and the backward training needs (frozen parts pass no weight gradients;
a LoRA language model only input gradients), never recomputation: MFU, not HFU.

Time is measured over windows of ``trainer.log_every_n_steps`` optimizer steps; on a GPU the
device is synchronised only at a window's end, never in every step.

    log=ExpManager(throughput=ThroughputConfig(peak_tflops=989))   # H200 dense bf16
    optica finetune ... log.throughput.peak_tflops=989
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info

from optica.autoconfig.flops import first_stage_flops, model_flops_per_step
from optica.autoconfig.shapes import ModelShape
from optica.autoconfig.training import Lora, Training
from optica.models.errors import UnsupportedModelError
from optica.models.registry import family_for_model
from optica.run.errors import ConfigError
from optica.train.module import data_parallel_size

PREFIX = "throughput/"


@dataclass
class ThroughputConfig:
    """``log.throughput``.

    Args:
        peak_tflops: One device's peak for the run's precision, TFLOP/s (H100/H200 dense bf16:
            989; see ``optica.autoconfig.hardware.GPUS``); None logs no MFU.
        warmup_steps: Optimizer steps left out of the end-of-run average (compilation, allocator
            and data-loader warm-up).
    """

    peak_tflops: float | None = None
    warmup_steps: int = 1

    def __post_init__(self) -> None:
        if self.peak_tflops is not None and not self.peak_tflops > 0:
            raise ConfigError(f"log.throughput.peak_tflops must be > 0, got {self.peak_tflops}")
        if self.warmup_steps < 0:
            raise ConfigError(f"log.throughput.warmup_steps must be >= 0, not {self.warmup_steps}")


@dataclass(frozen=True)
class Work:
    """What one device processed: samples, tokens and model FLOPs."""

    samples: float = 0.0
    tokens: float = 0.0
    flops: float = 0.0

    def __add__(self, other: Work) -> Work:
        return Work(self.samples + other.samples, self.tokens + other.tokens,
                    self.flops + other.flops)  # fmt: skip


def model_shape(model: torch.nn.Module) -> ModelShape | None:
    """The model's shape from its family's parallel plan, or None (no FLOPs then)."""
    try:
        plan = family_for_model(model).parallel_plan
    except UnsupportedModelError:  # not a registered optica model: throughput without FLOPs
        return None
    return None if plan is None else plan.shape(model.config)


def training_of(model: torch.nn.Module, precision: str = "bf16-mixed") -> Training:
    """Which parts learn, read from ``requires_grad`` and LoRA adapters (parts named as
    ``optica.train.peft.freeze`` names them)."""
    lora_ranks = [m.lora_a.out_features for m in model.modules() if hasattr(m, "lora_a")]
    return Training(
        precision="bf16-mixed" if "bf16" in str(precision) else "32",
        lora=Lora(dim=lora_ranks[0]) if lora_ranks else None,
        freeze_vision=_frozen(getattr(model, "vision_model", None)),
        freeze_language=not lora_ranks and bool(_frozen(getattr(model, "language_model", None))),
    )


def _frozen(part: torch.nn.Module | None) -> bool | None:
    if part is None:
        return None
    return not any(p.requires_grad for p in part.parameters())


def batch_work(shape: ModelShape | None, batch: dict[str, Any], training: Training) -> Work:
    """Samples, tokens and model FLOPs (forward + backward) of one micro-batch.

    A VLM's sequence is the text plus each image's tokens in place of its placeholder; images are
    counted from ``images`` (no look at the ids, so no device sync).
    """
    labels = batch.get("labels") if isinstance(batch, dict) else None
    if labels is None:  # not an optica batch: nothing to count
        return Work()
    samples = int(labels.shape[0])
    if shape is None or shape.language is None:
        tokens = samples * (shape.seq_length if shape else 0)
        flops = model_flops_per_step(shape, samples, training) if shape else 0.0
        return Work(samples, tokens, flops)
    text = int(batch["input_ids"].shape[1])
    images = batch.get("images")
    count = 0 if images is None or shape.vision is None else int(images.shape[0])
    seq = text + round(count * (shape.image_tokens - 1) / samples)
    text_shape = dataclasses.replace(shape.with_seq_length(seq), images_per_sample=0)
    per_image = first_stage_flops(dataclasses.replace(text_shape, images_per_sample=1), training)
    flops = model_flops_per_step(text_shape, samples, training) + count * per_image
    return Work(samples, samples * seq, flops)


def rates(work: Work, seconds: float, *, dp: int, peak_tflops: float | None) -> dict[str, float]:
    """Per-second figures: tokens and samples over all data-parallel replicas, TFLOPS and MFU
    per device (``work`` is one device's)."""
    tflops = work.flops / seconds / 1e12
    found = {
        PREFIX + "tokens_per_s": work.tokens * dp / seconds,
        PREFIX + "samples_per_s": work.samples * dp / seconds,
        PREFIX + "tflops_per_device": tflops,
    }
    if peak_tflops:
        found[PREFIX + "mfu"] = tflops / peak_tflops
    return found


class ThroughputMonitor(pl.Callback):
    """Logs :func:`rates` every ``log_every_n_steps`` optimizer steps and prints the run's
    average (after ``warmup_steps``) when training ends; the average is kept in ``summary``."""

    def __init__(self, config: ThroughputConfig | None = None) -> None:
        self.config = config or ThroughputConfig()
        self.summary: dict[str, float] = {}
        self._shape: ModelShape | None = None
        self._training: Training | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        model = getattr(pl_module, "model", pl_module)
        self._shape = model_shape(model)
        self._training = training_of(model, str(trainer.precision))
        self._window, self._total = Work(), Work()
        self._total_seconds, self._last_step = 0.0, trainer.global_step
        self._started = self._now(pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._window = self._window + batch_work(self._shape, batch, self._training)
        step = trainer.global_step
        if step == self._last_step or step % max(trainer.log_every_n_steps, 1):
            return
        seconds = self._now(pl_module) - self._started
        metrics = self._rates(trainer, self._window, seconds)
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)
        if self._last_step >= self.config.warmup_steps:
            self._total = self._total + self._window
            self._total_seconds += seconds
        self._window, self._last_step, self._started = Work(), step, self._now(pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._total_seconds <= 0:
            return
        self.summary = self._rates(trainer, self._total, self._total_seconds)
        rank_zero_info(describe(self.summary, self.config.peak_tflops))

    def _rates(self, trainer: pl.Trainer, work: Work, seconds: float) -> dict[str, float]:
        dp = data_parallel_size(trainer)
        return rates(work, max(seconds, 1e-9), dp=dp, peak_tflops=self.config.peak_tflops)

    @staticmethod
    def _now(pl_module: pl.LightningModule) -> float:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)  # once per window: the queue drained
        return time.perf_counter()


def describe(summary: dict[str, float], peak_tflops: float | None) -> str:
    """One line for the end of a run."""
    line = (
        f"throughput: {summary[PREFIX + 'tokens_per_s']:.1f} tokens/s, "
        f"{summary[PREFIX + 'samples_per_s']:.2f} samples/s, "
        f"{summary[PREFIX + 'tflops_per_device']:.3g} model TFLOPS per device"
    )
    if PREFIX + "mfu" in summary:
        line += f", MFU {100 * summary[PREFIX + 'mfu']:.1f}% of {peak_tflops:g} TFLOPS"
    return line
