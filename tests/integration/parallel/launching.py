"""One torchrun launch of a task that trains several runs in the same processes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from optica import run
from optica.run.api import run as run_task
from optica.run.executors import LocalExecutor
from tests.integration.parallel import tasks


def launch(
    exp_dir: Any, runs: list[dict[str, Any]], *, ranks: int, task: Callable = tasks.train_all
) -> dict[str, Any]:
    """Runs ``task(exp_dir=..., runs=...)`` on ``ranks`` gloo processes (``LocalExecutor`` with
    torchrun); returns rank 0's result."""
    partial = run.Partial(task, exp_dir=str(exp_dir), runs=runs)
    executor = LocalExecutor(ntasks_per_node=ranks, launcher="torchrun")
    result = run_task(partial, executor=executor, name=f"parallel{ranks}")
    assert "terminate called" not in result.logs()  # the gloo exit crash (ENVIRONMENT.md)
    return result.value
