"""The experiment manager (seed 000's ``exp_manager``): where a run writes, what it logs, how it
checkpoints, and from where it resumes.

A run writes everything under ``<exp_dir>/<name>/<version>/``: ``metrics.csv`` (CSV logger),
TensorBoard events, ``wandb/`` (offline unless configured), ``config.yaml`` (the resolved task)
and ``checkpoints/``. With ``resume_if_exists`` (the default) and no explicit ``version``, a new
run of the same ``name`` reuses the newest version directory and continues from its last
checkpoint, so re-running a command after a crash picks up where it stopped.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optica.run.errors import ConfigError
from optica.train.throughput import ThroughputConfig

DEFAULT_FILENAME = "{name}--{reduced_train_loss:.2f}-{step}-{consumed_samples}"


@dataclass
class CheckpointConfig:
    """Seed 000's ``checkpoint_callback_params``.

    ``filename`` is a Lightning template; ``{name}`` is the experiment name and other fields are
    logged metrics (``reduced_train_loss``, ``consumed_samples``, ``step``, ``epoch``).
    ``every_n_train_steps`` and ``every_n_epochs`` are mutually exclusive (0/None = off).
    """

    monitor: str | None = "reduced_train_loss"
    mode: str = "min"
    save_top_k: int = 1
    save_last: bool = True
    every_n_train_steps: int | None = None
    every_n_epochs: int | None = None
    filename: str = DEFAULT_FILENAME
    save_weights_only: bool = False

    def __post_init__(self) -> None:
        if self.every_n_train_steps and self.every_n_epochs:
            raise ConfigError(
                "log.ckpt: every_n_train_steps and every_n_epochs are mutually exclusive"
            )
        if self.mode not in ("min", "max"):
            raise ConfigError(f"log.ckpt.mode must be 'min' or 'max', not '{self.mode}'")
        if self.monitor is None and self.save_top_k not in (-1, 0, 1):
            raise ConfigError(
                f"log.ckpt.save_top_k={self.save_top_k} needs a metric to rank by: set "
                "log.ckpt.monitor (e.g. reduced_train_loss) or save_top_k=-1 (keep all)"
            )


@dataclass
class EMAConfig:
    """Seed 000's ``ema`` block: an exponential moving average of the weights.

    ``validate_original_weights`` validates the raw weights instead of the average;
    ``cpu_offload`` keeps the average on the CPU.
    """

    decay: float = 0.9999
    every_n_steps: int = 1
    validate_original_weights: bool = False
    cpu_offload: bool = False

    def __post_init__(self) -> None:
        if not 0.0 < self.decay < 1.0:
            raise ConfigError(f"log.ema.decay must be in (0, 1), not {self.decay}")


@dataclass
class ExpManager:
    """Where and how a run records itself (``log=`` of :func:`optica.finetune`)."""

    exp_dir: str = "./optica_experiments"
    name: str = "default"
    version: str | None = None
    tensorboard: bool = True
    csv: bool = True
    wandb: bool = False
    wandb_logger_kwargs: dict[str, Any] = field(default_factory=dict)
    ckpt: CheckpointConfig | None = field(default_factory=CheckpointConfig)
    ema: EMAConfig | None = None
    save_config: bool = True
    # tokens/s, samples/s, model TFLOPS and MFU (optica.train.throughput); None turns it off.
    throughput: ThroughputConfig | None = field(default_factory=ThroughputConfig)

    def run_dir(self, *, resume_if_exists: bool) -> Path:
        """``<exp_dir>/<name>/<version>``: the given version, else the newest existing one when
        resuming, else a new timestamped one."""
        base = Path(self.exp_dir).expanduser() / self.name
        if self.version:
            return base / self.version
        existing = sorted(p for p in base.glob("*") if p.is_dir()) if base.exists() else []
        if resume_if_exists and existing:
            return max(existing, key=lambda p: p.stat().st_mtime)
        return base / datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")


@dataclass
class RestoreConfig:
    """Start from an imported optica checkpoint (weights only): ``path`` is a checkpoint dir
    made by ``optica import`` (or ``nemo://``-style ``hf://org/name`` resolved there)."""

    path: str
    load_model_state: bool = True


@dataclass
class ResumeConfig:
    """Seed 000's resume keys.

    Args:
        resume_if_exists: Continue from the run directory's last checkpoint when there is one.
        resume_ignore_no_checkpoint: With ``resume_if_exists``, start fresh when there is none
            (otherwise that is an error).
        resume_from_checkpoint: An explicit Lightning checkpoint to continue from.
        restore_config: Initial weights from an imported checkpoint when not resuming.
    """

    resume_if_exists: bool = True
    resume_ignore_no_checkpoint: bool = True
    resume_from_checkpoint: str | None = None
    restore_config: RestoreConfig | None = None

    def checkpoint_path(self, run_dir: Path) -> Path | None:
        """The Lightning checkpoint to resume from, or None to start fresh."""
        if self.resume_from_checkpoint:
            path = Path(self.resume_from_checkpoint).expanduser()
            if not path.exists():
                raise ConfigError(f"resume.resume_from_checkpoint: {path} does not exist")
            return path
        if not self.resume_if_exists:
            return None
        found = latest_checkpoint(run_dir / "checkpoints")
        if found is None and not self.resume_ignore_no_checkpoint:
            raise ConfigError(
                f"resume: no checkpoint in {run_dir / 'checkpoints'} "
                "(set resume.resume_ignore_no_checkpoint=true to start fresh)"
            )
        return found


def latest_checkpoint(directory: Path) -> Path | None:
    """``last.ckpt`` if present, else the most recently written ``*.ckpt``: a file (one process)
    or a directory (a distributed checkpoint of ``ParallelStrategy``); the hidden
    ``.<name>.partial`` of an unfinished save is never one."""
    if not directory.is_dir():
        return None
    last = directory / "last.ckpt"
    if last.exists():
        return last
    candidates = [p for p in directory.glob("*.ckpt") if not p.name.startswith(".")]
    return max(candidates, key=lambda p: p.stat().st_mtime, default=None)
