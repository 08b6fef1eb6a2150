"""A job directory: everything about one task's run, as files, so any process can inspect it.

    <experiment>/<task name>/
        task.json      the task, lossless (fiddle JSON or a script's fields)
        config.yaml    the task for people (Hydra dialect)
        executor.json  where it runs (class path + dataclass fields)
        command.json   argv, env additions and cwd the supervisor runs
        launch.json    the launcher's handle (local: the supervisor's pid)
        log.txt        the task's stdout and stderr, raw
        status.json    state, exit code, pids, start and end times
        result.json    rank 0's return value (JSON, or its repr)

Files are the interface because the writer (the supervisor, or a Slurm job) and the readers (the
CLI, ``Experiment.from_id``) are different processes, often started days apart. Every JSON write is
atomic (a temp file in the same folder, then ``os.replace``), so a reader never sees half a file.
"""

from __future__ import annotations

import datetime
import enum
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optica.run import serialize, task_io


class State(str, enum.Enum):
    """A job's lifecycle; a job ends in exactly one of the last three."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def done(self) -> bool:
        return self in (State.SUCCEEDED, State.FAILED, State.CANCELLED)

    def __str__(self) -> str:
        return self.value


def now() -> str:
    """A local timestamp with microseconds: sortable, and readable in ``status.json``."""
    return datetime.datetime.now().isoformat(timespec="microseconds")


def write_atomic(path: Path, text: str) -> None:
    """Writes ``text`` so readers see the old file or the new one, never a partial one."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=2) + "\n")


def read_json(path: Path, default: Any = None) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default


@dataclass(frozen=True)
class Job:
    """One task's directory; the methods read and write its files."""

    dir: Path

    @classmethod
    def create(cls, directory: Path, task: Any, executor: dict[str, Any]) -> Job:
        """Makes the directory and writes the task, its YAML, the executor and PENDING."""
        directory.mkdir(parents=True, exist_ok=False)
        job = cls(directory)
        write_atomic(job.task_path, task_io.dump_task(task))
        write_atomic(job.path("config.yaml"), serialize.to_yaml(task))
        write_json(job.path("executor.json"), executor)
        job.write_status(State.PENDING)
        return job

    @property
    def name(self) -> str:
        return self.dir.name

    def path(self, filename: str) -> Path:
        return self.dir / filename

    @property
    def task_path(self) -> Path:
        return self.dir / "task.json"

    @property
    def log_path(self) -> Path:
        return self.dir / "log.txt"

    @property
    def result_path(self) -> Path:
        return self.dir / "result.json"

    def task(self) -> Any:
        return task_io.load_task(self.task_path.read_text(encoding="utf-8"))

    def read(self, filename: str, default: Any = None) -> Any:
        return read_json(self.path(filename), default)

    def write(self, filename: str, data: Any) -> None:
        write_json(self.path(filename), data)

    def status(self) -> dict[str, Any]:
        return self.read("status.json") or {"state": State.PENDING.value}

    def state(self) -> State:
        return State(self.status()["state"])

    def write_status(self, state: State, **fields: Any) -> None:
        """Replaces the state, keeping earlier fields (pids, start time) unless overridden."""
        status = {**self.status(), **fields, "state": State(state).value}
        if State(state).done:
            status.setdefault("ended", now())
        self.write("status.json", status)

    def result(self) -> Any:
        """Rank 0's return value, its repr if it was not JSON, or None before it exists."""
        data = self.read("result.json")
        return None if data is None else data.get("value")

    def log(self) -> str:
        try:
            return self.log_path.read_bytes().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines of the log, for error messages."""
        return "\n".join(self.log().rstrip("\n").splitlines()[-lines:])
