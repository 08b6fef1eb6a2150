"""SlurmExecutor without a cluster: the sbatch script it renders, and how it reads Slurm's answers
(fake ``sbatch``/``squeue``/``sacct``/``scontrol``/``scancel`` that replay canned output). The
real cluster tests are in tests/integration/slurm."""

import subprocess
import sys

import pytest

from optica import run
from optica.cli.main import main
from optica.run.cli import registry
from optica.run.errors import ConfigError, TaskFailedError
from optica.run.executors import Executor, SlurmExecutor
from optica.run.executors.slurm import SCRIPT_NAME
from optica.run.job import Job, State
from optica.run.serialize import from_yaml, to_yaml
from tests.unit.run import tasks

TOOLS = ("sbatch", "squeue", "sacct", "scontrol", "scancel")
INVALID = "slurm_load_jobs error: Invalid job id specified"


def make_job(tmp_path, executor, task=None):
    task = task if task is not None else run.Partial(tasks.add, a=2)
    return Job.create(tmp_path / "exp" / "job", task, executor.to_dict())


def script_of(executor, tmp_path, task=None):
    job = make_job(tmp_path, executor, task)
    return job, executor.script(job, "/work/dir")


def assert_valid_bash(script):
    done = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


# ----------------------------------------------------------------------------------------------
# The script


def test_torchrun_on_one_node_runs_one_slurm_task_with_all_its_cpus(tmp_path):
    job, script = script_of(SlurmExecutor(ntasks_per_node=2), tmp_path)
    assert script.startswith("#!/bin/bash\n#SBATCH --job-name=job\n")
    for option in (
        f"--output={job.dir}/slurm-%j.out",
        "--chdir=/work/dir",
        "--nodes=1",
        "--ntasks-per-node=1",
        "--cpus-per-task=2",
        "--time=01:00:00",
    ):
        assert f"#SBATCH {option}\n" in script
    assert "#SBATCH --dependency" not in script and "#SBATCH --account" not in script
    supervisor = f"exec {sys.executable} -m optica.run.supervisor {job.dir}\n"
    assert f'if [[ "${{1:-}}" != --optica-task ]]; then\n    {supervisor}fi\n' in script
    assert (
        "srun --kill-on-bad-exit=1 --ntasks-per-node=1 --cpus-per-task=2 \\\n"
        f'    {sys.executable} -m torch.distributed.run --nnodes "$SLURM_NNODES"'
        " --nproc_per_node 2 \\\n"
        '    --rdzv_backend c10d --rdzv_endpoint "$head_node:$port" --rdzv_id "$SLURM_JOB_ID" \\\n'
        f"    -m optica.run.runner {job.dir}/task.json --result {job.dir}/result.json\n"
    ) in script
    assert_valid_bash(script)


def test_multi_node_rendezvous_on_the_first_node(tmp_path):
    executor = SlurmExecutor(
        nodes=4, ntasks_per_node=8, gpus_per_node=8, cpus_per_task=4, rdzv_port=29500
    )
    _, script = script_of(executor, tmp_path)
    for option in ("--nodes=4", "--ntasks-per-node=1", "--cpus-per-task=32", "--gpus-per-node=8"):
        assert f"#SBATCH {option}\n" in script
    assert 'head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)\n' in script
    assert "port=29500\n" in script
    assert '--nnodes "$SLURM_NNODES" --nproc_per_node 8' in script
    assert '--rdzv_endpoint "$head_node:$port" --rdzv_id "$SLURM_JOB_ID"' in script
    assert "srun --kill-on-bad-exit=1 --ntasks-per-node=1 --cpus-per-task=32" in script
    assert_valid_bash(script)


def test_default_port_comes_from_the_job_id(tmp_path):
    _, script = script_of(SlurmExecutor(ntasks_per_node=2), tmp_path)
    (port_line,) = [line for line in script.splitlines() if line.startswith("port=")]
    ports = {
        job_id: subprocess.run(
            ["bash", "-c", f"{port_line}; echo $port"],
            env={"SLURM_JOB_ID": job_id},
            capture_output=True,
            text=True,
        ).stdout.strip()
        for job_id in ("1", "2", "123456")
    }
    assert ports == {"1": "20001", "2": "20002", "123456": "23456"}


