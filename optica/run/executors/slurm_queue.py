"""Asking Slurm about jobs: its command-line tools, their output parsed, and Slurm's job states
as optica's.

Three tools can say what became of a job, and each has a blind spot: ``squeue --states=all``
and ``scontrol show job`` know a job only while the controller keeps it (``MinJobAge``, 300 s by
default, after it ends); ``sacct`` knows it for good, but only where accounting storage is set up
(elsewhere it fails, and cannot say "no such job"). :meth:`SlurmTools.query` asks them in that
order and tells "Slurm no longer knows this job" (:data:`GONE`) apart from "Slurm cannot be asked"
(no binaries, no controller: ``None``), since only the first may end a job's record.
"""

from __future__ import annotations

import datetime
import subprocess
from dataclasses import dataclass
from pathlib import Path

from optica.run.job import State

COMMAND_TIMEOUT_S = 30
_NOT_FOUND = "not found"

# Slurm's job states (squeue/sacct/scontrol spell them alike) as optica's.
_STATES = {
    **dict.fromkeys(
        ("PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESV_DEL_HOLD"),
        State.PENDING,
    ),
    **dict.fromkeys(
        ("RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING", "RESIZING", "SUSPENDED", "STOPPED"),
        State.RUNNING,
    ),
    "COMPLETED": State.SUCCEEDED,
    "CANCELLED": State.CANCELLED,
    **dict.fromkeys(
        (
            "FAILED",
            "TIMEOUT",
            "NODE_FAIL",
            "OUT_OF_MEMORY",
            "BOOT_FAIL",
            "DEADLINE",
            "PREEMPTED",
            "SPECIAL_EXIT",
            "REVOKED",
        ),
        State.FAILED,
    ),
}


@dataclass(frozen=True)
class SlurmJobState:
    """What Slurm says about one job; ``state`` is Slurm's word (``TIMEOUT``, ``PENDING``...)."""

    state: str
    reason: str = ""
    ended: str = ""  # ISO end time, once the job has ended

    @property
    def optica_state(self) -> State | None:
        return _STATES.get(self.state)

    @property
    def live(self) -> bool:
        """Still queued or running (or Slurm's word is one optica does not know)."""
        return self.optica_state in (State.PENDING, State.RUNNING, None) and self is not GONE


GONE = SlurmJobState("GONE")  # no Slurm tool knows the job any more


@dataclass(frozen=True)
class SlurmTools:
    """Slurm's commands: ``sbatch`` as given, the others from the same directory (or PATH)."""

    sbatch: str = "sbatch"

    def run(self, tool: str, *args: str) -> subprocess.CompletedProcess[str] | None:
        """Runs ``tool args...``; None when it cannot run at all (missing, hanging)."""
        try:
            return subprocess.run(
                [self._binary(tool), *args],
                capture_output=True,
                text=True,
                timeout=COMMAND_TIMEOUT_S,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None

    def submit(self, script: Path) -> tuple[str | None, str]:
        """``sbatch --parsable script``: (the job id, "") or (None, why it was not submitted)."""
        done = self.run("sbatch", "--parsable", str(script))
        if done is None:
            return None, f"cannot run '{self.sbatch}': is Slurm installed and on PATH?"
        if done.returncode != 0:
            return None, f"sbatch refused the job: {(done.stderr or done.stdout).strip()}"
        return done.stdout.strip().split(";")[0], ""  # "ID" or "ID;cluster"

    def cancel(self, job_id: str) -> None:
        self.run("scancel", job_id)

    def query(self, job_id: str) -> SlurmJobState | None:
        """Slurm's view of ``job_id``: :data:`GONE` when no tool knows it, None when Slurm
        cannot be asked."""
        not_found = False
        for ask in (self._squeue, self._sacct, self._scontrol):
            answer = ask(job_id)
            if isinstance(answer, SlurmJobState):
                return answer
            not_found = not_found or answer == _NOT_FOUND
        return GONE if not_found else None

    def _binary(self, tool: str) -> str:
        if tool == "sbatch":
            return self.sbatch
        path = Path(self.sbatch)
        return tool if path.parent == Path() else str(path.with_name(tool))

    def _squeue(self, job_id: str) -> SlurmJobState | str | None:
        done = self.run("squeue", "-h", "--states=all", f"--jobs={job_id}", "-o", "%T|%r|%e")
        if done is None or done.returncode != 0:
            return _not_found_or_none(done)
        fields = (done.stdout.strip().splitlines() or [""])[0].split("|")
        if len(fields) != 3:
            return _NOT_FOUND
        return SlurmJobState(fields[0], fields[1], _end_time(fields[2]))

    def _sacct(self, job_id: str) -> SlurmJobState | str | None:
        done = self.run("sacct", "-n", "-X", "-P", f"--jobs={job_id}", "-o", "State,Reason,End")
        if done is None or done.returncode != 0:
            return None  # e.g. no accounting storage: sacct cannot say "no such job"
        fields = (done.stdout.strip().splitlines() or [""])[0].split("|")
        if len(fields) != 3:
            return _NOT_FOUND
        # NOTE: sacct writes "CANCELLED by 1000" where squeue writes "CANCELLED".
        return SlurmJobState(fields[0].split()[0], fields[1], _end_time(fields[2]))

    def _scontrol(self, job_id: str) -> SlurmJobState | str | None:
        done = self.run("scontrol", "show", "job", job_id, "--oneliner")
        if done is None or done.returncode != 0:
            return _not_found_or_none(done)
        fields = dict(
            word.split("=", 1) for word in done.stdout.split() if "=" in word and word[0] != "="
        )
        if "JobState" not in fields:
            return _NOT_FOUND
        ended = fields.get("EndTime", "")
        return SlurmJobState(fields["JobState"], fields.get("Reason", ""), _end_time(ended))


def seconds_since(timestamp: str) -> float:
    """Seconds from Slurm's ISO ``timestamp`` (this machine's clock) to now; inf if unknown."""
    if not timestamp:
        return float("inf")
    try:
        ended = datetime.datetime.fromisoformat(timestamp)
    except ValueError:
        return float("inf")
    return (datetime.datetime.now() - ended).total_seconds()


def _not_found_or_none(done: subprocess.CompletedProcess[str] | None) -> str | None:
    if done is not None and "Invalid job id" in done.stderr:
        return _NOT_FOUND
    return None


def _end_time(text: str) -> str:
    """Slurm's end time, or "" while the job has not ended ("N/A", "Unknown", "None")."""
    return text if text[:1].isdigit() else ""
