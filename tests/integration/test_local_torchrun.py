"""LocalExecutor under torchrun: two real processes, a real gloo all_reduce, real failures."""

import re
from pathlib import Path

import pytest

from optica import run
from optica.run.api import run as run_task
from optica.run.errors import TaskFailedError
from optica.run.executors import LocalExecutor
from optica.run.script import Script
from tests.integration import tasks

pytestmark = pytest.mark.distributed


def torchrun(n=2):
    return LocalExecutor(ntasks_per_node=n, launcher="torchrun")


def test_two_ranks_all_reduce_over_gloo():
    result = run_task(run.Partial(tasks.all_reduce_sum, value_per_rank=2.0), executor=torchrun())
    log = result.logs()
    # 2 * (0 + 1) + 2 * (1 + 1): both ranks saw both contributions
    assert "rank 0/2 all_reduce sum=6" in log and "rank 1/2 all_reduce sum=6" in log
    assert result.value["rank"] == 0 and result.value["sum"] == 6.0  # rank 0 writes the result
    assert "terminate called" not in log  # the gloo exit crash (see ENVIRONMENT.md)


def test_failing_rank_fails_the_task():
    task = run.Partial(tasks.fail_on_rank, rank=1, code=3)
    with pytest.raises(TaskFailedError) as error:
        run_task(task, executor=torchrun(), name="failing")
    assert error.value.returncode == 1  # torchrun's own exit code when a worker fails
    assert str(error.value).startswith("task 'failing' failed with exit code 1 (log: ")
    assert re.search(r"rank\s*: 1 .*\n\s*exitcode\s*: 3", error.value.log_tail)  # torchrun's report
    log_path = re.search(r"\(log: (.*)\)", str(error.value)).group(1)
    assert "rank 1 failing with 3" in Path(log_path).read_text()


def test_script_under_torchrun_runs_once_per_rank():
    result = run_task(Script(inline='echo "script rank $RANK of $WORLD_SIZE"'), executor=torchrun())
    assert sorted(line for line in result.logs().splitlines() if line.startswith("script")) == [
        "script rank 0 of 2",
        "script rank 1 of 2",
    ]
