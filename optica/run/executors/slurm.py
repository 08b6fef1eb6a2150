"""``SlurmExecutor``: run a job as a Slurm batch job, with srun + torchrun across nodes.

``launch`` renders ``sbatch.sh`` into the job directory from ``templates/sbatch.sh.j2`` and submits
it with ``sbatch --parsable``; the Slurm job id goes to ``launch.json``. The script runs in two
passes so that a Slurm job leaves the same files as a local one:

1. As the batch step, it execs optica's supervisor (``python -m optica.run.supervisor JOB_DIR``),
   whose command (``command.json``) is the script itself with ``--optica-task``.
2. Under the supervisor, it runs ``srun --kill-on-bad-exit=1 ...``: one torchrun per node with a
   c10d rendezvous on the allocation's first node (``launcher="torchrun"``), or every rank
   directly with ``RANK`` / ``WORLD_SIZE`` / ``MASTER_ADDR`` set (``launcher=None``). Each rank
   runs ``python -m optica.run.runner`` (which tears gloo down cleanly, see ENVIRONMENT.md).

The supervisor tees the task's output to ``log.txt`` and to the batch step's output, which sbatch
writes to ``slurm-<id>.out`` (:meth:`SlurmExecutor.logs`: the task's output plus Slurm's own
messages such as "CANCELLED ... DUE TO TIME LIMIT"), and it records SUCCEEDED / FAILED with the
exit code in ``status.json``. :meth:`SlurmExecutor.status` reads that record and asks Slurm
(``squeue``, then ``sacct``, then ``scontrol show job``) only to learn what the record cannot say:
that the job is running, that it can never start, or that it ended without a record.

Paths are absolute, so the job directory (``$OPTICA_HOME``) and this Python environment must be on
a filesystem that the compute nodes share, as is usual on Slurm clusters.
"""

from __future__ import annotations

import functools
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from time import monotonic, sleep
from typing import Any

from optica.run.errors import ConfigError, did_you_mean
from optica.run.executors.base import Executor, python_command
from optica.run.executors.slurm_queue import GONE, SlurmJobState, SlurmTools, seconds_since
from optica.run.job import Job, State, now
from optica.run.script import Script
from optica.run.serialize import register_value_type

LAUNCHERS = ("torchrun",)
DEPENDENCY_TYPES = ("afterok", "afterany", "afternotok", "after")
SCRIPT_NAME = "sbatch.sh"
TASK_FLAG = "--optica-task"  # the script's second pass, under the supervisor
FILE_POLL_S = 0.2  # how often ``wait`` reads status.json (a local file)
QUEUE_POLL_S = 3.0  # how often ``wait`` asks Slurm (a controller shared by every user)
RECORD_GRACE_S = 30.0  # a shared filesystem may show the supervisor's last write this late
CANCEL_WAIT_S = 30.0


@dataclass(frozen=True)
class Submission:
    """``launch``'s handle: the Slurm job id, and whether ``wait`` shows the output as it comes."""

    job_id: str
    follow: bool = False


