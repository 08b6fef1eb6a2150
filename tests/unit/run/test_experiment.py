"""run.Experiment and run.run: real subprocess launches, on-disk state, reconstruction, CLI."""

import argparse
import re
import threading
import time

import pytest

from optica import run
from optica.cli import experiment as experiment_cli
from optica.run.api import RunResult
from optica.run.api import run as run_task
from optica.run.errors import ConfigError, OpticaError, TaskFailedError
from optica.run.executors import LocalExecutor
from optica.run.experiment import Experiment, list_experiments
from optica.run.job import State
from optica.run.script import Script
from optica.run.supervise import process_alive
from tests.unit.run import tasks
from tests.unit.run.targets import SomeObject

S, F, C = State.SUCCEEDED, State.FAILED, State.CANCELLED


def two_task_experiment(first, second, title="two"):
    experiment = Experiment(title)
    experiment.add(first, name="first")
    experiment.add(second, executor=LocalExecutor(env_vars={"X": "1"}), name="second")
    return experiment


def wait_until_running(job, timeout=15.0):
    deadline = time.monotonic() + timeout
    while job.state() is not State.RUNNING:
        assert time.monotonic() < deadline, f"{job.name} never started"
        time.sleep(0.05)


# ----------------------------------------------------------------------------------------------
# Adding


def test_id_is_title_and_timestamp_and_never_collides(isolated_environment):
    first, second = Experiment("my exp"), Experiment("my exp")
    assert re.fullmatch(r"my_exp_\d{8}_\d{6}", first.id)
    assert second.id != first.id and second.id.startswith("my_exp_")
    assert first.dir.parent == isolated_environment / "experiments"


def test_default_names_come_from_the_target_and_are_unique():
    experiment = Experiment("names")
    names = [experiment.add(run.Partial(tasks.add)) for _ in range(3)]
    names.append(experiment.add(Script(path="/x/train.sh")))
    assert names == ["add", "add_2", "add_3", "train"]


def test_explicit_duplicate_or_unsafe_names_are_refused():
    experiment = Experiment("names")
    experiment.add(run.Partial(tasks.add), name="a")
    with pytest.raises(ConfigError, match="'a' is already used"):
        experiment.add(run.Partial(tasks.add), name="a")
    with pytest.raises(ConfigError, match="must be letters, digits"):
        experiment.add(run.Partial(tasks.add), name="../a")


def test_add_refuses_a_task_that_cannot_be_saved_and_writes_nothing():
    experiment = Experiment("bad")
    with pytest.raises(ConfigError, match="value at 'b' \\(a lambda\\)"):
        experiment.add(run.Config(SomeObject, b=lambda: 1), name="bad")
    assert experiment.tasks == {} and not (experiment.dir / "bad").exists()


def test_job_directory_holds_the_task_files():
    experiment = Experiment("files")
    experiment.add(run.Partial(tasks.add, a=5))
    job = experiment.job("add")
    assert {p.name for p in job.dir.iterdir()} >= {"task.json", "config.yaml", "executor.json"}
    assert "_target_: tests.unit.run.tasks.add" in job.path("config.yaml").read_text()
    assert job.state() is State.PENDING


# ----------------------------------------------------------------------------------------------
# Running


def test_sequential_run_stops_at_the_first_failure():
    experiment = two_task_experiment(run.Partial(tasks.exit_with, code=4), run.Partial(tasks.add))
    experiment.run(sequential=True)
    assert experiment.status() == {"first": F, "second": C}
    assert experiment.job("second").status()["reason"] == "not run: 'first' FAILED"
    assert experiment.job("first").status()["returncode"] == 4


def test_parallel_run_runs_every_task():
    experiment = two_task_experiment(run.Partial(tasks.exit_with, code=4), run.Partial(tasks.add))
    experiment.run(sequential=False)
    assert experiment.status() == {"first": F, "second": S}
    assert experiment.job("second").result() == 3


