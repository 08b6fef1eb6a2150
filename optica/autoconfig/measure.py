"""What a candidate's run measures about itself, and the time limit it keeps.

:class:`RunProbe` is a Lightning callback the runner adds to every candidate's trainer. It

* times each optimizer step (wall clock between consecutive step ends; the first step, which
  pays for warm-up, allocation and compilation, is kept but left out of the median);
* records the peak memory of the process *above what it held before the model existed*: on a
  GPU the allocator's peak (``max_memory_allocated``) after a reset; on a CPU the kernel's
  peak RSS (``VmHWM``, reset through ``/proc/self/clear_refs``) minus the RSS at the reset —
  the interpreter, torch and Lightning hold a few hundred MB that no memory model predicts —
  and minus the library code paged in since (growth of ``RssFile``: the first forward and
  backward pull in oneDNN and autograd code, file-backed pages that are not training memory).
  The anonymous RSS sampled when every activation, and then every gradient, is alive is kept
  as a cross-check (``sampled_anonymous_bytes``);
* stops training once ``max_minutes`` have passed since the trainer set up (every rank agrees
  to stop at the same step, so no collective is left waiting); the executor's timeout is the
  backstop for a step that never ends;
* writes ``autoconfig/rank_<R>.json`` in the run directory at the end (rank 0 of a
  pipeline holds the first stage; the runner takes the maximum over ranks).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


class RunProbe(pl.Callback):
    """Step times, peak memory and a time limit for one candidate's run (module docstring).

    Args:
        output_dir: Where ``rank_<R>.json`` goes (the run directory's ``autoconfig/``).
        max_minutes: Stop training after this many minutes (None: no limit).
    """

    def __init__(self, output_dir: str, max_minutes: float | None = None) -> None:
        self.output_dir = output_dir
        self.max_minutes = max_minutes
        self._start = self._last = 0.0
        self._step = 0
        self._times: list[float] = []
        self._baseline = self._anon_baseline = self._anon_peak = self._file_baseline = 0
        self._stopped_by_limit = False

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # NOTE: Lightning calls this before configure_model: the weights do not exist yet.
        self._baseline = reset_peak_memory(trainer.strategy.root_device)
        self._anon_baseline = self._anon_peak = _status_bytes("RssAnon")
        self._file_baseline = _status_bytes("RssFile")
        self._start = time.monotonic()

    def on_before_backward(self, trainer: pl.Trainer, *args: Any) -> None:
        self._sample_anonymous()  # every activation of the micro-batch is alive here

    def on_before_optimizer_step(self, trainer: pl.Trainer, *args: Any) -> None:
        self._sample_anonymous()  # every gradient is alive here

    def _sample_anonymous(self) -> None:
        self._anon_peak = max(self._anon_peak, _status_bytes("RssAnon"))

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last, self._step = time.monotonic(), trainer.global_step

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.global_step == self._step:  # inside a gradient-accumulation cycle
            return
        now = time.monotonic()
        self._times.append(now - self._last)
        self._last, self._step = now, trainer.global_step
        if self.max_minutes is not None:
            over = now - self._start > self.max_minutes * 60
            if trainer.strategy.reduce_boolean_decision(over, all=False):
                self._stopped_by_limit = True
                trainer.should_stop = True

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        peak = peak_memory(trainer.strategy.root_device)
        code = max(_status_bytes("RssFile") - self._file_baseline, 0)
        if trainer.strategy.root_device.type == "cuda":
            code = 0
        record = {
            "rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "steps": len(self._times),
            "step_times_s": self._times,
            "step_time_s": median_step_time(self._times),
            "peak_memory_bytes": max(peak - self._baseline - code, 0),
            "code_paged_in_bytes": code,
            "baseline_memory_bytes": self._baseline,
            "sampled_anonymous_bytes": self._anon_peak - self._anon_baseline,
            "device": trainer.strategy.root_device.type,
            "stopped_by_time_limit": self._stopped_by_limit,
            "elapsed_s": time.monotonic() - self._start,
        }
        directory = Path(self.output_dir)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"rank_{trainer.global_rank}.json"
        partial = path.with_name(f".{path.name}.partial")
        partial.write_text(json.dumps(record, indent=1))
        os.replace(partial, path)


def median_step_time(times: list[float]) -> float | None:
    """The median step time without the first (warm-up) step, when there is more than one."""
    if not times:
        return None
    return statistics.median(times[1:] if len(times) > 1 else times)


def reset_peak_memory(device: torch.device) -> int:
    """Starts a new peak; returns the bytes the process holds now (the baseline)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device)
    if _CLEAR_REFS.exists():
        _CLEAR_REFS.write_text("5")  # "5" resets VmHWM to the current RSS (Linux >= 4.0)
    return _status_bytes("VmRSS")


def peak_memory(device: torch.device) -> int:
    """The process's peak bytes since :func:`reset_peak_memory`."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device)
    return _status_bytes("VmHWM")


def read_measurements(directory: Path) -> list[dict[str, Any]]:
    """Every rank's record in ``directory`` (empty if the run wrote none)."""
    return [json.loads(p.read_text()) for p in sorted(Path(directory).glob("rank_*.json"))]


def _status_bytes(field: str) -> int:
    """A ``kB`` line of ``/proc/self/status`` in bytes (0 where there is no procfs)."""
    if not _STATUS.exists():
        return 0
    for line in _STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0
