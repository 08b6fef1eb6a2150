"""Launching the best candidates and measuring them (seed 004's runner, with a time limit kept).

Each candidate becomes one real optica training job — :func:`optica.pretrain` (or
:func:`optica.finetune` when something is frozen or LoRA-adapted) of the model the shape
describes (:mod:`optica.autoconfig.runnable`) with the candidate's layout as a
``ParallelStrategy`` — launched through an ``optica.run`` executor: ``LocalExecutor`` (torchrun
for several processes) or ``SlurmExecutor``. Runs go one after another, each in its own
experiment, so one candidate's failure (an OOM, a bad layout, a crash) never stops the others.

Limits are enforced twice: the job's :class:`~optica.autoconfig.measure.RunProbe` stops
training at ``max_minutes_per_run`` (all ranks at the same step) and ``max_steps_per_run`` is
the trainer's ``max_steps``; the runner cancels a job still alive ``startup_grace_minutes`` after
that (start-up, a hung collective, a step that never ends) and records it as failed.
"""

from __future__ import annotations

import math
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optica import run
from optica.autoconfig.layout import Layout
from optica.autoconfig.runnable import (
    data_config,
    layout_config_problems,
    model_config,
    strategy_config,
)
from optica.autoconfig.search import Candidate, SearchResult
from optica.autoconfig.training import Training
from optica.run.errors import ConfigError
from optica.run.job import State

EXECUTORS = ("local", "slurm")
MEASUREMENTS_DIR = "autoconfig"  # what RunProbe writes, under the run directory
RUN_VERSION = "run"  # each candidate trains in <output>/runs/rank_NN/run/
ACCELERATORS = ("auto", "cpu", "gpu")
_OOM = re.compile(
    r"out of memory|OutOfMemoryError|can't allocate memory|Cannot allocate memory|MemoryError",
    re.IGNORECASE,
)
_ERROR_LINE = re.compile(r"^(\w+\.)*\w*(Error|Exception)(: .+)?$")
_WRAPPERS = ("ChildFailedError", "TaskFailedError")  # torchrun's and optica's own summaries


@dataclass(frozen=True)
class RunLimits:
    """How much each candidate may run.

    Args:
        max_steps_per_run: Optimizer steps per run (the first is warm-up and left out of the
            measured step time, so give at least 2).
        max_minutes_per_run: Training stops at this many minutes (from the trainer's set-up).
        startup_grace_minutes: The runner cancels a job this long after the training limit.
    """

    max_steps_per_run: int = 50
    max_minutes_per_run: float = 10.0
    startup_grace_minutes: float = 5.0

    def __post_init__(self) -> None:
        if not isinstance(self.max_steps_per_run, int) or self.max_steps_per_run < 1:
            raise ConfigError(f"max_steps_per_run must be >= 1, got {self.max_steps_per_run!r}")
        for name in ("max_minutes_per_run", "startup_grace_minutes"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)!r}")

    @property
    def wall_limit_s(self) -> float:
        return (self.max_minutes_per_run + self.startup_grace_minutes) * 60