def test_from_id_rebuilds_tasks_executors_and_states():
    experiment = two_task_experiment(run.Partial(tasks.add, a=10), Script(inline="echo script"))
    with experiment:
        experiment.run(sequential=False, detach=True)
        experiment.wait(timeout=30)
    loaded = Experiment.from_id(experiment.id)
    assert loaded.tasks == experiment.tasks
    assert loaded.executors == experiment.executors
    assert loaded.status() == experiment.status() == {"first": S, "second": S}
    assert loaded.logs("second") == "script\n"
    assert loaded.logs().startswith("==> first <==\nadding 10 and 2\n")


def test_detached_sequential_run_continues_in_a_driver():
    experiment = two_task_experiment(run.Partial(tasks.add), run.Partial(tasks.add, b=5))
    experiment.run(sequential=True, detach=True)
    assert Experiment.from_id(experiment.id).wait(timeout=30) == {"first": S, "second": S}
    assert experiment.job("second").result() == 6


def test_cancel_stops_a_detached_experiment_and_skips_the_rest():
    experiment = two_task_experiment(run.Partial(tasks.sleep, seconds=300), run.Partial(tasks.add))
    experiment.run(sequential=True, detach=True)
    job = experiment.job("first")
    wait_until_running(job)
    pid = job.status()["pid"]
    Experiment.from_id(experiment.id).cancel()  # as `optica experiment cancel` does
    assert experiment.status() == {"first": C, "second": C}
    assert not process_alive(pid)


def test_cancel_from_elsewhere_stops_a_foreground_run():
    experiment = two_task_experiment(run.Partial(tasks.sleep, seconds=300), run.Partial(tasks.add))
    runner = threading.Thread(target=experiment.run, kwargs={"sequential": True})
    runner.start()
    job = experiment.job("first")
    wait_until_running(job)
    Experiment.from_id(experiment.id).cancel()
    runner.join(timeout=15)
    assert not runner.is_alive()  # the foreground loop saw the cancel and launched nothing more
    assert experiment.status() == {"first": C, "second": C}
    assert experiment.job("second").read("launch.json") is None


def test_direct_run_records_in_process():
    experiment = two_task_experiment(run.Partial(tasks.add, a=7), run.Partial(tasks.boom))
    experiment.add(Script(inline="echo from a script; exit 2"), name="third")
    experiment.run(direct=True, sequential=False)
    assert experiment.status() == {"first": S, "second": F, "third": F}
    assert experiment.logs("third") == "from a script\n"
    assert experiment.job("third").status()["returncode"] == 2
    assert experiment.job("first").read("launch.json") is None  # nothing was launched
    assert experiment.job("first").result() == 9
    assert "RuntimeError: boom" in experiment.logs("second")


def test_run_twice_and_empty_run_are_refused():
    with pytest.raises(ConfigError, match="has no tasks"):
        Experiment("empty").run()
    experiment = Experiment("once")
    experiment.add(run.Partial(tasks.add))
    experiment.run(direct=True)
    with pytest.raises(ConfigError, match="already run"):
        experiment.run()
    with pytest.raises(ConfigError, match="already run"):
        experiment.add(run.Partial(tasks.add))


def test_unknown_ids_and_task_names_suggest_the_closest(isolated_environment):
    experiment = Experiment("known")
    experiment.add(run.Partial(tasks.add))
    with pytest.raises(OpticaError, match=f"did you mean '{experiment.id}'"):
        Experiment.from_id(experiment.id + "x")
    with pytest.raises(ConfigError, match="no task 'ad'; did you mean 'add'"):
        experiment.logs("ad")


def test_list_is_newest_first():
    ids = []
    for title in ("older", "newer"):
        experiment = Experiment(title)
        experiment.add(run.Partial(tasks.add))
        ids.append(experiment.id)
    listed = list_experiments()
    assert [info.id for info in listed] == ids[::-1]
    assert listed[0].tasks == ("add",)


