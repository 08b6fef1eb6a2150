"""``run.Experiment``: several tasks launched together and kept on disk, so any later process
(``optica experiment status ID``, ``Experiment.from_id``) can follow, inspect or cancel them.

    $OPTICA_HOME/experiments/<title>_<YYYYmmdd_HHMMSS>/
        experiment.json    title, created, task names and executors, how it was run
        driver.json        pid of the process launching the tasks: a background driver
                           (sequential + detach) or the caller of ``run`` (the other modes)
        driver.log         the background driver's own output, if it has any
        <task name>/       one job directory per task (see ``optica.run.job``)

Running:

* ``sequential=True`` runs the tasks in the order they were added. The first task that does not
  succeed stops the run: the tasks after it are marked CANCELLED with the reason "not run".
  With ``detach=True`` that loop runs in a background driver process
  (``python -m optica.run.driver``), so it continues after this process exits.
  When every task's executor can hand the order to its scheduler (``launch_after``: Slurm's
  ``--dependency=afterok``), all tasks are submitted at once instead, each held until the one
  before it succeeds, so no driver process is needed.
* ``sequential=False`` launches every task at once, then waits unless ``detach=True``.
* ``direct=True`` runs each task inside this process, one after another (same stop rule when
  sequential); status, log and result are still recorded.

``run`` records outcomes and does not raise when a task fails; ``run.run`` does.
"""

from __future__ import annotations

import datetime
import itertools
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fiddle as fdl

from optica.run import serialize
from optica.run.errors import ConfigError, OpticaError, did_you_mean
from optica.run.execute import run_in_process
from optica.run.executors.base import Executor, python_command
from optica.run.executors.local import LocalExecutor
from optica.run.home import experiments_dir
from optica.run.job import Job, State, read_json, write_json
from optica.run.script import Script
from optica.run.supervise import KILL_GRACE_S, process_alive, signal_process, wait_for_exit
from optica.run.task_io import check_round_trip

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_METADATA = "experiment.json"
_NOT_LOADED = object()


@dataclass(frozen=True)
class ExperimentInfo:
    """One experiment in a listing (from its ``experiment.json``, nothing is loaded)."""

    id: str
    title: str
    created: str
    tasks: tuple[str, ...]
    path: Path


@dataclass
class _Entry:
    """A task, where it runs, and its directory; a task read from disk loads on first use, so
    following an experiment does not import the modules its tasks name."""

    executor: Executor
    job: Job
    loaded: Any = _NOT_LOADED

    @property
    def task(self) -> Any:
        if self.loaded is _NOT_LOADED:
            self.loaded = self.job.task()
        return self.loaded