@dataclass(frozen=True)
class Launch:
    """Where and how the runs go.

    Args:
        executor: ``"local"`` (this machine; torchrun for several processes) or ``"slurm"``.
        accelerator: The trainer's accelerator (``"cpu"`` for a calibration on CPUs).
        partition: Slurm ``--partition``.
        account: Slurm ``--account``.
    """

    executor: str = "local"
    accelerator: str = "auto"
    partition: str | None = None
    account: str | None = None

    def __post_init__(self) -> None:
        for name, allowed in (("executor", EXECUTORS), ("accelerator", ACCELERATORS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class Measured:
    """What a run measured: the median step time, the peak of live tensors (what the memory
    model predicts) and the process's own peak (:mod:`optica.autoconfig.measure`) of its
    heaviest rank."""

    step_time_s: float
    peak_memory_bytes: int
    steps: int
    stopped_by_time_limit: bool
    process_peak_memory_bytes: int = 0


@dataclass(frozen=True)
class Outcome:
    """One launched candidate: its measurement, or why it has none."""

    candidate: Candidate
    run_dir: Path
    log: Path | None
    measured: Measured | None = None
    error: str | None = None
    error_type: str | None = None


def run_candidates(
    result: SearchResult,
    candidates: tuple[Candidate, ...],
    output_dir: Path,
    *,
    limits: RunLimits,
    launch: Launch,
) -> list[Outcome]:
    """Runs each candidate in turn (module docstring); never raises for a failed run."""
    if launch.executor == "local" and result.cluster.num_nodes > 1:
        raise ConfigError("--executor local runs on this machine only; use slurm for num_nodes > 1")
    return [_run_one(result, c, output_dir, limits, launch) for c in candidates]


def candidate_task(
    result: SearchResult, candidate: Candidate, run_dir: Path, limits: RunLimits, launch: Launch
) -> run.Partial:
    """The training job of one candidate, as a task any executor runs."""
    from optica.autoconfig.measure import RunProbe
    from optica.train.api import finetune, pretrain
    from optica.train.exp_manager import ExpManager
    from optica.train.optim import OptimizerConfig
    from optica.train.trainer import TrainerConfig

    model, layout, cluster = result.model, candidate.layout, result.cluster
    problems = layout_config_problems(model, layout)
    if problems:
        raise ConfigError(
            f"cannot launch {model.name} as {layout_label(layout)}: " + "; ".join(problems)
        )
    probe = run.Config(
        RunProbe,
        output_dir=str(run_dir / RUN_VERSION / MEASUREMENTS_DIR),
        max_minutes=limits.max_minutes_per_run,
    )
    trainer = run.Config(
        TrainerConfig, devices=cluster.gpus_per_node, num_nodes=cluster.num_nodes,
        accelerator=launch.accelerator, max_steps=limits.max_steps_per_run,
        precision="bf16-mixed" if result.training.precision == "bf16-mixed" else "32-true",
        log_every_n_steps=1, enable_progress_bar=False, enable_model_summary=False,
        strategy=strategy_config(layout), callbacks=[probe], use_distributed_sampler=False,
    )  # fmt: skip
    samples = layout.global_batch_size * (limits.max_steps_per_run + 1)
    log = run.Config(
        ExpManager, exp_dir=str(run_dir.parent), name=run_dir.name, version=RUN_VERSION, ckpt=None,
        tensorboard=False, save_config=True,
    )  # fmt: skip
    common = dict(
        model=model_config(model),
        data=data_config(model, layout, num_train_samples=samples),
        trainer=trainer,
        log=log,
    )
    if result.training.step_in_backward:
        common["optim"] = run.Config(OptimizerConfig, step_in_backward=True)
    peft = _freezing(result.training, model.kind)
    if peft is None:
        return run.Partial(pretrain, **common)
    return run.Partial(finetune, **common, peft=peft)


def executor_for(result: SearchResult, launch: Launch, limits: RunLimits) -> Any:
    """The executor that starts one process per GPU of the cluster."""
    cluster = result.cluster
    if launch.executor == "local":
        many = cluster.gpus_per_node > 1
        return run.LocalExecutor(
            ntasks_per_node=cluster.gpus_per_node, launcher="torchrun" if many else None
        )
    minutes = math.ceil(limits.wall_limit_s / 60)
    return run.SlurmExecutor(
        nodes=cluster.num_nodes,
        ntasks_per_node=cluster.gpus_per_node,
        gpus_per_node=cluster.gpus_per_node if launch.accelerator != "cpu" else None,
        time=f"{minutes // 60:02d}:{minutes % 60:02d}:00",
        partition=launch.partition,
        account=launch.account,
    )


def _run_one(
    result: SearchResult, candidate: Candidate, output_dir: Path, limits: RunLimits, launch: Launch
) -> Outcome:
    run_dir = output_dir / "runs" / f"rank_{candidate.rank:02d}"
    shutil.rmtree(run_dir, ignore_errors=True)  # never read an older search's measurements
    try:
        task = candidate_task(result, candidate, run_dir, limits, launch)
        executor = executor_for(result, launch, limits)
    except ConfigError as error:
        return Outcome(candidate, run_dir, None, error=str(error), error_type="config")
    experiment = run.Experiment(f"autoconfig_{result.model.name}_rank_{candidate.rank:02d}")
    name = experiment.add(task, executor, name="train")
    experiment.run(sequential=False, detach=True)
    job = experiment.job(name)
    try:
        state = experiment.wait(timeout=limits.wall_limit_s)[name]
    except TimeoutError:
        experiment.cancel()
        limit = limits.wall_limit_s / 60
        message = f"still running after {limit:g} min (time limit + start-up grace): cancelled"
        return Outcome(candidate, run_dir, job.log_path, error=message, error_type="timeout")
    return _outcome(candidate, run_dir, job, state)


def _outcome(candidate: Candidate, run_dir: Path, job: Any, state: State) -> Outcome:
    from optica.autoconfig.measure import read_measurements

    records = read_measurements(run_dir / RUN_VERSION / MEASUREMENTS_DIR)
    records = [r for r in records if r["step_time_s"] is not None]
    if state is State.SUCCEEDED and records:
        measured = Measured(
            step_time_s=max(r["step_time_s"] for r in records),
            peak_memory_bytes=max(r["peak_memory_bytes"] for r in records),
            process_peak_memory_bytes=max(r.get("process_peak_memory_bytes", 0) for r in records),
            steps=min(r["steps"] for r in records),
            stopped_by_time_limit=any(r["stopped_by_time_limit"] for r in records),
        )
        return Outcome(candidate, run_dir, job.log_path, measured=measured)
    if state is State.SUCCEEDED:
        error, kind = "the run ended without completing a training step", "no_measurement"
    else:
        error, kind = failure_message(job.log(), job.status().get("returncode"), state)
    return Outcome(candidate, run_dir, job.log_path, error=error, error_type=kind)


def failure_message(log: str, returncode: int | None, state: State) -> tuple[str, str]:
    """(the error the log shows, its kind: ``oom``, ``killed`` or ``error``)."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    oom = [line for line in lines if _OOM.search(line)]
    if oom:
        return oom[-1][:500], "oom"
    if returncode in (-9, 137):
        return f"killed by SIGKILL (exit {returncode}): likely the kernel's OOM killer", "oom"
    errors = [line for line in lines if _ERROR_LINE.match(line) and not line.endswith(":")]
    errors = [line for line in errors if not any(w in line for w in _WRAPPERS)] or errors
    if errors:
        return errors[-1][:500], "error"
    tail = " | ".join(lines[-3:])[:500] or "no output"
    code = "" if returncode is None else f" (exit code {returncode})"  # None: never started
    return f"{state}{code}: {tail}", "error"


def _freezing(training: Training, kind: str) -> Any:
    """What :func:`optica.finetune`'s ``peft`` must do for ``training`` (None: train all)."""
    from optica.train.peft import LoRA

    vision_frozen = kind == "vlm" and training.vision_frozen(kind)
    if training.lora is not None:
        names = training.lora.target_modules
        targets = [f"*.language_model.*.{n}" for n in names] if kind == "vlm" else list(names)
        return run.Config(
            LoRA, dim=training.lora.dim, target_modules=targets,
            freeze_vision_model=vision_frozen,
        )  # fmt: skip
    if kind == "vlm" and (vision_frozen or training.freeze_language):
        return run.Config(
            Freeze, vision_model=vision_frozen, language_model=training.freeze_language
        )
    return None


@dataclass(frozen=True)
class Freeze:
    """A ``peft`` for :func:`optica.finetune` that only freezes parts (no adapters): the
    searched :class:`Training` says a VLM's vision tower (or its language model) does not learn."""

    vision_model: bool = False
    language_model: bool = False

    def apply(self, model: Any) -> list[str]:
        from optica.train.peft import freeze

        freeze(model, vision_model=self.vision_model, language_model=self.language_model)
        return []


def layout_label(layout: Layout) -> str:
    """``TP2 PP1 CP1 MBS4 ...``: a candidate's layout in a plot or a message."""
    label = f"TP{layout.tp} PP{layout.pp} CP{layout.cp} DP{layout.dp} MBS{layout.micro_batch_size}"
    if layout.recompute_num_layers:
        label += f" AC{layout.recompute_num_layers}"
    return label
