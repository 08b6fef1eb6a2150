"""What a candidate's run measures about itself, and the time limit it keeps.

:class:`RunProbe` is a Lightning callback the runner adds to every candidate's trainer. It

* times each optimizer step (wall clock between consecutive step ends; the first step, which
  pays for warm-up, allocation and compilation, is kept but left out of the median);
* records the peak memory of the process *above what it held before the model existed*, as
  the memory model counts it — the bytes of live tensors: on a GPU the allocator's peak
  (``max_memory_allocated``) after a reset; on a CPU the bytes of the model's parameters and
  buffers when training starts plus the peak, over the first ``PROFILED_STEPS`` optimizer steps,
  of the tensors made since (the CPU allocator's allocation and free events that torch's
  profiler records; the peak is reached by then: the second step is the first with Adam's
  moments alive through the passes). The profiler records the frees of the threads it follows
  only, and a gloo worker thread can drop the last reference to a tensor: tensors left from the
  set-up are not followed (the whole tensor a shard was scattered from was freed there), and a
  block still held at the end that no live tensor owns is taken as freed when the scope that
  made it ended (:func:`unrecorded_frees`). Those steps are left out of the step time when
  there are more. Next to it, the process's own peak: on a GPU the allocator's
  reserved peak; on a CPU the kernel's peak RSS (``VmHWM``, reset through
  ``/proc/self/clear_refs``) minus the RSS at the reset and minus the library code paged in
  since (growth of ``RssFile``), which adds what no memory model of tensors predicts: the
  runtime's buffers (gloo, oneDNN) and freed pages glibc keeps;
* stops training once ``max_minutes`` have passed since the trainer set up (every rank agrees
  to stop at the same step, so no collective is left waiting); the executor's timeout is the
  backstop for a step that never ends;
* writes ``autoconfig/rank_<R>.json`` in the run directory at the end (rank 0 of a
  pipeline holds the first stage; the runner takes the maximum over ranks).
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

PROFILED_STEPS = 2

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
        self._baseline = self._file_baseline = 0
        self._tensors: CpuTensorPeak | None = None
        self._tensor_peak: int | None = None
        self._model_bytes = 0
        self._stopped_by_limit = False

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # NOTE: Lightning calls this before configure_model: the weights do not exist yet.
        self._baseline = reset_peak_memory(trainer.strategy.root_device)
        self._file_baseline = _status_bytes("RssFile")
        self._start = time.monotonic()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.strategy.root_device.type == "cpu":
            self._model_bytes = module_tensor_bytes(pl_module)
            self._tensors = CpuTensorPeak()
        self._last, self._step = time.monotonic(), trainer.global_step

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any
    ) -> None:
        if trainer.global_step == self._step:  # inside a gradient-accumulation cycle
            return
        now = time.monotonic()
        self._times.append(now - self._last)
        self._step = trainer.global_step
        if len(self._times) == PROFILED_STEPS:
            self._stop_tensor_peak(trainer, pl_module)
        self._last = time.monotonic()
        if self.max_minutes is not None:
            over = now - self._start > self.max_minutes * 60
            if trainer.strategy.reduce_boolean_decision(over, all=False):
                self._stopped_by_limit = True
                trainer.should_stop = True

    def _stop_tensor_peak(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._tensors is not None:
            alive = live_storage_addresses(pl_module, trainer.optimizers)
            self._tensor_peak, self._tensors = self._tensors.stop(alive), None

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if self._tensors is not None:
            self._tensors.discard()
            self._tensors = None

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._stop_tensor_peak(trainer, pl_module)
        device = trainer.strategy.root_device
        process, code = process_peak_memory(device) - self._baseline, 0
        if device.type == "cpu":  # the first steps ran under the profiler
            code = max(_status_bytes("RssFile") - self._file_baseline, 0)
            tensors = self._model_bytes + (self._tensor_peak or 0)
            leave_out = PROFILED_STEPS
        else:
            tensors, leave_out = peak_memory(device) - self._baseline, 1
        record = {
            "rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "steps": len(self._times),
            "step_times_s": self._times,
            "step_time_s": median_step_time(self._times, leave_out=leave_out),
            "peak_memory_bytes": max(tensors, 0),
            "process_peak_memory_bytes": max(process - code, 0),
            "code_paged_in_bytes": code,
            "baseline_memory_bytes": self._baseline,
            "device": device.type,
            "stopped_by_time_limit": self._stopped_by_limit,
            "elapsed_s": time.monotonic() - self._start,
        }
        directory = Path(self.output_dir)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"rank_{trainer.global_rank}.json"
        partial = path.with_name(f".{path.name}.partial")
        partial.write_text(json.dumps(record, indent=1))
        os.replace(partial, path)


def module_tensor_bytes(module: torch.nn.Module) -> int:
    """Bytes of the storages behind ``module``'s parameters and buffers on this rank (a
    DTensor's local shard; each storage once)."""
    storages = {}
    for tensor in [*module.parameters(), *module.buffers()]:
        local = tensor.to_local() if hasattr(tensor, "to_local") else tensor
        storage = local.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values())