@register_value_type
@dataclass
class SlurmExecutor(Executor):
    """Runs a task as a Slurm batch job (see the module docstring).

    Args:
        account: ``--account``.
        partition: ``--partition``.
        nodes: ``--nodes``.
        ntasks_per_node: Processes per node (with torchrun: its ``--nproc_per_node``, and Slurm
            runs one task per node).
        gpus_per_node: ``--gpus-per-node``.
        cpus_per_task: CPUs per process (with torchrun the node's task gets
            ``ntasks_per_node`` times as many; by default one per process).
        mem: ``--mem`` (per node, e.g. ``"64G"``).
        time: ``--time`` limit.
        job_name: ``--job-name``; default the task's name.
        container_image: Run the ranks in this image (pyxis ``srun --container-image``).
        container_mounts: ``srun --container-mounts``; the job directory is added.
        env_vars: Variables exported in the script.
        additional_parameters: More ``#SBATCH`` options, ``{"exclusive": True, "qos": "high"}``
            (underscores become dashes; ``True`` writes a bare flag).
        dependencies: Slurm job ids this job waits for (``dependency_type``), or full specs
            such as ``"afterany:1234"``.
        dependency_type: How ``dependencies`` given as bare ids must end.
        launcher: ``"torchrun"`` or ``None`` (srun starts every rank itself).
        rdzv_port: The rendezvous / ``MASTER_PORT``; default derived from the Slurm job id, so
            two jobs sharing a first node do not collide.
        srun_args: More ``srun`` options, e.g. ``["--mpi=pmix"]``.
        python: The ranks' interpreter; default this one (``python`` in a container). The
            supervisor always uses this one: it runs on the batch node, outside any container.
        sbatch_binary: The ``sbatch`` to use; ``squeue``, ``sacct``, ``scontrol`` and ``scancel``
            are taken from the same directory.
    """

    account: str | None = None
    partition: str | None = None
    nodes: int = 1
    ntasks_per_node: int = 1
    gpus_per_node: int | None = None
    cpus_per_task: int | None = None
    mem: str | None = None
    time: str = "01:00:00"
    job_name: str | None = None
    container_image: str | None = None
    container_mounts: list[str] = field(default_factory=list)
    env_vars: dict[str, str] = field(default_factory=dict)
    additional_parameters: dict[str, Any] = field(default_factory=dict)
    dependencies: list[str] = field(default_factory=list)
    dependency_type: str = "afterok"
    launcher: str | None = "torchrun"
    rdzv_port: int | None = None
    srun_args: list[str] = field(default_factory=list)
    python: str | None = None
    sbatch_binary: str = "sbatch"

    def __post_init__(self) -> None:
        if self.launcher is not None and self.launcher not in LAUNCHERS:
            raise ConfigError(
                f"SlurmExecutor: unknown launcher '{self.launcher}'"
                f"{did_you_mean(self.launcher, LAUNCHERS)} (known: None, {', '.join(LAUNCHERS)})"
            )
        if self.dependency_type not in DEPENDENCY_TYPES:
            raise ConfigError(
                f"SlurmExecutor: unknown dependency_type '{self.dependency_type}'"
                f"{did_you_mean(self.dependency_type, DEPENDENCY_TYPES)}"
                f" (known: {', '.join(DEPENDENCY_TYPES)})"
            )
        for name in ("nodes", "ntasks_per_node", "gpus_per_node", "cpus_per_task"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"SlurmExecutor: {name} must be an integer >= 1, not {value!r}")
        for name in self.env_vars:
            if not name.isidentifier():
                raise ConfigError(f"SlurmExecutor: env_vars key {name!r} is not a variable name")
        self.dependencies = [str(dependency) for dependency in self.dependencies]
        self.env_vars = {key: str(value) for key, value in self.env_vars.items()}

    # ------------------------------------------------------------------------------------------
    # The script

    def command_for(self, job: Job) -> list[str]:
        """What the supervisor runs: the sbatch script's second pass."""
        return ["bash", str(job.path(SCRIPT_NAME)), TASK_FLAG]

    def environment(self, job: Job) -> dict[str, str]:
        """Only a script's own variables: ``env_vars`` are exported by the sbatch script."""
        task = job.task()
        return dict(task.env) if isinstance(task, Script) else {}

    def script(self, job: Job, cwd: str, after: list[Job] | None = None) -> str:
        """The sbatch script for ``job``, run from ``cwd``, held until the Slurm jobs of
        ``after`` (optica jobs already submitted) succeed and ``dependencies`` are met."""
        values = {
            "sbatch_options": self._sbatch_options(job, cwd, self._dependency(after or [])),
            "task_name": job.name,
            "job_dir": shlex.quote(str(job.dir)),
            "env": [(name, shlex.quote(value)) for name, value in self.env_vars.items()],
            "supervisor": shlex.join(python_command("optica.run.supervisor", str(job.dir))),
            # NOTE: below Linux's ephemeral ports (32768+), where connections get their ports
            "port": self.rdzv_port or "$((20000 + SLURM_JOB_ID % 10000))",
            "launcher": self.launcher,
            "nproc_per_node": self.ntasks_per_node,
            "srun_command": " \\\n    ".join(self._srun_command(job)),
        }
        return _template().render(**values)

    def describe(self, job: Job) -> str:
        """The whole sbatch script (a dry run submits nothing, so only explicit dependencies)."""
        script = self.script(job, os.getcwd())
        return f"# sbatch --parsable {job.path(SCRIPT_NAME)}\n{script}"

    def _cpus_per_slurm_task(self) -> int | None:
        """With torchrun one Slurm task per node holds every process's CPUs (None: Slurm's 1)."""
        if self.launcher == "torchrun":
            cpus = (self.cpus_per_task or 1) * self.ntasks_per_node
        else:
            cpus = self.cpus_per_task
        return cpus if cpus and cpus > 1 else None

    def _sbatch_options(self, job: Job, cwd: str, dependency: str | None) -> list[str]:
        torchrun = self.launcher == "torchrun"
        options: dict[str, Any] = {
            "job-name": self.job_name or job.name,
            "output": job.path("slurm-%j.out"),
            "chdir": cwd,
            "nodes": self.nodes,
            "ntasks-per-node": 1 if torchrun else self.ntasks_per_node,
            "cpus-per-task": self._cpus_per_slurm_task(),
            "gpus-per-node": self.gpus_per_node,
            "mem": self.mem,
            "time": self.time,
            "account": self.account,
            "partition": self.partition,
            "dependency": dependency,
        }
        for key, value in self.additional_parameters.items():
            options[key.replace("_", "-")] = value
        return [_option(key, value) for key, value in options.items() if value not in (None, False)]

    def _srun_command(self, job: Job) -> list[str]:
        """The lines of the task's command: ``srun`` and its options, then what each Slurm task
        runs (shell words, so the script's variables expand)."""
        torchrun = self.launcher == "torchrun"
        srun = ["srun", "--kill-on-bad-exit=1"]
        srun.append(f"--ntasks-per-node={1 if torchrun else self.ntasks_per_node}")
        if cpus := self._cpus_per_slurm_task():  # NOTE: srun >= 22.05 does not inherit sbatch's
            srun.append(f"--cpus-per-task={cpus}")
        lines = [shlex.join([*srun, *self.srun_args])]
        if self.container_image:
            mounts = ",".join([*self.container_mounts, f"{job.dir}:{job.dir}"])
            container = [f"--container-image={self.container_image}"]
            lines.append(shlex.join([*container, f"--container-mounts={mounts}"]))
        return lines + self._rank_command(job)

    def _rank_command(self, job: Job) -> list[str]:
        task = job.task()
        python = self.python or ("python" if self.container_image else sys.executable)
        if isinstance(task, Script):
            inner = task.to_command()
        else:
            runner = ["optica.run.runner", str(job.task_path), "--result", str(job.result_path)]
            inner = ["-m", *runner] if self.launcher else [python, "-m", *runner]
        if self.launcher == "torchrun":
            no_python = ["--no-python"] if isinstance(task, Script) else []
            return [*_torchrun(python, self.ntasks_per_node), shlex.join([*no_python, *inner])]
        if self.nodes * self.ntasks_per_node == 1:
            return [shlex.join(inner)]
        return [_rank_environment(self.ntasks_per_node), shlex.join(inner)]

    # ------------------------------------------------------------------------------------------
    # Submitting

    def launch(self, job: Job, detach: bool = False) -> Submission | None:
        """Submits ``job``; ``detach=False`` makes ``wait`` show its output as it arrives."""
        return self.launch_after(job, [], detach=detach)

    def launch_after(self, job: Job, after: list[Job], detach: bool = False) -> Submission | None:
        """Submits ``job`` to start only once every job in ``after`` has succeeded (``afterok``).

        A job in ``after`` that already ended without succeeding means this one never runs: it
        is marked CANCELLED ("not run") without being submitted.
        """
        for other in after:
            state = other.state()
            if state.done and state is not State.SUCCEEDED:
                job.write_status(State.CANCELLED, reason=f"not run: '{other.name}' {state}")
                return None
        waits_for = [other for other in after if other.state() is not State.SUCCEEDED]
        cwd = os.getcwd()
        self.write_command(job, cwd)
        script = job.path(SCRIPT_NAME)
        script.write_text(self.script(job, cwd, waits_for), encoding="utf-8")
        job_id, why = self.tools.submit(script)
        if job_id is None:
            return self._refused(job, why)
        job.write(
            "launch.json",
            {
                "slurm_job_id": job_id,
                "launched": now(),
                "output": str(self.output_path(job, job_id)),
                "after": [str(other.dir) for other in waits_for],
            },
        )
        return Submission(job_id, follow=not detach)

    def _dependency(self, after: list[Job]) -> str | None:
        specs = [d if ":" in d else f"{self.dependency_type}:{d}" for d in self.dependencies]
        for other in after:
            launch = other.read("launch.json") or {}
            if launch.get("slurm_job_id"):
                specs.append(f"afterok:{launch['slurm_job_id']}")
        return ",".join(specs) or None

    def _refused(self, job: Job, why: str) -> None:
        with job.log_path.open("a", encoding="utf-8") as log:
            log.write(f"[optica] {why}\n")
        job.write_status(State.FAILED, reason=why)
        return None

    def output_path(self, job: Job, job_id: str) -> Path:
        """The batch step's output file (sbatch ``--output``) of Slurm job ``job_id``."""
        return job.path(f"slurm-{job_id}.out")

    # ------------------------------------------------------------------------------------------
    # Following

    def status(self, job: Job) -> State:
        """The recorded state, completed from Slurm's view while the record cannot tell."""
        state = job.state()
        launch = job.read("launch.json") or {}
        job_id = launch.get("slurm_job_id")
        if job_id is None:
            return state
        if state.done:
            return self._settle(job, launch, state)
        if state is State.PENDING and (blocker := _failed_dependency(launch)):
            return self._drop(job, job_id, f"not run: {blocker}")
        slurm = self.query(job_id)
        return state if slurm is None else self._reconcile(job, job_id, slurm)

    @property
    def tools(self) -> SlurmTools:
        return SlurmTools(self.sbatch_binary)

    def query(self, job_id: str) -> SlurmJobState | None:
        """Slurm's view of ``job_id`` (see :meth:`SlurmTools.query`)."""
        return self.tools.query(job_id)

    def _reconcile(self, job: Job, job_id: str, slurm: SlurmJobState) -> State:
        if slurm.live:
            if slurm.reason == "DependencyNeverSatisfied":
                return self._drop(job, job_id, "not run: a dependency did not succeed")
            return State.RUNNING if slurm.optica_state is State.RUNNING else job.state()
        state = job.state()  # the supervisor may have recorded the end since the first read
        if state.done:
            return state
        if slurm is not GONE and seconds_since(slurm.ended) < RECORD_GRACE_S:
            return state  # the supervisor's record may not have reached this node's view yet
        final = State.CANCELLED if slurm.optica_state is State.CANCELLED else State.FAILED
        why = f"Slurm job {job_id} ended {slurm.state} with no end recorded by optica"
        if slurm is GONE:
            why = f"Slurm no longer knows job {job_id}, and optica recorded no end"
        job.write_status(final, reason=why, slurm_state=slurm.state)
        return final

    def _settle(self, job: Job, launch: dict[str, Any], state: State) -> State:
        """Adds Slurm's word to an unsuccessful end, once. A job Slurm ended itself (``TIMEOUT``,
        ``NODE_FAIL``, ``PREEMPTED``...) is FAILED with that reason, even where its signalled
        supervisor recorded CANCELLED; one cancelled with ``scancel`` outside optica is
        CANCELLED, even where the task died of the signal first and was recorded FAILED."""
        if state is State.SUCCEEDED or launch.get("cancel_requested"):
            return state
        if "slurm_state" in job.status():
            return state
        slurm = self.query(launch["slurm_job_id"])
        if slurm is None or slurm is GONE or slurm.live:
            return state  # Slurm has not settled yet: ask again next time
        if slurm.state in ("COMPLETED", "FAILED"):  # the task's own end
            settled, why = state, {}
        elif slurm.state == "CANCELLED":
            settled, why = State.CANCELLED, {}
        else:
            settled, why = State.FAILED, {"reason": f"Slurm: {slurm.state}"}
        job.write_status(settled, slurm_state=slurm.state, **why)
        return settled

    def _drop(self, job: Job, job_id: str, reason: str) -> State:
        """Removes a job that can never start from the queue and records why."""
        self.tools.cancel(job_id)
        job.write_status(State.CANCELLED, reason=reason)
        return State.CANCELLED

    def wait(self, job: Job, handle: Any = None, timeout: float | None = None) -> State:
        """Reads ``status.json`` often and asks Slurm seldom; with a following handle, copies
        the job's output to this process's stdout meanwhile."""
        deadline = None if timeout is None else monotonic() + timeout
        follow = _Follower(job) if isinstance(handle, Submission) and handle.follow else None
        asked = 0.0
        state = job.state()
        while True:
            if monotonic() - asked >= QUEUE_POLL_S or state.done:
                state, asked = self.status(job), monotonic()
            if follow is not None:
                follow.copy()
            if state.done:
                return state
            if deadline is not None and monotonic() > deadline:
                raise TimeoutError(f"job '{job.name}' still {state} after {timeout} s")
            sleep(FILE_POLL_S)
            state = job.state()

    def logs(self, job: Job) -> str:
        """The batch step's output file (the task's output and Slurm's messages), else
        ``log.txt`` (e.g. a submission that sbatch refused)."""
        launch = job.read("launch.json") or {}
        output = Path(launch["output"]) if launch.get("output") else None
        if output is not None and output.is_file():
            return output.read_bytes().decode("utf-8", errors="replace")
        return job.log()

    # ------------------------------------------------------------------------------------------
    # Cancelling

    def cancel(self, job: Job, handle: Any = None) -> None:
        """``scancel``s the job and waits for its end; anything but SUCCEEDED becomes CANCELLED."""
        if job.state().done:
            return
        launch = job.read("launch.json") or {}
        job_id = launch.get("slurm_job_id")
        if job_id is not None:
            job.write("launch.json", {**launch, "cancel_requested": now()})
            self.tools.cancel(job_id)
            self._wait_for_slurm_end(job, job_id)
        if job.state() is not State.SUCCEEDED:
            job.write_status(State.CANCELLED, reason="cancelled")

    def _wait_for_slurm_end(self, job: Job, job_id: str) -> None:
        """Until the record or Slurm says the job ended (a started job's supervisor then records
        CANCELLED itself), or Slurm cannot be asked."""
        deadline = monotonic() + CANCEL_WAIT_S
        while not job.state().done and monotonic() < deadline:
            slurm = self.query(job_id)
            if slurm is None or not slurm.live:
                return
            sleep(FILE_POLL_S)


