"""LocalExecutor, the supervisor and the runner: commands, logs, status, cancel, (de)serialize."""

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from optica import run
from optica.run.errors import ConfigError
from optica.run.executors import Executor, LocalExecutor
from optica.run.job import Job, State
from optica.run.script import Script
from optica.run.serialize import from_yaml, to_yaml
from optica.run.supervise import Supervisor, process_alive
from tests.unit.run import tasks

TORCHRUN = "torch.distributed.run"


def make_job(tmp_path, task, executor=None):
    executor = executor or LocalExecutor()
    return Job.create(tmp_path / "job", task, executor.to_dict())


def group_members(pgid):
    """Live (non-zombie) processes in process group ``pgid``, from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def wait_until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


# ----------------------------------------------------------------------------------------------
# Configuration


def test_several_tasks_need_torchrun():
    with pytest.raises(
        ConfigError, match="ntasks_per_node=2 needs a launcher.*launcher='torchrun'"
    ):
        LocalExecutor(ntasks_per_node=2)


def test_unknown_launcher_has_a_did_you_mean():
    with pytest.raises(ConfigError, match="unknown launcher 'torchrn'; did you mean 'torchrun'"):
        LocalExecutor(launcher="torchrn")


def test_zero_tasks_is_refused():
    with pytest.raises(ConfigError, match="ntasks_per_node must be >= 1"):
        LocalExecutor(ntasks_per_node=0)


def test_executor_survives_dict_and_yaml_round_trips():
    executor = LocalExecutor(ntasks_per_node=2, launcher="torchrun", env_vars={"A": "1"})
    assert Executor.from_dict(executor.to_dict()) == executor
    assert from_yaml(to_yaml(executor)) == executor


@pytest.mark.parametrize("path", ["optica.run.nothing.Executor", "optica.run.job.Job"])
def test_from_dict_refuses_what_is_not_an_executor(path):
    with pytest.raises(ConfigError, match=path):
        Executor.from_dict({"class": path, "fields": {}})


# ----------------------------------------------------------------------------------------------
# Commands


def test_python_task_runs_under_the_runner(tmp_path):
    job = make_job(tmp_path, run.Partial(tasks.add))
    assert LocalExecutor().command_for(job) == [
        sys.executable,
        "-m",
        "optica.run.runner",
        str(job.task_path),
        "--result",
        str(job.result_path),
    ]


def test_torchrun_wraps_the_runner(tmp_path):
    job = make_job(tmp_path, run.Partial(tasks.add))
    command = LocalExecutor(ntasks_per_node=3, launcher="torchrun").command_for(job)
    assert command[:7] == [
        sys.executable,
        "-m",
        TORCHRUN,
        "--standalone",
        "--nproc_per_node",
        "3",
        "-m",
    ]
    assert command[7:9] == ["optica.run.runner", str(job.task_path)]


def test_script_runs_its_own_command_even_under_torchrun(tmp_path):
    script = Script(inline="echo hi", args=["a"])
    job = make_job(tmp_path, script)
    assert LocalExecutor().command_for(job) == script.to_command()
    command = LocalExecutor(ntasks_per_node=2, launcher="torchrun").command_for(job)
    assert command[2] == TORCHRUN and command[-6:] == ["--no-python", *script.to_command()]


def test_environment_merges_executor_then_script(tmp_path):
    job = make_job(tmp_path, Script(inline="true", env={"B": "script", "C": "3"}))
    env = LocalExecutor(env_vars={"A": "1", "B": "executor"}).environment(job)
    assert env == {"A": "1", "B": "script", "C": "3"}


# ----------------------------------------------------------------------------------------------
# Supervisor (in this process) and runner (launched)


def supervise(tmp_path, inline):
    job = make_job(tmp_path, Script(inline=inline))
    LocalExecutor().write_command(job, cwd=str(tmp_path))
    returncode = Supervisor(job).run()
    return job, returncode


def test_supervisor_logs_raw_output_and_records_success(tmp_path):
    job, returncode = supervise(tmp_path, 'printf "50%%\\r100%%\\n"; echo err >&2; pwd')
    assert returncode == 0
    assert job.log() == f"50%\r100%\nerr\n{tmp_path}\n"  # \r kept; stderr merged; cwd used
    status = job.status()
    assert status["state"] == "SUCCEEDED" and status["returncode"] == 0
    assert status["pid"] == status["pgid"] and status["supervisor_pid"] == os.getpid()
    assert status["started"] <= status["ended"]


def test_partial_lines_reach_the_log_while_the_task_runs(tmp_path):
    job = make_job(tmp_path, Script(inline='printf "step 1/2 50%%\\r"; sleep 300'))
    executor = LocalExecutor()
    handle = executor.launch(job, detach=True)
    wait_until(lambda: job.log() == "step 1/2 50%\r")  # no newline yet: raw chunks, not lines
    executor.cancel(job, handle)
    assert job.state() is State.CANCELLED


def test_supervisor_records_the_exit_code_of_a_failure(tmp_path):
    job, returncode = supervise(tmp_path, "echo bad; exit 7")
    assert (returncode, job.state(), job.status()["returncode"]) == (7, State.FAILED, 7)


def test_supervisor_records_a_command_that_cannot_start(tmp_path):
    job = make_job(tmp_path, Script(inline="x", entrypoint="/no/such/shell"))
    LocalExecutor().write_command(job, cwd=str(tmp_path))
    assert Supervisor(job).run() == 127
    assert job.state() is State.FAILED
    assert "cannot start the task" in job.log()


def test_launch_wait_logs_and_result(tmp_path):
    job = make_job(tmp_path, run.Partial(tasks.add, a=2, b=3))
    executor = LocalExecutor()
    handle = executor.launch(job, detach=True)
    assert executor.wait(job, handle, timeout=30) is State.SUCCEEDED
    assert job.result() == 5
    assert "adding 2 and 3" in executor.logs(job)


def test_wait_without_a_handle_polls_the_status_file(tmp_path):
    job = make_job(tmp_path, run.Partial(tasks.make_object, a=4))
    executor = LocalExecutor()
    executor.launch(job, detach=True)
    assert executor.wait(job, timeout=30) is State.SUCCEEDED
    assert job.read("result.json") == {"json": False, "value": "{1, 4}"}  # not JSON: the repr


def test_cancel_stops_the_whole_process_group(tmp_path):
    inline = 'sleep 300 & echo $! > "$OPTICA_JOB_DIR/background.pid"; sleep 300'
    job = make_job(tmp_path, Script(inline=inline))
    executor = LocalExecutor()
    handle = executor.launch(job, detach=True)
    pid_file = job.path("background.pid")  # the shell creates it, then writes the pid
    wait_until(lambda: pid_file.exists() and pid_file.read_text().strip() != "")
    wait_until(lambda: job.state() is State.RUNNING)
    pgid, background = job.status()["pgid"], int(pid_file.read_text())
    assert background in group_members(pgid)
    executor.cancel(job, handle)
    assert executor.status(job) is State.CANCELLED
    assert group_members(pgid) == [] and not process_alive(background)
    assert handle.poll() is not None  # the supervisor itself has exited


def test_cancel_before_launch_marks_cancelled(tmp_path):
    job = make_job(tmp_path, run.Partial(tasks.add))
    LocalExecutor().cancel(job)
    assert job.state() is State.CANCELLED


def test_a_dead_supervisor_is_reported_as_failed(tmp_path):
    job = make_job(tmp_path, Script(inline="sleep 300"))
    executor = LocalExecutor()
    handle = executor.launch(job, detach=True)
    wait_until(lambda: job.state() is State.RUNNING)
    handle.send_signal(signal.SIGKILL)  # no chance to record anything
    handle.wait()
    os.killpg(job.status()["pgid"], signal.SIGKILL)
    assert executor.status(job) is State.FAILED
    assert "without recording an end" in job.status()["reason"]
