"""SlurmExecutor against a real Slurm cluster on this machine (see conftest.py): optica jobs are
submitted with sbatch, run under srun + torchrun, and are followed, read back and cancelled."""

import csv
import re
import subprocess
import time

import pytest

from optica import run
from optica.cli.main import main
from optica.run.errors import TaskFailedError
from optica.run.executors.slurm import SlurmExecutor
from optica.run.experiment import Experiment, list_experiments
from optica.run.job import Job, State
from optica.run.supervise import process_alive
from tests.integration.slurm import tasks
from tests.integration.tasks import all_reduce_sum

pytestmark = [pytest.mark.slow, pytest.mark.distributed]


def slurm(**fields):
    return SlurmExecutor(time="00:05:00", **fields)


def slurm_id(job):
    return job.read("launch.json")["slurm_job_id"]


def slurm_ended(cluster, job, field="JobState"):
    """Slurm's final word on ``job`` (it may still be RUNNING for a moment after the record)."""
    ended = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT")
    wait_until(lambda: cluster.scontrol_job(slurm_id(job))["JobState"] in ended)
    return cluster.scontrol_job(slurm_id(job))[field]


def wait_until(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


def test_two_rank_job_completes_and_is_read_back(slurm_cluster, capsys):
    task = run.Partial(all_reduce_sum, value_per_rank=2.0)
    result = run.run(task, executor=slurm(ntasks_per_node=2), name="allreduce")
    assert "rank 1/2 all_reduce sum=6" in capsys.readouterr().out  # followed while it ran
    assert result.value["sum"] == 6.0 and result.value["world_size"] == 2  # rank 0's value

    experiment = Experiment.from_id(result.experiment_id)
    job = experiment.job("allreduce")
    assert experiment.status() == {"allreduce": State.SUCCEEDED}
    assert job.status()["returncode"] == 0
    assert experiment.executors["allreduce"] == slurm(ntasks_per_node=2)
    assert slurm_ended(slurm_cluster, job) == "COMPLETED"
    logs = experiment.logs("allreduce")
    # 2 * (0 + 1) + 2 * (1 + 1): both ranks saw both contributions
    assert "rank 0/2 all_reduce sum=6" in logs and "rank 1/2 all_reduce sum=6" in logs
    assert "terminate called" not in logs  # the gloo exit crash (ENVIRONMENT.md)


def test_srun_alone_starts_the_ranks_without_torchrun(slurm_cluster):
    task = run.Partial(all_reduce_sum, value_per_rank=1.0)
    result = run.run(task, executor=slurm(ntasks_per_node=2, launcher=None))
    value = result.value  # rank 0's, with RANK / WORLD_SIZE taken from srun's SLURM_* variables
    assert (value["rank"], value["world_size"], value["sum"]) == (0, 2, 3.0)
    assert "torch.distributed.run" not in Job(result.job_dir).path("sbatch.sh").read_text()
    assert "rank 1/2 all_reduce sum=3" in result.logs()


def finetune_file(path, exp_dir):
    """A tiny 2-process finetune (Llama + copy task) as a task file for ``optica finetune``."""
    from optica.models import LlamaConfigTiny, LlamaModel
    from optica.train.api import finetune
    from optica.train.exp_manager import ExpManager
    from optica.train.trainer import TrainerConfig
    from tests.integration.slurm.copy_data import CopyData

    trainer = run.Config(
        TrainerConfig,
        devices=2,
        accelerator="cpu",
        max_steps=10,
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    log = run.Config(
        ExpManager, exp_dir=str(exp_dir), name="tiny", version="v1", ckpt=None, tensorboard=False
    )
    model = run.Config(LlamaModel, run.Config(LlamaConfigTiny))
    task = run.Partial(finetune, model=model, data=run.Config(CopyData), trainer=trainer, log=log)
    path.write_text(run.to_yaml(task))
    return path


def test_two_rank_finetune_through_the_cli(slurm_cluster, tmp_path, capsys):
    config = finetune_file(tmp_path / "finetune.yaml", tmp_path)
    argv = ["finetune", "--config", str(config), "--allow-import", "tests.integration.slurm"]
    executor = ["executor=slurm", "executor.ntasks_per_node=2", "executor.time=00:05:00"]
    assert main([*argv, "trainer.max_steps=3", *executor, "--yes"]) == 0
    capsys.readouterr()

    with open(tmp_path / "tiny" / "v1" / "metrics.csv") as file:
        steps = [row for row in csv.DictReader(file) if row["reduced_train_loss"]]
    # 3 steps; a global batch of 4 is 2 ranks x micro batch 2: both ranks trained
    assert [float(row["consumed_samples"]) for row in steps] == [4.0, 8.0, 12.0]

    (info,) = list_experiments()
    assert main(["experiment", "status", info.id]) == 0
    assert re.search(r"│ finetune\s*│ SUCCEEDED\s*│ 0\s*│", capsys.readouterr().out)
    assert main(["experiment", "logs", info.id]) == 0
    logs = capsys.readouterr().out
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in logs
    assert "`Trainer.fit` stopped: `max_steps=3` reached." in logs


def test_failing_rank_fails_the_job_fast_with_its_error(slurm_cluster, capsys):
    started = time.monotonic()
    with pytest.raises(TaskFailedError) as error:
        # rank 0 waits in a barrier that rank 1 never reaches: only the launcher can end it
        run.run(run.Partial(tasks.fail_while_peer_waits, code=3), executor=slurm(ntasks_per_node=2))
    assert time.monotonic() - started < 60
    assert error.value.returncode == 1  # torchrun's exit code when a worker fails
    assert str(error.value).startswith("task 'fail_while_peer_waits' failed with exit code 1")
    # torchrun's report lists rank 1 (with exit code 3, or -15 when rank 0's gloo error was seen
    # first and torchrun stopped rank 1 while it was exiting); its own message is in the log
    assert re.search(r"rank\s*: 1 \(local_rank: 1\)", error.value.log_tail)

    (info,) = list_experiments()
    job = Experiment.from_id(info.id).job("fail_while_peer_waits")
    assert job.status()["state"] == "FAILED" and job.status()["returncode"] == 1
    assert "rank 1 failing with 3" in job.log()
    assert slurm_ended(slurm_cluster, job, "ExitCode") == "1:0"
    assert main(["experiment", "status", info.id]) == 0
    assert re.search(r"│ fail_while_peer_waits\s*│ FAILED\s*│ 1\s*│", capsys.readouterr().out)


def test_dependent_job_waits_for_its_dependency(slurm_cluster, tmp_path):
    marker = tmp_path / "first.done"
    executor = slurm(launcher=None)
    experiment = Experiment("chain")
    experiment.add(run.Script(inline=f"sleep 3; touch {marker}"), executor, name="first")
    experiment.add(run.Script(inline=f"test -f {marker}"), executor, name="second")
    experiment.run(sequential=True, detach=True)  # both submitted now; Slurm keeps the order

    first, second = experiment.job("first"), experiment.job("second")
    held = slurm_cluster.scontrol_job(slurm_id(second))
    assert held["JobState"] == "PENDING" and held["Reason"] == "Dependency"
    assert held["Dependency"].startswith(f"afterok:{slurm_id(first)}")
    assert (
        f"#SBATCH --dependency=afterok:{slurm_id(first)}\n" in second.path("sbatch.sh").read_text()
    )

    states = Experiment.from_id(experiment.id).wait(timeout=60)
    assert states == {"first": State.SUCCEEDED, "second": State.SUCCEEDED}
    assert second.status()["started"] > first.status()["ended"]


def test_task_after_a_failed_one_is_not_run(slurm_cluster):
    executor = slurm(launcher=None)
    experiment = Experiment("broken-chain")
    experiment.add(run.Script(inline="echo first fails; exit 4"), executor, name="first")
    experiment.add(run.Script(inline="echo second ran"), executor, name="second")
    experiment.run(sequential=True)

    assert experiment.status() == {"first": State.FAILED, "second": State.CANCELLED}
    assert experiment.job("first").status()["returncode"] == 4
    assert experiment.job("second").status()["reason"] == "not run: 'first' FAILED"
    assert "second ran" not in experiment.logs("second")
    assert slurm_ended(slurm_cluster, experiment.job("second")) == "CANCELLED"


def test_cancel_stops_the_running_job_and_drops_the_held_one(slurm_cluster, capsys):
    executor = slurm(launcher=None)
    experiment = Experiment("cancel")
    experiment.add(run.Script(inline="echo started; sleep 120"), executor, name="sleeper")
    experiment.add(run.Script(inline="echo never"), executor, name="held")
    experiment.run(sequential=True, detach=True)
    sleeper = experiment.job("sleeper")
    wait_until(lambda: "started" in sleeper.log())
    assert experiment.status() == {"sleeper": State.RUNNING, "held": State.PENDING}

    assert main(["experiment", "cancel", experiment.id]) == 0
    assert capsys.readouterr().out.split() == ["sleeper:", "CANCELLED", "held:", "CANCELLED"]
    for job in (sleeper, experiment.job("held")):
        assert slurm_ended(slurm_cluster, job) == "CANCELLED"
    wait_until(lambda: not process_alive(sleeper.status()["pid"]), timeout=10)


def test_rendered_script_is_accepted_by_sbatch(slurm_cluster, tmp_path):
    executor = slurm(
        ntasks_per_node=2,
        cpus_per_task=1,
        mem="100M",
        job_name="optica-check",
        partition="debug",
        env_vars={"GREETING": "hello world"},
        additional_parameters={"comment": "optica", "no_requeue": True},
    )
    job = Job.create(tmp_path / "job", run.Partial(tasks.fail_while_peer_waits), executor.to_dict())
    script = tmp_path / "sbatch.sh"
    script.write_text(executor.script(job, str(tmp_path)))
    done = subprocess.run(["sbatch", "--test-only", str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "to start at" in done.stderr