def test_without_launcher_srun_starts_every_rank_with_torch_variables(tmp_path):
    _, script = script_of(SlurmExecutor(nodes=2, ntasks_per_node=2, launcher=None), tmp_path)
    assert "#SBATCH --ntasks-per-node=2\n" in script and "--cpus-per-task" not in script
    assert 'export MASTER_ADDR="$head_node" MASTER_PORT="$port"\n' in script
    assert "torch.distributed.run" not in script
    assert (
        "bash -c 'export RANK=$SLURM_PROCID LOCAL_RANK=$SLURM_LOCALID WORLD_SIZE=$SLURM_NTASKS"
        ' LOCAL_WORLD_SIZE=2; exec "$@"\' optica-rank'
    ) in script
    assert_valid_bash(script)
    # what the wrapper gives one rank
    wrapper = script.split("srun --kill-on-bad-exit=1 --ntasks-per-node=2 \\\n    ")[1]
    wrapper = wrapper.split(" \\\n")[0].replace("optica-rank", "optica-rank env")
    env = {"SLURM_PROCID": "3", "SLURM_LOCALID": "1", "SLURM_NTASKS": "4", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(["bash", "-c", wrapper], env=env, capture_output=True, text=True).stdout
    assert {"RANK=3", "LOCAL_RANK=1", "WORLD_SIZE=4", "LOCAL_WORLD_SIZE=2"} <= set(out.split())


def test_one_plain_task_needs_no_rank_wrapper(tmp_path):
    job, script = script_of(SlurmExecutor(launcher=None), tmp_path)
    assert script.rstrip().endswith(
        "srun --kill-on-bad-exit=1 --ntasks-per-node=1 \\\n"
        f"    {sys.executable} -m optica.run.runner"
        f" {job.dir}/task.json --result {job.dir}/result.json"
    )


def test_container_options_go_to_srun_with_the_job_directory_mounted(tmp_path):
    executor = SlurmExecutor(
        ntasks_per_node=2,
        container_image="nvcr.io/nvidia/pytorch:24.09",
        container_mounts=["/d:/d"],
    )
    job, script = script_of(executor, tmp_path)
    assert (
        "    --container-image=nvcr.io/nvidia/pytorch:24.09"
        f" --container-mounts=/d:/d,{job.dir}:{job.dir} \\\n"
        "    python -m torch.distributed.run"  # the image's python, not this machine's
    ) in script
    assert f"exec {sys.executable} -m optica.run.supervisor" in script  # outside the container
    assert_valid_bash(script)


def test_dependencies_explicit_and_typed(tmp_path):
    _, script = script_of(SlurmExecutor(dependencies=["12", "afterany:13"]), tmp_path)
    assert "#SBATCH --dependency=afterok:12,afterany:13\n" in script
    executor = SlurmExecutor(dependencies=[12], dependency_type="afterany")
    assert executor.dependencies == ["12"]
    assert executor._dependency([]) == "afterany:12"


def test_options_env_and_extra_parameters(tmp_path):
    executor = SlurmExecutor(
        account="proj",
        partition="gpu",
        mem="64G",
        time="04:00:00",
        job_name="llava",
        env_vars={"NCCL_DEBUG": "WARN", "NOTE": "it's here"},
        additional_parameters={"exclusive": True, "gpu_bind": "closest", "requeue": False},
        srun_args=["--mpi=pmix"],
    )
    _, script = script_of(executor, tmp_path)
    for option in (
        "--job-name=llava",
        "--account=proj",
        "--partition=gpu",
        "--mem=64G",
        "--time=04:00:00",
        "--exclusive",
        "--gpu-bind=closest",
    ):
        assert f"#SBATCH {option}\n" in script
    assert "requeue" not in script  # False leaves an option out
    assert "export NCCL_DEBUG=WARN\nexport NOTE='it'\"'\"'s here'\n" in script
    assert "srun --kill-on-bad-exit=1 --ntasks-per-node=1 --mpi=pmix \\\n" in script
    assert_valid_bash(script)


def test_a_script_task_runs_under_torchrun_without_python(tmp_path):
    task = run.Script(inline="echo $RANK", env={"A": "1"})
    executor = SlurmExecutor(ntasks_per_node=2)
    job, script = script_of(executor, tmp_path, task)
    assert "    --no-python bash -c 'echo $RANK' bash\n" in script
    assert executor.environment(job) == {"A": "1"}  # env_vars are exported by the script itself
    assert executor.command_for(job) == ["bash", str(job.path(SCRIPT_NAME)), "--optica-task"]


def test_dryrun_prints_the_whole_script(capsys, isolated_environment):
    executor = SlurmExecutor(nodes=2, ntasks_per_node=4, dependencies=["7"])
    assert run.run(run.Partial(tasks.add, a=2), executor=executor, dryrun=True) is None
    out = capsys.readouterr().out
    assert "_target_: tests.unit.run.tasks.add\n_partial_: true\na: 2\n" in out
    assert "# sbatch --parsable <job_dir>/sbatch.sh\n#!/bin/bash\n" in out
    assert "#SBATCH --nodes=2\n" in out and "#SBATCH --dependency=afterok:7\n" in out
    assert "-m optica.run.runner <job_dir>/task.json --result <job_dir>/result.json\n" in out
    assert not (isolated_environment / "experiments").exists()


def test_cli_executor_slurm_dryrun(monkeypatch, capsys):
    monkeypatch.setenv("OPTICA_PLUGINS", "tests.unit.run.cli_plugin")
    monkeypatch.setattr(registry, "_loaded", False)
    argv = ["train", "--factory", "tiny_train", "executor=slurm", "executor.nodes=1"]
    assert main([*argv, "executor.ntasks_per_node=2", "executor.account=proj", "--dryrun"]) == 0
    out = capsys.readouterr().out
    assert "SlurmExecutor(account='proj', partition=None, nodes=1, ntasks_per_node=2" in out
    assert "#SBATCH --nodes=1\n#SBATCH --ntasks-per-node=1\n#SBATCH --cpus-per-task=2\n" in out
    assert "--nproc_per_node 2" in out and "#SBATCH --account=proj\n" in out


# ----------------------------------------------------------------------------------------------
# Configuration


def test_round_trips_through_dict_and_yaml():
    executor = SlurmExecutor(
        account="a",
        nodes=2,
        container_mounts=["/x:/x"],
        env_vars={"K": "v"},
        additional_parameters={"exclusive": True},
        dependencies=["5"],
    )
    assert Executor.from_dict(executor.to_dict()) == executor
    assert from_yaml(to_yaml(executor)) == executor


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"launcher": "torchrn"}, "unknown launcher 'torchrn'; did you mean 'torchrun'"),
        ({"nodes": 0}, "nodes must be an integer >= 1, not 0"),
        ({"gpus_per_node": -1}, "gpus_per_node must be an integer >= 1"),
        ({"dependency_type": "afterk"}, "unknown dependency_type 'afterk'; did you mean 'afterok'"),
        ({"env_vars": {"A-B": "1"}}, "env_vars key 'A-B' is not a variable name"),
    ],
)
def test_bad_fields_are_refused(fields, message):
    with pytest.raises(ConfigError, match=message):
        SlurmExecutor(**fields)


