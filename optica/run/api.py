"""``run.run``: run one task and get its value, or an exception that says why it failed.

    run.run(task)                                   # subprocess on this machine, recorded
    run.run(task, executor=run.LocalExecutor(ntasks_per_node=2, launcher="torchrun"))
    run.run(task, direct=True)                      # in this process; returns the value
    run.run(task, dryrun=True)                      # prints the YAML and the command

A launched task is a one-task :class:`~optica.run.experiment.Experiment`, so its directory, log
and status can be looked at later with ``optica experiment ...``.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optica.run import serialize
from optica.run.errors import TaskFailedError
from optica.run.execute import execute
from optica.run.experiment import Experiment, as_executor, default_task_name
from optica.run.job import Job, State
from optica.run.runtime import with_process_defaults
from optica.run.script import Script
from optica.run.task_io import check_round_trip

LOG_TAIL_LINES = 20


@dataclass
class RunResult:
    """The outcome of a launched task that succeeded.

    Attributes:
        name: The task's name in its experiment.
        status: Its final state (``SUCCEEDED``).
        returncode: The exit code (0).
        job_dir: The job directory: ``log.txt``, ``status.json``, ``result.json``...
        value: Rank 0's return value from ``result.json`` (its repr if it was not JSON).
        experiment_id: For ``Experiment.from_id`` and ``optica experiment status``.
    """

    name: str
    status: State
    returncode: int | None
    job_dir: Path
    value: Any
    experiment_id: str

    def logs(self) -> str:
        return Job(self.job_dir).log()


def run(
    task: Any,
    executor: Any = None,
    direct: bool = False,
    dryrun: bool = False,
    name: str | None = None,
) -> Any:
    """Runs ``task`` and returns its result; raises :class:`TaskFailedError` if it fails.

    Args:
        task: A ``run.Config`` / ``run.Partial`` (a Partial is called with no arguments after it
            is built) or a ``run.Script``.
        executor: Where to run it; default ``LocalExecutor()``. Ignored when ``direct``.
        direct: Run in this process and return the value itself (nothing is recorded).
        dryrun: Print the task's YAML and the command that would run; return None.
        name: The task's (and its experiment's) name; default the target's ``__name__``.

    Returns:
        The value when ``direct``, None for a dry run, else a :class:`RunResult`.
    """
    if dryrun:
        print(describe(task, executor, name))
        return None
    if direct:
        return _run_direct(task)
    experiment = Experiment(name or default_task_name(task))
    task_name = experiment.add(task, executor, name)
    experiment.run(sequential=True)
    return _outcome(experiment, task_name)


def describe(task: Any, executor: Any = None, name: str | None = None) -> str:
    """The dry-run text: what would run (YAML) and how (the command line, or a batch script)."""
    name = name or default_task_name(task)
    check_round_trip(task, name)
    executor = as_executor(executor)
    with tempfile.TemporaryDirectory() as scratch:
        job = Job.create(Path(scratch) / name, task, executor.to_dict())
        how = executor.describe(job).replace(str(job.dir), "<job_dir>")
    return f"# dry run: task '{name}' with {executor!r}\n{serialize.to_yaml(task)}{how}"


def _run_direct(task: Any) -> Any:
    if not isinstance(task, Script):
        return execute(task)
    returncode = subprocess.run(
        task.to_command(), env={**with_process_defaults(os.environ), **task.env}
    ).returncode
    if returncode != 0:
        raise TaskFailedError(
            f"script '{task.name}' failed with exit code {returncode}", returncode=returncode
        )
    return None


def _outcome(experiment: Experiment, name: str) -> RunResult:
    """The :class:`RunResult` of a finished task, or the :class:`TaskFailedError` to raise."""
    state = experiment.status()[name]
    job = experiment.job(name)
    returncode = job.status().get("returncode")
    if state is not State.SUCCEEDED:
        raise _failure(name, state, job)
    return RunResult(name, state, returncode, job.dir, job.result(), experiment.id)


def _failure(name: str, state: State, job: Job) -> TaskFailedError:
    status = job.status()
    returncode = status.get("returncode")
    if state is State.CANCELLED:
        what = "was cancelled"
    elif returncode is None:
        what = f"failed ({status.get('reason', 'no exit code recorded')})"
    else:
        what = f"failed with exit code {returncode}"
    tail = job.log_tail(LOG_TAIL_LINES)
    message = f"task '{name}' {what} (log: {job.log_path})"
    return TaskFailedError(
        f"{message}\n{tail}" if tail else message, returncode=returncode, log_tail=tail
    )
