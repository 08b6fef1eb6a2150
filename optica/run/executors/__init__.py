"""Executors: where a job runs. ``LocalExecutor`` runs it here; the base class is the contract."""

from optica.run.executors.base import Executor
from optica.run.executors.local import LocalExecutor

__all__ = ["Executor", "LocalExecutor"]