class CpuTensorPeak:
    """The peak bytes of live CPU tensors made between construction and :meth:`stop`, from the
    CPU allocator's allocation and free events that torch's profiler records with
    ``profile_memory`` (no operator shapes or stacks; :func:`live_peak`). Blocks made before
    construction are not counted: the probe starts it before the model exists."""

    def __init__(self) -> None:
        from torch.profiler import ProfilerActivity, profile

        self._profiler = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
        self._profiler.start()

    def stop(self, alive: set[int] | None = None) -> int:
        """The peak. ``alive``: the addresses of the storages alive now
        (:func:`live_storage_addresses`); a block still held at the end whose address is not
        among them was freed where the profiler does not look (:func:`unrecorded_frees`).
        None: every block held at the end is taken as alive."""
        self._profiler.stop()
        results = self._profiler.profiler.kineto_results  # type: ignore[union-attr]
        allocations = _cpu_allocations(results.experimental_event_tree())
        events = [(a.time_ns, a.address, a.bytes) for a in allocations]
        if alive is not None:
            events += unrecorded_frees(allocations, alive)
        return live_peak(events)

    def discard(self) -> None:
        """Stop without a result (training failed). A profiler left running when the process
        exits can crash it: torch tears its callbacks down under it."""
        self._profiler.stop()


@dataclasses.dataclass(frozen=True)
class Allocation:
    """One CPU allocator event: ``bytes`` positive allocated, negative freed; ``scope_end_ns``
    is when the innermost scope around it that is not an operator ended (a module's or an
    autograd function's, a backward node's evaluation, a collective's ``gloo:`` scope), or the
    event's own time where there is none."""

    time_ns: int
    address: int
    bytes: int
    scope_end_ns: int


def unrecorded_frees(allocations: list[Allocation], alive: set[int]) -> list[tuple[int, int, int]]:
    """Free events for the blocks still held after ``allocations`` whose address is not in
    ``alive``: the profiler records the frees of the threads it follows only, and a gloo worker
    thread can drop the last reference to a collective's output after the training thread is
    done with it (a race: on two processes under TP, 1 step in 4 or so kept the 2 MB all-gathered
    logits of a small Llama "alive" through the rest of the window). Each is taken as freed when
    its scope ended (``Allocation.scope_end_ns``: for the logits, DTensor's ``Redistribute``), or
    right after it was made where it had none."""
    held: dict[int, Allocation] = {}
    for allocation in sorted(allocations, key=lambda a: a.time_ns):
        if allocation.bytes > 0:
            held[allocation.address] = allocation
        else:
            held.pop(allocation.address, None)
    return [
        (max(a.scope_end_ns, a.time_ns + 1), a.address, -a.bytes)
        for address, a in held.items()
        if address not in alive
    ]


def live_storage_addresses(
    module: torch.nn.Module, optimizers: Sequence[torch.optim.Optimizer]
) -> set[int]:
    """The addresses of the CPU storages reachable now: ``module``'s parameters, gradients and
    buffers, the optimizers' states (a DTensor by its local shard) and every plain tensor the
    garbage collector tracks."""
    tensors = [*module.parameters(), *module.buffers()]
    tensors += [p.grad for p in module.parameters() if p.grad is not None]
    for optimizer in optimizers:
        for state in optimizer.state.values():
            tensors += [v for v in state.values() if isinstance(v, torch.Tensor)]
    tensors += [o for o in gc.get_objects() if type(o) in (torch.Tensor, torch.nn.Parameter)]
    addresses = set()
    for tensor in tensors:
        local = tensor.to_local() if hasattr(tensor, "to_local") else tensor
        if local.device.type == "cpu":
            addresses.add(local.untyped_storage().data_ptr())
    return addresses


def live_peak(events: list[tuple[int, int, int]]) -> int:
    """The peak of the bytes alive over ``events`` (time, address, bytes: positive allocated,
    negative freed). A block counts from its allocation to its free at the same address; a free
    of a block allocated before the events began is ignored, and an allocation at an address
    still counted replaces the block there (its free was not recorded)."""
    alive, peak, blocks = 0, 0, {}
    for _, address, size in sorted(events):
        if size > 0:
            alive += size - blocks.get(address, 0)
            blocks[address] = size
            peak = max(peak, alive)
        else:
            alive -= blocks.pop(address, 0)
    return peak


_OPERATOR_PREFIXES = ("aten::", "_c10d_functional::", "c10d::")


def _cpu_allocations(roots: list[Any]) -> list[Allocation]:
    """Every CPU allocation event the profiler recorded."""
    from torch._C._profiler import _EventType

    found, pending = [], list(roots)
    while pending:
        node = pending.pop()
        pending.extend(node.children)
        if node.tag == _EventType.Allocation and node.extra_fields.device.type == "cpu":
            fields = node.extra_fields
            found.append(
                Allocation(node.start_time_ns, fields.ptr, fields.alloc_size, _scope_end(node))
            )
    return found


def _scope_end(node: Any) -> int:
    scope = node.parent
    while scope is not None and scope.name.startswith(_OPERATOR_PREFIXES):
        scope = scope.parent
    return scope.end_time_ns if scope is not None else node.start_time_ns


def median_step_time(times: list[float], leave_out: int = 1) -> float | None:
    """The median step time without the first ``leave_out`` steps (warm-up, profiled) when more
    steps were measured, else without the first alone when there are two or more."""
    if not times:
        return None
    if len(times) > leave_out:
        return statistics.median(times[leave_out:])
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


def process_peak_memory(device: torch.device) -> int:
    """The process's own peak since :func:`reset_peak_memory`: the allocator's reserved bytes on
    a GPU (cached blocks included), the peak RSS on a CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_reserved(device)
    return peak_memory(device)


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