# ----------------------------------------------------------------------------------------------
# Reading Slurm's answers (fake tools)


class FakeSlurm:
    """Fake Slurm tools in one folder: each prints ``<tool>.out``/``.err`` and exits ``.rc``."""

    def __init__(self, root):
        self.root = root
        root.mkdir()
        for tool in TOOLS:
            path = root / tool
            path.write_text(
                "#!/bin/bash\n"
                f'echo "{tool} $*" >> {root}/calls\n'
                f"cat {root}/{tool}.out 2>/dev/null\n"
                f"cat {root}/{tool}.err >&2 2>/dev/null\n"
                f"exit $(cat {root}/{tool}.rc 2>/dev/null || echo 0)\n"
            )
            path.chmod(0o755)
        self.answer("sbatch", "42\n")
        self.answer("sacct", err="Slurm accounting storage is disabled", rc=1)

    def answer(self, tool, out="", err="", rc=0):
        (self.root / f"{tool}.out").write_text(out)
        (self.root / f"{tool}.err").write_text(err)
        (self.root / f"{tool}.rc").write_text(str(rc))

    def squeue(self, state, reason="None", ended="N/A"):
        self.answer("squeue", f"{state}|{reason}|{ended}\n")

    def unknown_job(self):
        self.answer("squeue", err=INVALID, rc=1)
        self.answer("scontrol", err=INVALID, rc=1)

    def calls(self):
        path = self.root / "calls"
        return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def fake(tmp_path):
    return FakeSlurm(tmp_path / "bin")