class Experiment:
    """Tasks added with :meth:`add`, launched with :meth:`run`; see the module docstring.

    Args:
        title: A readable name; the id is ``<title>_<YYYYmmdd_HHMMSS>`` (``_2``... if taken).
        base_dir: Where experiments live (default ``$OPTICA_HOME/experiments``).
    """

    def __init__(self, title: str, *, base_dir: str | Path | None = None):
        if not isinstance(title, str) or not title.strip():
            raise ConfigError(f"Experiment: title must be a non-empty string, not {title!r}")
        self.title = title
        self.base_dir = Path(base_dir) if base_dir is not None else experiments_dir()
        self._created = datetime.datetime.now()
        self._dir: Path | None = None
        self._entries: dict[str, _Entry] = {}
        self._handles: dict[str, Any] = {}  # launch handles of tasks started by this object
        self._driver: subprocess.Popen[bytes] | None = None
        self._run_info: dict[str, Any] | None = None

    # ------------------------------------------------------------------------------------------
    # What it holds

    @property
    def dir(self) -> Path:
        """The experiment's directory, created on first use."""
        if self._dir is None:
            self._dir = _make_dir(self.base_dir, self.title, self._created)
            self._save()
        return self._dir

    @property
    def id(self) -> str:
        return self.dir.name

    @property
    def tasks(self) -> dict[str, Any]:
        return {name: entry.task for name, entry in self._entries.items()}

    @property
    def executors(self) -> dict[str, Executor]:
        return {name: entry.executor for name, entry in self._entries.items()}

    def job(self, name: str) -> Job:
        """The job directory of task ``name``."""
        return self._entry(name).job

    # ------------------------------------------------------------------------------------------
    # Adding and running

    def add(self, task: Any, executor: Any = None, name: str | None = None) -> str:
        """Adds a task (a Config, Partial or Script); returns its unique name.

        The task must survive a save/load round trip and render as YAML, checked here so a
        mistake surfaces at ``add``, not inside a launched job.
        """
        if self._run_info is not None:
            raise ConfigError(f"experiment '{self.id}' has already run; add tasks before run()")
        name = self._new_name(task, name)
        check_round_trip(task, name)
        try:
            serialize.to_yaml(task)
        except OpticaError as err:
            raise ConfigError(f"task '{name}' cannot be written as YAML: {err}") from None
        executor = as_executor(executor)
        job = Job.create(self.dir / name, task, executor.to_dict())
        self._entries[name] = _Entry(executor, job, task)
        self._save()
        return name

    def run(self, sequential: bool = True, detach: bool = False, direct: bool = False) -> None:
        """Launches every task; see the module docstring for the three modes."""
        if not self._entries:
            raise ConfigError(f"experiment '{self.title}' has no tasks; add one with .add(task)")
        if self._run_info is not None:
            raise ConfigError(f"experiment '{self.id}' has already run; create a new one")
        self._run_info = {"sequential": sequential, "detach": detach, "direct": direct}
        self._save()
        # Other processes wait for this one before treating unlaunched tasks as "not run".
        write_json(self.dir / "driver.json", {"pid": os.getpid(), "background": False})
        if direct:
            self._run_direct(sequential)
        elif sequential and self._queue_keeps_order():
            self._submit_chained(detach)
        elif sequential and detach:
            self._start_driver()
        elif sequential:
            self.run_sequentially(detach=False)
        else:
            self._run_parallel(detach)

    def run_sequentially(self, detach: bool) -> None:
        """Runs the tasks one after another in this process (also the driver's loop)."""
        names = list(self._entries)
        for index, name in enumerate(names):
            entry = self._entries[name]
            if entry.job.state().done:  # cancelled before its turn
                return self._skip(names[index:], f"not run: '{name}' was {entry.job.state()}")
            try:
                self._handles[name] = entry.executor.launch(entry.job, detach=detach)
                state = entry.executor.wait(entry.job, self._handles[name])
            except BaseException:  # Ctrl-C, or SIGTERM in the driver: stop everything
                self.cancel()
                raise
            if state is not State.SUCCEEDED:
                return self._skip(names[index + 1 :], f"not run: '{name}' {state}")
        return None

    def _run_parallel(self, detach: bool) -> None:
        try:
            for name, entry in self._entries.items():
                self._handles[name] = entry.executor.launch(entry.job, detach=detach)
            if not detach:
                self.wait()
        except BaseException:  # Ctrl-C while waiting, or a launch that failed half-way
            self.cancel()
            raise

    def _queue_keeps_order(self) -> bool:
        """Whether every task goes to a scheduler that can hold it until the previous one has
        succeeded (``executor.launch_after``, e.g. Slurm's ``afterok``): then no process of ours
        has to stay alive to keep the order."""
        return all(hasattr(entry.executor, "launch_after") for entry in self._entries.values())

    def _submit_chained(self, detach: bool) -> None:
        """Submits every task at once, each to start after the one before it succeeds; the
        executor marks a task whose predecessor did not succeed CANCELLED ("not run")."""
        previous: list[Job] = []
        try:
            for name, entry in self._entries.items():
                self._handles[name] = entry.executor.launch_after(entry.job, previous, detach)
                previous = [entry.job]
            if detach:  # the scheduler keeps the order now: nothing of ours for others to await
                (self.dir / "driver.json").unlink(missing_ok=True)
            else:
                self.wait()
        except BaseException:  # Ctrl-C while waiting, or a submission that failed half-way
            self.cancel()
            raise

    def _run_direct(self, sequential: bool) -> None:
        names = list(self._entries)
        for index, name in enumerate(names):
            entry = self._entries[name]
            state = run_in_process(entry.job, entry.task)
            if sequential and state is not State.SUCCEEDED:
                return self._skip(names[index + 1 :], f"not run: '{name}' {state}")
        return None

    def _start_driver(self) -> None:
        with (self.dir / "driver.log").open("ab") as log:
            self._driver = subprocess.Popen(
                python_command("optica.run.driver", str(self.dir)),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        write_json(self.dir / "driver.json", {"pid": self._driver.pid, "background": True})

    def _skip(self, names: list[str], reason: str) -> None:
        for name in names:
            job = self._entries[name].job
            if not job.state().done:
                job.write_status(State.CANCELLED, reason=reason)

    # ------------------------------------------------------------------------------------------
    # Following

    def status(self) -> dict[str, State]:
        return {name: entry.executor.status(entry.job) for name, entry in self._entries.items()}

    def logs(self, name: str | None = None) -> str:
        """One task's log, or every task's under a ``==> name <==`` header."""
        if name is not None:
            entry = self._entry(name)
            return entry.executor.logs(entry.job)
        parts = [f"==> {n} <==\n{e.executor.logs(e.job)}" for n, e in self._entries.items()]
        return "\n".join(parts)

    def wait(self, timeout: float | None = None) -> dict[str, State]:
        """Blocks until every launched task has ended; returns :meth:`status`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        driver = self._driver_pid()
        if driver is not None and not wait_for_exit(driver, self._driver, _remaining(deadline)):
            raise TimeoutError(f"experiment '{self.id}' still running after {timeout} s")
        for name, entry in self._entries.items():
            if entry.job.read("launch.json") is not None:
                handle = self._handles.get(name)
                entry.executor.wait(entry.job, handle, timeout=_remaining(deadline))
        if self._run_info is not None:
            self._skip(list(self._entries), "not run")
        return self.status()

    def cancel(self) -> None:
        """Stops the driver (if any), every running task, and marks unstarted tasks CANCELLED.

        A background driver is stopped first so it launches nothing more. A foreground caller of
        ``run`` is left alone: it sees its running task end CANCELLED and launches no more.
        """
        driver = self._driver_pid(background_only=True)
        if driver is not None:
            signal_process(driver, signal.SIGTERM)  # it cancels its running task itself
            if not wait_for_exit(driver, self._driver, timeout=KILL_GRACE_S + 10):
                signal_process(driver, signal.SIGKILL)
        for name, entry in self._entries.items():
            entry.executor.cancel(entry.job, self._handles.get(name))

    def _driver_pid(self, background_only: bool = False) -> int | None:
        """The live process launching this experiment's tasks, if it is not this one."""
        info = read_json(self.dir / "driver.json")
        if info is None or info["pid"] == os.getpid() or not process_alive(info["pid"]):
            return None
        if background_only and not info.get("background"):
            return None
        return info["pid"]

    def __enter__(self) -> Experiment:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        """Leaving the block by an exception cancels tasks this object launched and waits on."""
        if exc_type is not None and self._handles and not (self._run_info or {}).get("detach"):
            self.cancel()

    # ------------------------------------------------------------------------------------------
    # On disk

    def _save(self) -> None:
        tasks = [{"name": n, "executor": e.executor.to_dict()} for n, e in self._entries.items()]
        metadata = {
            "id": self.id,
            "title": self.title,
            "created": self._created.isoformat(timespec="microseconds"),
            "tasks": tasks,
            "run": self._run_info,
        }
        write_json(self.dir / _METADATA, metadata)

    @classmethod
    def from_id(cls, experiment_id: str, *, base_dir: str | Path | None = None) -> Experiment:
        """Rebuilds an experiment (tasks, executors, state) from its directory."""
        base = Path(base_dir) if base_dir is not None else experiments_dir()
        directory = base / experiment_id
        if not _NAME.fullmatch(experiment_id) or not (directory / _METADATA).is_file():
            known = [info.id for info in list_experiments(base)]
            raise OpticaError(
                f"no experiment '{experiment_id}' in {base}{did_you_mean(experiment_id, known)}"
            )
        return cls.from_dir(directory)

    @classmethod
    def from_dir(cls, directory: Path) -> Experiment:
        metadata = read_json(directory / _METADATA)
        experiment = cls(metadata["title"], base_dir=directory.parent)
        experiment._dir = directory
        experiment._created = datetime.datetime.fromisoformat(metadata["created"])
        experiment._run_info = metadata.get("run")
        for item in metadata["tasks"]:
            job = Job(directory / item["name"])
            executor = Executor.from_dict(item["executor"])
            experiment._entries[item["name"]] = _Entry(executor, job)
        return experiment

    def _entry(self, name: str) -> _Entry:
        if name not in self._entries:
            raise ConfigError(
                f"experiment '{self.id}' has no task '{name}'{did_you_mean(name, self._entries)}"
                f" (tasks: {', '.join(self._entries) or 'none'})"
            )
        return self._entries[name]

    def _new_name(self, task: Any, name: str | None) -> str:
        if name is None:
            base = default_task_name(task)
            candidates = itertools.chain([base], (f"{base}_{i}" for i in itertools.count(2)))
            return next(n for n in candidates if n not in self._entries)
        if not _NAME.fullmatch(name):
            raise ConfigError(f"task name '{name}' must be letters, digits, '.', '_' or '-'")
        if name in self._entries:
            raise ConfigError(f"task name '{name}' is already used in experiment '{self.id}'")
        return name

    def __repr__(self) -> str:
        return f"Experiment({self.title!r}, tasks={list(self._entries)})"


def default_task_name(task: Any) -> str:
    """The target's ``__name__`` (a Script: its file's stem), made safe for a directory name."""
    if isinstance(task, Script):
        raw = task.name
    elif isinstance(task, fdl.Buildable):
        raw = getattr(task.__fn_or_cls__, "__name__", "task")
    else:
        raw = "task"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", raw).strip("._-") or "task"


def as_executor(executor: Any) -> Executor:
    """``None`` → ``LocalExecutor()``; a Config of an executor is built; others are refused."""
    if executor is None:
        return LocalExecutor()
    if isinstance(executor, fdl.Buildable):
        executor = fdl.build(executor)
    if not isinstance(executor, Executor):
        raise ConfigError(
            f"executor must be an Executor (e.g. run.LocalExecutor()), not {executor!r}"
        )
    return executor


def list_experiments(base_dir: str | Path | None = None) -> list[ExperimentInfo]:
    """Every experiment under ``base_dir``, newest first."""
    base = Path(base_dir) if base_dir is not None else experiments_dir()
    found = []
    for path in base.glob(f"*/{_METADATA}"):
        try:
            meta = read_json(path)
        except ValueError:  # a half-deleted or foreign folder: not ours to list
            continue
        tasks = tuple(item["name"] for item in meta.get("tasks", []))
        found.append(
            ExperimentInfo(path.parent.name, meta["title"], meta["created"], tasks, path.parent)
        )
    return sorted(found, key=lambda info: (info.created, info.id), reverse=True)


def _make_dir(base: Path, title: str, created: datetime.datetime) -> Path:
    """Creates ``<base>/<title>_<stamp>``, adding ``_2``, ``_3``... if another run took it."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", title).strip("._-") or "experiment"
    stem = f"{slug}_{created.strftime('%Y%m%d_%H%M%S')}"
    base.mkdir(parents=True, exist_ok=True)
    for index in itertools.count(1):
        candidate = base / (stem if index == 1 else f"{stem}_{index}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise AssertionError("unreachable")


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())