# ----------------------------------------------------------------------------------------------
# run.run


def test_run_returns_the_value_and_where_it_ran():
    result = run_task(run.Partial(tasks.add, a=1, b=41))
    assert isinstance(result, RunResult) and result.value == 42 and result.returncode == 0
    assert result.job_dir.name == "add" and result.experiment_id.startswith("add_")
    assert "adding 1 and 41" in result.logs()


def test_failing_task_raises_with_its_exit_code_and_log_tail():
    with pytest.raises(TaskFailedError) as error:
        run_task(run.Partial(tasks.exit_with, code=3), name="stop")
    message = str(error.value)
    assert error.value.returncode == 3
    assert re.match(r"task 'stop' failed with exit code 3 \(log: .*/stop/log\.txt\)\n", message)
    assert message.endswith("about to exit") and error.value.log_tail == "about to exit"


def test_exception_in_task_exits_1_with_the_traceback_in_the_tail():
    with pytest.raises(TaskFailedError) as error:
        run_task(run.Partial(tasks.boom, message="kaput"))
    assert error.value.returncode == 1
    assert error.value.log_tail.endswith("RuntimeError: kaput")


def test_inline_and_path_scripts_run(tmp_path):
    path = tmp_path / "greet.sh"
    path.write_text('echo "hello $1 $GREETING"\n')
    result = run_task(Script(path=str(path), args=["path"], env={"GREETING": "!"}))
    assert result.logs() == "hello path !\n"
    with pytest.raises(TaskFailedError, match="task 'script' failed with exit code 5"):
        run_task(Script(inline="echo inline; exit 5"))


def test_direct_returns_the_value_and_records_nothing(isolated_environment):
    assert run_task(run.Partial(tasks.add, a=2), direct=True) == 4
    assert isinstance(run_task(run.Config(SomeObject, a=3), direct=True), SomeObject)
    assert not (isolated_environment / "experiments").exists()


def test_dryrun_prints_yaml_and_command(capsys, isolated_environment):
    executor = LocalExecutor(ntasks_per_node=2, launcher="torchrun")
    assert run_task(run.Partial(tasks.add, a=2), executor=executor, dryrun=True) is None
    out = capsys.readouterr().out
    assert "_target_: tests.unit.run.tasks.add\n_partial_: true\na: 2\n" in out
    assert "torch.distributed.run --standalone --nproc_per_node 2 -m optica.run.runner" in out
    assert "<job_dir>/task.json" in out
    assert not (isolated_environment / "experiments").exists()


# ----------------------------------------------------------------------------------------------
# optica experiment ...


def cli(*argv):
    parser = argparse.ArgumentParser(prog="optica")
    experiment_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["experiment", *argv])
    return args.func(args)


def test_cli_list_status_logs_cancel(capsys):
    experiment = two_task_experiment(run.Partial(tasks.add), run.Partial(tasks.boom))
    experiment.run(sequential=False)
    assert cli("list") == 0
    listed = capsys.readouterr().out
    assert experiment.id in listed and "1 FAILED, 1 SUCCEEDED" in listed
    assert cli("status", experiment.id) == 0
    assert re.search(r"first\s*│\s*SUCCEEDED\s*│\s*0", capsys.readouterr().out)
    assert cli("logs", experiment.id, "--task", "first") == 0
    assert capsys.readouterr().out == "adding 1 and 2\n"
    assert cli("cancel", experiment.id) == 0
    assert capsys.readouterr().out == "first: SUCCEEDED\nsecond: FAILED\n"


def test_cli_unknown_id_is_one_line_with_a_suggestion():
    experiment = Experiment("cli")
    experiment.add(run.Partial(tasks.add))
    typo = experiment.id.replace("cli_", "cly_")
    with pytest.raises(
        OpticaError, match=f"^no experiment '{typo}' in .*; did you mean '{experiment.id}'"
    ):
        cli("status", typo)