def submitted(tmp_path, fake, **fields):
    executor = SlurmExecutor(sbatch_binary=str(fake.root / "sbatch"), **fields)
    job = make_job(tmp_path, executor)
    handle = executor.launch(job, detach=True)
    return executor, job, handle


def test_chained_launch_waits_for_the_previous_job(tmp_path, fake):
    executor, first, _ = submitted(tmp_path, fake)
    fake.answer("sbatch", "43\n")
    second = Job.create(tmp_path / "exp" / "second", run.Partial(tasks.add), executor.to_dict())
    assert executor.launch_after(second, [first]).job_id == "43"
    assert "#SBATCH --dependency=afterok:42\n" in second.path(SCRIPT_NAME).read_text()
    assert second.read("launch.json")["after"] == [str(first.dir)]

    # the first one fails: the held one is dropped at once (no need for Slurm to notice)
    first.write_status(State.FAILED, returncode=1)
    assert executor.status(second) is State.CANCELLED
    assert second.status()["reason"] == "not run: 'job' FAILED"
    assert fake.calls()[-1] == "scancel 43"

    # after a failed job, a new one is not even submitted
    third = Job.create(tmp_path / "exp" / "third", run.Partial(tasks.add), executor.to_dict())
    assert executor.launch_after(third, [first]) is None
    assert third.status()["reason"] == "not run: 'job' FAILED"
    assert not third.path(SCRIPT_NAME).exists()


def test_launch_submits_the_script_and_records_the_job_id(tmp_path, fake):
    executor, job, handle = submitted(tmp_path, fake)
    assert handle.job_id == "42" and not handle.follow
    assert fake.calls() == [f"sbatch --parsable {job.path(SCRIPT_NAME)}"]
    launch = job.read("launch.json")
    assert launch["slurm_job_id"] == "42" and launch["output"] == str(job.path("slurm-42.out"))
    assert job.read("command.json")["argv"] == executor.command_for(job)
    assert job.path(SCRIPT_NAME).read_text().startswith("#!/bin/bash\n")


def test_a_refused_submission_fails_with_sbatch_message(tmp_path, fake, isolated_environment):
    fake.answer("sbatch", err="sbatch: error: invalid partition specified: gpu", rc=1)
    executor = SlurmExecutor(sbatch_binary=str(fake.root / "sbatch"), partition="gpu")
    with pytest.raises(TaskFailedError, match="invalid partition specified: gpu") as error:
        run.run(run.Partial(tasks.add), executor=executor, name="refused")
    assert "failed (sbatch refused the job: sbatch: error: invalid partition" in str(error.value)


def test_missing_sbatch_is_a_clear_failure(tmp_path):
    executor = SlurmExecutor(sbatch_binary=str(tmp_path / "nowhere" / "sbatch"))
    job = make_job(tmp_path, executor)
    assert executor.launch(job) is None
    assert job.status()["reason"].startswith(f"cannot run '{tmp_path}/nowhere/sbatch'")
    assert executor.status(job) is State.FAILED


@pytest.mark.parametrize(
    ("slurm_state", "expected"),
    [("PENDING", State.PENDING), ("CONFIGURING", State.PENDING), ("RUNNING", State.RUNNING)],
)
def test_live_states(tmp_path, fake, slurm_state, expected):
    executor, job, _ = submitted(tmp_path, fake)
    fake.squeue(slurm_state)
    assert executor.status(job) is expected
    assert job.state() is State.PENDING  # only the supervisor records RUNNING


def test_a_job_that_can_never_start_is_dropped(tmp_path, fake):
    executor, job, _ = submitted(tmp_path, fake)
    fake.squeue("PENDING", "DependencyNeverSatisfied")
    assert executor.status(job) is State.CANCELLED
    assert job.status()["reason"] == "not run: a dependency did not succeed"
    assert "scancel 42" in fake.calls()


def test_an_end_without_record_fails_after_a_grace_period(tmp_path, fake):
    executor, job, _ = submitted(tmp_path, fake)
    fake.squeue("FAILED", "NonZeroExitCode", "2026-01-01T00:00:00")  # long ago
    assert executor.status(job) is State.FAILED
    assert job.status()["reason"] == "Slurm job 42 ended FAILED with no end recorded by optica"