# ----------------------------------------------------------------------------------------------
# Helpers


class _Follower:
    """Copies what a job's output file gains to this process's stdout."""

    def __init__(self, job: Job):
        self.job = job
        self.offset = 0

    def copy(self) -> None:
        output = (self.job.read("launch.json") or {}).get("output")
        if not output:
            return
        try:
            with open(output, "rb") as file:
                file.seek(self.offset)
                chunk = file.read()
        except FileNotFoundError:  # the job has not started yet
            return
        if chunk:
            self.offset += len(chunk)
            sys.stdout.write(chunk.decode("utf-8", errors="replace"))
            sys.stdout.flush()


@functools.cache
def _template() -> Any:
    import jinja2  # NOTE: only when a script is rendered: following jobs needs no jinja

    loader = jinja2.FileSystemLoader(str(Path(__file__).with_name("templates")))
    environment = jinja2.Environment(
        loader=loader, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True
    )
    return environment.get_template("sbatch.sh.j2")


def _torchrun(python: str, nproc_per_node: int) -> list[str]:
    """torchrun's lines: a c10d rendezvous on the first node (the script sets the variables)."""
    module = shlex.join([python, "-m", "torch.distributed.run"])
    return [
        f'{module} --nnodes "$SLURM_NNODES" --nproc_per_node {nproc_per_node}',
        '--rdzv_backend c10d --rdzv_endpoint "$head_node:$port" --rdzv_id "$SLURM_JOB_ID"',
    ]


def _rank_environment(ntasks_per_node: int) -> str:
    """A wrapper giving each srun task torch.distributed's variables from Slurm's."""
    exports = (
        "export RANK=$SLURM_PROCID LOCAL_RANK=$SLURM_LOCALID WORLD_SIZE=$SLURM_NTASKS"
        f' LOCAL_WORLD_SIZE={ntasks_per_node}; exec "$@"'
    )
    return f"bash -c {shlex.quote(exports)} optica-rank"


def _option(key: str, value: Any) -> str:
    return f"--{key}" if value is True else f"--{key}={value}"


def _failed_dependency(launch: dict[str, Any]) -> str | None:
    """The first optica job this one waits for that ended without success, as "'name' FAILED"."""
    for directory in launch.get("after", []):
        other = Job(Path(directory))
        state = other.state()
        if state.done and state is not State.SUCCEEDED:
            return f"'{other.name}' {state}"
    return None
