"""A real Slurm cluster for the tests: ``slurmctld`` + ``slurmd`` on this machine, one node.

The fixture installs nothing (``make test`` installs Debian's ``slurm-wlm`` where it can); without
the daemons the tests skip and say why. Everything the cluster writes (state, spool, logs) lives
in a temporary directory; the daemons run in the foreground (``-D``) as our children, so they are
stopped by PID and nothing outlives the session. ``SLURM_CONF`` points the client commands
(``sbatch``, ``squeue``...) at this cluster for the session; jobs inherit it (``--export=ALL``).

Measured facts this relies on are in shared/ENVIRONMENT.md ("Slurm (a real one, for tests)").
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

DAEMONS = ("slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scontrol", "scancel", "sinfo")
NODE = "localhost"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0

SLURM_CONF = """\
ClusterName=optica-test
SlurmctldHost={node}
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser={user}
SlurmdUser=root
AuthType=auth/none
CredType=cred/none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
KillWait=5
FirstJobId={first_job_id}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
NodeName={node} NodeAddr=127.0.0.1 CPUs=2 RealMemory=2000 State=UNKNOWN
PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


@dataclass
class SlurmCluster:
    """A running test cluster: its config file, its daemons, and their logs."""

    root: Path
    conf: Path
    daemons: dict[str, subprocess.Popen]

    def logs(self, lines: int = 40) -> str:
        """The tail of each daemon's log, for failure messages."""
        parts = []
        for path in sorted((self.root / "log").glob("*")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"==> {path.name} <==\n" + "\n".join(text))
        return "\n".join(parts)

    def scontrol_job(self, job_id: str) -> dict[str, str]:
        """``scontrol show job`` as a dict (``JobState``, ``ExitCode``, ``Dependency``...)."""
        done = subprocess.run(
            ["scontrol", "show", "job", job_id, "--oneliner"], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        return dict(word.split("=", 1) for word in done.stdout.split() if "=" in word)


def _missing_binaries() -> list[str]:
    return [name for name in (*DAEMONS, *CLIENTS) if shutil.which(name) is None]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _first_job_id() -> int:
    """Distinct job ids for the clusters of parallel test workers (pytest-xdist ``gwN``): a
    job's default rendezvous port derives from its id, and the clusters share this machine."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return 1 + 1000 * int(worker.removeprefix("gw") or 0)


def _write_conf(root: Path) -> Path:
    for sub in ("state", "spool", "log"):
        (root / sub).mkdir(parents=True)
    conf = root / "slurm.conf"
    conf.write_text(
        SLURM_CONF.format(
            node=NODE,
            root=root,
            user=getpass.getuser(),
            ctld_port=_free_port(),
            slurmd_port=_free_port(),
            first_job_id=_first_job_id(),
        )
    )
    return conf


def _start(conf: Path, root: Path) -> dict[str, subprocess.Popen]:
    daemons = {}
    commands = {
        "slurmctld": ["slurmctld", "-D", "-i", "-f", str(conf)],  # -i: ignore stale state
        "slurmd": ["slurmd", "-D", "-f", str(conf), "-N", NODE],  # -N: hostname is not "localhost"
    }
    for name, argv in commands.items():
        out = (root / "log" / f"{name}.stdout").open("wb")
        daemons[name] = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    return daemons


def _wait_idle(cluster: SlurmCluster) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    state = ""
    while time.monotonic() < deadline:
        for name, process in cluster.daemons.items():
            if process.poll() is not None:
                pytest.fail(f"{name} exited with {process.returncode}\n{cluster.logs()}")
        done = subprocess.run(
            ["sinfo", "--noheader", "--nodes", NODE, "-o", "%t"], capture_output=True, text=True
        )
        state = done.stdout.strip()
        if state == "idle":
            return
        time.sleep(0.2)
    pytest.fail(
        f"the Slurm node is '{state}', not idle, after {START_TIMEOUT_S} s\n{cluster.logs()}"
    )


def _stop(cluster: SlurmCluster) -> None:
    """slurmd first (it ends its job steps), then the controller; SIGKILL if one hangs."""
    for name in ("slurmd", "slurmctld"):
        process = cluster.daemons[name]
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    missing = _missing_binaries()
    if missing:
        pytest.skip(
            f"Slurm is not installed (no {', '.join(missing)} on PATH): "
            "`apt-get install slurm-wlm` (make test does it where apt is available)"
        )
    if os.geteuid() != 0:
        pytest.skip("the test cluster's slurmd must run as root to start jobs")
    root = tmp_path_factory.mktemp("slurm")
    conf = _write_conf(root)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SLURM_CONF", str(conf))
        cluster = SlurmCluster(root, conf, _start(conf, root))
        try:
            _wait_idle(cluster)
            yield cluster
        finally:
            died = {n: p.returncode for n, p in cluster.daemons.items() if p.poll() is not None}
            _stop(cluster)
            if died:
                print(f"Slurm daemons died during the tests: {died}\n{cluster.logs()}")