def test_a_fresh_end_waits_for_the_record(tmp_path, fake):
    import datetime

    executor, job, _ = submitted(tmp_path, fake)
    just_now = datetime.datetime.now().isoformat(timespec="seconds")
    fake.squeue("NODE_FAIL", "None", just_now)
    assert executor.status(job) is State.PENDING  # the record may still be on its way
    assert not job.state().done


def test_a_job_slurm_forgot_fails(tmp_path, fake):
    executor, job, _ = submitted(tmp_path, fake)
    fake.unknown_job()
    assert executor.status(job) is State.FAILED
    assert job.status()["reason"] == "Slurm no longer knows job 42, and optica recorded no end"


def test_unreachable_slurm_keeps_the_record(tmp_path, fake):
    executor, job, _ = submitted(tmp_path, fake)
    fake.answer("squeue", err="slurm_load_jobs error: Unable to contact slurm controller", rc=1)
    fake.answer("scontrol", err="Unable to contact slurm controller", rc=1)
    assert executor.status(job) is State.PENDING


def test_scontrol_is_the_last_resort(tmp_path, fake):
    executor, job, _ = submitted(tmp_path, fake)
    fake.answer("squeue", err=INVALID, rc=1)
    fake.answer("scontrol", "JobId=42 JobState=RUNNING Reason=None EndTime=Unknown\n")
    assert executor.query("42").state == "RUNNING"
    assert executor.status(job) is State.RUNNING


def test_sacct_is_read_when_accounting_exists(tmp_path, fake):
    executor, _, _ = submitted(tmp_path, fake)
    fake.answer("squeue", err=INVALID, rc=1)
    fake.answer("sacct", "CANCELLED by 0|None|2026-01-01T00:00:00\n")
    found = executor.query("42")
    assert (found.state, found.optica_state, found.ended) == (
        "CANCELLED",
        State.CANCELLED,
        "2026-01-01T00:00:00",
    )


@pytest.mark.parametrize(
    ("recorded", "slurm_state", "settled", "reason"),
    [
        # the supervisor, signalled at the time limit, recorded CANCELLED: it is a failure
        (State.CANCELLED, "TIMEOUT", State.FAILED, "Slurm: TIMEOUT"),
        # srun's step died of the time limit first: FAILED with 143, and now why
        (State.FAILED, "TIMEOUT", State.FAILED, "Slurm: TIMEOUT"),
        (State.FAILED, "NODE_FAIL", State.FAILED, "Slurm: NODE_FAIL"),
        # someone ran scancel by hand and the task died of the signal first
        (State.FAILED, "CANCELLED", State.CANCELLED, None),
        (State.FAILED, "FAILED", State.FAILED, None),  # the task's own failure
    ],
)
def test_slurm_word_on_an_unsuccessful_end(tmp_path, fake, recorded, slurm_state, settled, reason):
    executor, job, _ = submitted(tmp_path, fake)
    job.write_status(recorded, returncode=143)
    fake.squeue(slurm_state, "None", "2026-01-01T00:00:00")
    assert executor.status(job) is settled
    assert job.status().get("reason") == reason and job.status()["returncode"] == 143
    asked = len(fake.calls())
    assert executor.status(job) is settled and len(fake.calls()) == asked  # settled: no query


def test_an_end_is_settled_only_once_slurm_has_ended_too(tmp_path, fake):
    executor, job, _ = submitted(tmp_path, fake)
    job.write_status(State.CANCELLED, returncode=-15)
    fake.squeue("COMPLETING")
    assert executor.status(job) is State.CANCELLED and "slurm_state" not in job.status()
    fake.squeue("TIMEOUT", "TimeLimit", "2026-01-01T00:00:00")
    assert executor.status(job) is State.FAILED


def test_cancelling_a_queued_job(tmp_path, fake):
    executor, job, _ = submitted(tmp_path, fake)
    fake.squeue("CANCELLED", "None", "2026-01-01T00:00:00")
    executor.cancel(job)
    assert "scancel 42" in fake.calls()
    assert job.state() is State.CANCELLED and job.read("launch.json")["cancel_requested"]
    assert executor.status(job) is State.CANCELLED  # optica cancelled it: no reclassification
