"""Supervising a job's process: run its command, tee its output, record its status.

``python -m optica.run.supervisor JOB_DIR`` runs :class:`Supervisor` for a launched job; a
direct script runs it in-process. Every launched task runs under a supervisor, so a job's log
and status look the same whoever started it and whatever it runs. The supervisor:

* starts ``command.json``'s argv in its own process group (so cancelling reaches every process a
  launcher such as torchrun forks, and nothing else);
* copies the output to ``log.txt`` and to its own stdout in raw chunks, not lines, so ``\\r``
  progress bars and partial lines arrive as they are written;
* writes ``status.json``: RUNNING with pids at start; SUCCEEDED / FAILED with the exit code at the
  end; CANCELLED when it receives SIGTERM (it then terminates the child's group, and kills it if it
  has not exited after a grace period).

The job ends when its output closes: a background process a script leaves running (``cmd &``)
still writes to the log, so the job lasts until it exits too.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from optica.run.job import Job, State, now
from optica.run.runtime import with_process_defaults

KILL_GRACE_S = 5.0  # between SIGTERM and SIGKILL when cancelling
_CHUNK = 65536


class Supervisor:
    """Runs a job's command, tees its output and records its status."""

    def __init__(self, job: Job, echo: Callable[[bytes], None] | None = None):
        self.job = job
        self.echo = echo
        self.child: subprocess.Popen[bytes] | None = None
        self.cancelled = False
        self._kill_timer: threading.Timer | None = None

    def cancel(self, *_signal_args: Any) -> None:
        """Terminates the child's process group; usable directly as a signal handler."""
        self.cancelled = True
        if self.child is None or self._kill_timer is not None:
            return
        signal_group(self.child.pid, signal.SIGTERM)
        self._kill_timer = threading.Timer(
            KILL_GRACE_S, signal_group, (self.child.pid, signal.SIGKILL)
        )
        self._kill_timer.daemon = True
        self._kill_timer.start()

    def run(self) -> int:
        """Runs the command to the end; returns the child's exit code (negative: a signal)."""
        if self.cancelled or self.job.state() is State.CANCELLED:  # cancelled while launching
            self.job.write_status(State.CANCELLED, reason="cancelled before start")
            return -signal.SIGTERM
        try:
            self.child = self._start(self.job.read("command.json"))
        except OSError as err:
            self._append_log(f"[optica] cannot start the task: {err}\n".encode())
            self.job.write_status(State.FAILED, returncode=127, started=now())
            return 127
        if self.cancelled:
            self.cancel()  # a signal arrived while the child was starting
        self._record_start()
        self._copy_output()
        return self._record_end(self.child.wait())

    def _start(self, command: dict[str, Any]) -> subprocess.Popen[bytes]:
        # NOTE: unbuffered Python output, or a task's prints reach the log only when it exits.
        env = {
            **with_process_defaults(os.environ),
            "PYTHONUNBUFFERED": "1",
            **command.get("env", {}),
        }
        env["OPTICA_JOB_DIR"] = str(self.job.dir)
        return subprocess.Popen(
            command["argv"],
            cwd=command.get("cwd") or None,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: a cancel reaches all of it
        )

    def _record_start(self) -> None:
        assert self.child is not None
        self.job.write_status(
            State.RUNNING,
            supervisor_pid=os.getpid(),
            pid=self.child.pid,
            pgid=self.child.pid,
            started=now(),
        )

    def _copy_output(self) -> None:
        assert self.child is not None and self.child.stdout is not None
        fd = self.child.stdout.fileno()
        with self.job.log_path.open("ab") as log:
            while chunk := os.read(fd, _CHUNK):
                log.write(chunk)
                log.flush()
                self._echo(chunk)
        self.child.stdout.close()

    def _echo(self, chunk: bytes) -> None:
        if self.echo is None:
            return
        try:
            self.echo(chunk)
        except (OSError, ValueError):  # the reader went away: keep logging, stop echoing
            self.echo = None

    def _append_log(self, data: bytes) -> None:
        with self.job.log_path.open("ab") as log:
            log.write(data)
        self._echo(data)

    def _record_end(self, returncode: int) -> int:
        if self._kill_timer is not None:
            self._kill_timer.cancel()
        if self.cancelled:
            state = State.CANCELLED
        else:
            state = State.SUCCEEDED if returncode == 0 else State.FAILED
        self.job.write_status(state, returncode=returncode, ended=now())
        return returncode


def signal_group(pgid: int, signum: int) -> None:
    """Sends ``signum`` to a process group, ignoring one that has already gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def signal_process(pid: int, signum: int) -> None:
    """Sends ``signum`` to one process, ignoring one that has already gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def wait_for_exit(pid: int, handle: Any = None, timeout: float | None = 10.0) -> bool:
    """Waits for ``pid`` to exit (reaping it if ``handle`` is its Popen); True if it did."""
    if isinstance(handle, subprocess.Popen):
        try:
            handle.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False
    deadline = None if timeout is None else time.monotonic() + timeout
    while process_alive(pid):
        if deadline is not None and time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie (exited, not yet reaped by its parent) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc here: trust kill(0)
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def echo_to(stream: Any) -> Callable[[bytes], None]:
    """A chunk writer for ``stream``: its bytes buffer when it has one, else decoded text."""
    buffer = getattr(stream, "buffer", None)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def write(chunk: bytes) -> None:
        if buffer is not None:
            buffer.write(chunk)
            buffer.flush()
        else:  # e.g. a notebook's or pytest's replacement stdout
            stream.write(decoder.decode(chunk))
            stream.flush()

    return write


def exit_status(returncode: int) -> int:
    """A process exit status for a child's return code (a signal ``-N`` becomes ``128 + N``)."""
    return returncode if returncode >= 0 else 128 - returncode
