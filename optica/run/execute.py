"""Running a task: build it, call it, record its result; in a launched process or in this one.

``python -m optica.run.runner TASK_JSON`` (:func:`run_task_file`) is what every rank of a
launched Python task executes. A ``Partial`` is built and then called with no arguments (the
usual shape of a training entry point); a ``Config``'s built object is itself the result.
Rank 0 (``RANK`` unset or ``0``) writes the result to ``result.json``: the value when it is JSON,
else its ``repr``. An exception prints its traceback and exits 1; a ``SystemExit`` keeps its
code.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

import fiddle as fdl

from optica.run.context import running
from optica.run.errors import ConfigError
from optica.run.job import Job, State, now, write_json
from optica.run.script import Script
from optica.run.supervise import Supervisor, echo_to
from optica.run.task_io import load_task
from optica.run.teardown import shutdown_distributed


def execute(task: Any) -> Any:
    """Builds ``task``; a Partial's built callable is then called with no arguments."""
    if not isinstance(task, fdl.Buildable):
        raise ConfigError(f"the runner runs configs, not a {type(task).__name__}")
    with running(task):
        built = fdl.build(task)
        return built() if isinstance(task, fdl.Partial) else built


def write_result(path: Path, value: Any) -> None:
    """Saves ``value`` as JSON when it is JSON-serializable, else its repr (marked as such)."""
    try:
        data = {"json": True, "value": json.loads(json.dumps(value))}
    except (TypeError, ValueError):
        data = {"json": False, "value": repr(value)}
    write_json(path, data)


def is_rank_zero() -> bool:
    return os.environ.get("RANK", "0") == "0"


def run_task_file(task_path: Path, result_path: Path | None) -> int:
    """Loads, runs and records one task; returns the process exit status."""
    code = 0
    try:
        value = execute(load_task(task_path.read_text(encoding="utf-8")))
        if result_path is not None and is_rank_zero():
            write_result(result_path, value)
    except SystemExit as exit_:
        code = _exit_code(exit_.code)
    except BaseException:
        traceback.print_exc()
        code = 1
    shutdown_distributed(clean=code == 0)
    return code


def run_in_process(job: Job, task: Any) -> State:
    """Runs a job's task in this process (``direct``), recording status, log and result.

    A Python task's prints go to this process's stdout and to the job's log; a script still runs
    as a child process (under an in-process supervisor), since it is not Python.
    """
    if isinstance(task, Script):
        return _run_script_in_process(job, task)
    job.write_status(State.RUNNING, pid=os.getpid(), started=now())
    try:
        code, value = _call_logged(job, task)
    except KeyboardInterrupt:
        job.write_status(State.CANCELLED, reason="interrupted")
        raise
    if code == 0:
        write_result(job.result_path, value)
    job.write_status(State.SUCCEEDED if code == 0 else State.FAILED, returncode=code)
    return job.state()


def _run_script_in_process(job: Job, script: Script) -> State:
    job.write("command.json", {"argv": script.to_command(), "env": script.env, "cwd": os.getcwd()})
    supervisor = Supervisor(job, echo=echo_to(sys.stdout))
    try:
        supervisor.run()
    except KeyboardInterrupt:  # the script is in its own session: Ctrl-C reached only us
        supervisor.cancel()
        job.write_status(State.CANCELLED, reason="interrupted")
        raise
    return job.state()


def _call_logged(job: Job, task: Any) -> tuple[int, Any]:
    """``execute(task)`` with stdout and stderr also copied to the log; (exit code, value)."""
    with job.log_path.open("a", encoding="utf-8") as log:
        out, err = _Tee(sys.stdout, log), _Tee(sys.stderr, log)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                return 0, execute(task)
            except SystemExit as exit_:
                return _exit_code(exit_.code), None
            except Exception:
                traceback.print_exc()
                return 1, None


class _Tee:
    """A text stream writing to two streams: the console and a job's log."""

    def __init__(self, first: Any, second: Any):
        self.streams = (first, second)

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()


def _exit_code(code: Any) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)  # what `sys.exit("message")` does
    return 1
