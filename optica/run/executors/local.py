"""``LocalExecutor``: run a job as a subprocess of this machine, optionally under torchrun.

The launched process is always the supervisor (``python -m optica.run.supervisor JOB_DIR``) in
a new session, so the job survives this process (``detach=True``) and a terminal's Ctrl-C does
not reach it directly: cancelling goes through the supervisor, which stops the whole group.
"""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass, field
from typing import Any

from optica.run.errors import ConfigError, did_you_mean
from optica.run.executors.base import Executor, python_command
from optica.run.job import Job, State, now
from optica.run.script import Script
from optica.run.serialize import register_value_type
from optica.run.supervise import (
    KILL_GRACE_S,
    process_alive,
    signal_group,
    signal_process,
    wait_for_exit,
)

LAUNCHERS = ("torchrun",)


@register_value_type
@dataclass
class LocalExecutor(Executor):
    """Runs a task on this machine.

    Args:
        ntasks_per_node: Processes to start; more than one needs ``launcher="torchrun"``.
        launcher: ``None`` (one plain process) or ``"torchrun"`` (``torch.distributed.run
            --standalone``, which sets ``RANK``, ``WORLD_SIZE`` and a free rendezvous port).
        env_vars: Variables added to the task's environment.
    """

    ntasks_per_node: int = 1
    launcher: str | None = None
    env_vars: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.launcher is not None and self.launcher not in LAUNCHERS:
            raise ConfigError(
                f"LocalExecutor: unknown launcher '{self.launcher}'"
                f"{did_you_mean(self.launcher, LAUNCHERS)} (known: None, {', '.join(LAUNCHERS)})"
            )
        if self.ntasks_per_node < 1:
            raise ConfigError(
                f"LocalExecutor: ntasks_per_node must be >= 1, not {self.ntasks_per_node}"
            )
        if self.ntasks_per_node > 1 and self.launcher is None:
            raise ConfigError(
                f"LocalExecutor: ntasks_per_node={self.ntasks_per_node} needs a launcher to start"
                " several processes; use launcher='torchrun'"
            )

    def command_for(self, job: Job) -> list[str]:
        task = job.task()
        if isinstance(task, Script):
            inner = task.to_command()
            return [*self._torchrun(), "--no-python", *inner] if self.launcher else inner
        runner = ["optica.run.runner", str(job.task_path), "--result", str(job.result_path)]
        if self.launcher:
            return [*self._torchrun(), "-m", *runner]
        return python_command(*runner)

    def _torchrun(self) -> list[str]:
        nproc = ["--nproc_per_node", str(self.ntasks_per_node)]
        return python_command("torch.distributed.run", "--standalone", *nproc)

    def launch(self, job: Job, detach: bool = False) -> subprocess.Popen[bytes]:
        """Starts the supervisor; ``detach`` sends its output only to the job's log."""
        self.write_command(job, cwd=os.getcwd())
        with job.log_path.open("ab") as log:
            # NOTE: detached, the supervisor's own errors (not the task's) land in the log too.
            process = subprocess.Popen(
                python_command("optica.run.supervisor", str(job.dir)),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL if detach else None,
                stderr=log if detach else None,
                start_new_session=True,
            )
        job.write("launch.json", {"pid": process.pid, "launched": now()})
        return process

    def status(self, job: Job) -> State:
        """The recorded state, corrected to FAILED if the supervisor died without a record."""
        state = job.state()
        launch = job.read("launch.json")
        if state.done or launch is None or process_alive(launch["pid"]):
            return state
        state = job.state()  # it may have recorded the end between the two reads
        if state.done:
            return state
        job.write_status(State.FAILED, reason="the supervisor exited without recording an end")
        return State.FAILED

    def wait(self, job: Job, handle: Any = None, timeout: float | None = None) -> State:
        if not isinstance(handle, subprocess.Popen):
            return super().wait(job, timeout=timeout)
        try:
            handle.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"job '{job.name}' still running after {timeout} s") from None
        return self.status(job)

    def cancel(self, job: Job, handle: Any = None) -> None:
        if self.status(job).done:
            return
        launch = job.read("launch.json")
        if launch is not None:
            _stop_supervisor(launch["pid"], handle)
            pgid = job.status().get("pgid")
            if pgid:  # the supervisor normally did this; make sure nothing is left behind
                signal_group(pgid, signal.SIGKILL)
        if not job.state().done:
            job.write_status(State.CANCELLED, reason="cancelled")


def _stop_supervisor(pid: int, handle: Any) -> None:
    """SIGTERM (the supervisor then stops its task), then SIGKILL if it does not exit in time."""
    signal_process(pid, signal.SIGTERM)
    if not wait_for_exit(pid, handle, timeout=KILL_GRACE_S + 5):
        signal_process(pid, signal.SIGKILL)
        wait_for_exit(pid, handle, timeout=5)
