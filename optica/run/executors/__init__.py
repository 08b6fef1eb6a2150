"""Executors: where a job runs. ``LocalExecutor`` runs it here, ``SlurmExecutor`` on a Slurm
cluster; the base class is the contract."""

from optica.run.executors.base import Executor
from optica.run.executors.local import LocalExecutor
from optica.run.executors.slurm import SlurmExecutor

__all__ = ["Executor", "LocalExecutor", "SlurmExecutor"]
