"""optica's own factories for the CLI: executors (``executor=local``, ``executor=torchrun``,
``executor=slurm``)."""

from __future__ import annotations

from optica.run.cli.registry import factory
from optica.run.config import Config
from optica.run.executors.local import LocalExecutor
from optica.run.executors.slurm import SlurmExecutor


@factory(name="local")
def local_executor(ntasks_per_node: int = 1) -> Config[LocalExecutor]:
    """Run in a subprocess on this machine (``ntasks_per_node`` > 1 needs torchrun)."""
    launcher = "torchrun" if ntasks_per_node > 1 else None
    return Config(LocalExecutor, ntasks_per_node=ntasks_per_node, launcher=launcher)


@factory(name="torchrun")
def torchrun_executor(ntasks_per_node: int = 1) -> Config[LocalExecutor]:
    """Run ``ntasks_per_node`` processes on this machine under torchrun."""
    return Config(LocalExecutor, ntasks_per_node=ntasks_per_node, launcher="torchrun")


@factory(name="slurm")
def slurm_executor(nodes: int = 1, ntasks_per_node: int = 1) -> Config[SlurmExecutor]:
    """Submit to Slurm (sbatch; srun + torchrun per node); other fields: ``executor.<name>=``."""
    return Config(SlurmExecutor, nodes=nodes, ntasks_per_node=ntasks_per_node)
