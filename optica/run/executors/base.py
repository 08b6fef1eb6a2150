"""The ``Executor`` interface: where and how a job's command runs.

An executor only decides how to *start* a job (``command_for``, ``launch``) and how to stop it
(``cancel``). Everything after the start is read from the job directory, which the supervisor
keeps up to date wherever it runs (a local subprocess today, inside an sbatch script for a Slurm
executor), so ``status``, ``wait`` and ``logs`` are shared here.

Executors are dataclasses of plain values: they are saved in ``executor.json`` as their class
path and fields (see :meth:`Executor.to_dict`) and rebuilt from that by ``Experiment.from_id``.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import shlex
import sys
import time
from typing import Any

from optica.run.errors import ConfigError
from optica.run.job import Job, State
from optica.run.script import Script

POLL_S = 0.1


@dataclasses.dataclass
class Executor:
    """Base class; subclasses are dataclasses whose fields are JSON values."""

    def command_for(self, job: Job) -> list[str]:
        """The argv that runs ``job``'s task (what the supervisor starts)."""
        raise NotImplementedError

    def environment(self, job: Job) -> dict[str, str]:
        """Variables added to the task's environment: the executor's, then the script's."""
        env = dict(getattr(self, "env_vars", {}) or {})
        task = job.task()
        if isinstance(task, Script):
            env.update(task.env)
        return env

    def launch(self, job: Job, detach: bool = False) -> Any:
        """Starts ``job``; returns a handle for ``wait`` / ``cancel`` in this process.

        With ``detach=False`` the task's output is also shown on this process's stdout.
        """
        raise NotImplementedError

    def cancel(self, job: Job, handle: Any = None) -> None:
        """Stops ``job`` and all its processes; a job that never started becomes CANCELLED."""
        raise NotImplementedError

    def status(self, job: Job) -> State:
        return job.state()

    def wait(self, job: Job, handle: Any = None, timeout: float | None = None) -> State:
        """Blocks until ``job`` ends; raises ``TimeoutError`` after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not (state := self.status(job)).done:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job '{job.name}' still {state} after {timeout} s")
            time.sleep(POLL_S)
        return state

    def logs(self, job: Job) -> str:
        return job.log()

    def describe(self, job: Job) -> str:
        """What a dry run shows of how ``job`` would start: its command line."""
        return f"# command:\n{shlex.join(self.command_for(job))}"

    def write_command(self, job: Job, cwd: str) -> list[str]:
        """Records the command for the supervisor in ``command.json``; returns its argv."""
        argv = self.command_for(job)
        job.write("command.json", {"argv": argv, "env": self.environment(job), "cwd": cwd})
        return argv

    def to_dict(self) -> dict[str, Any]:
        """``{"class": "pkg.mod.Name", "fields": {...}}``, checked to be JSON."""
        cls = type(self)
        data = {"class": f"{cls.__module__}.{cls.__qualname__}", "fields": _fields(self)}
        try:
            json.dumps(data)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{cls.__name__} cannot be saved: {err}") from None
        return data

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Executor:
        """Rebuilds an executor saved by :meth:`to_dict`."""
        cls = _executor_class(data["class"])
        return cls(**data["fields"])


def _fields(executor: Executor) -> dict[str, Any]:
    return {f.name: getattr(executor, f.name) for f in dataclasses.fields(executor) if f.init}


def _executor_class(path: str) -> type[Executor]:
    module_name, _, name = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError):
        raise ConfigError(f"unknown executor class '{path}'") from None
    if not (isinstance(cls, type) and issubclass(cls, Executor)):
        raise ConfigError(f"'{path}' is not an Executor")
    return cls


def python_command(module: str, *args: str) -> list[str]:
    """``python -m module args...`` with this interpreter (the one optica is installed in)."""
    return [sys.executable, "-m", module, *args]
