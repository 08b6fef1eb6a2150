"""The optica command line: grammar, typed parsing, factories, recipes, errors (in-process)."""

import ast
import json
import subprocess
import sys

import pytest
import torch

from optica import run
from optica.cli.main import main
from optica.run.cli import registry
from optica.run.cli.command import parse_invocation
from tests.conftest import REPO_ROOT
from tests.unit.run.cli_plugin import Model, Optim, train

PLUGIN = "tests.unit.run.cli_plugin"


@pytest.fixture(autouse=True)
def plugin(monkeypatch):
    monkeypatch.setenv("OPTICA_PLUGINS", PLUGIN)
    monkeypatch.setattr(registry, "_loaded", False)


def invocation(*argv):
    return parse_invocation(registry.get_entrypoint("train"), list(argv))


def test_dotted_overrides_are_parsed_by_annotation():
    task = invocation(
        "model=small",
        "model.layers=4",
        "model.dtype=torch.bfloat16",
        "steps=1e3",
        "optim=@" if False else "mode=exact",
        "tags=[a,b]",
        "extra={x: 1}",
        "output=null",
    ).task
    assert task.model == run.Config(Model, hidden=16, layers=4, dtype=torch.bfloat16)
    assert task.steps == 1000 and isinstance(task.steps, int)
    assert task.tags == ["a", "b"] and task.extra == {"x": 1} and task.output is None
    assert task.mode == "exact"


def test_factory_with_arguments_and_swap_of_sub_config():
    task = invocation("model=big(layers=3)").task
    assert (task.model.hidden, task.model.layers) == (1024, 3)


def test_recipe_by_name_and_call_syntax():
    assert invocation("--factory", "tiny_train").task.steps == 5
    task = invocation("--factory", "tiny_train(steps=7)", "model.hidden=4").task
    assert (task.steps, task.model.hidden, task.__fn_or_cls__) == (7, 4, train)


def test_index_and_arithmetic_operators():
    task = invocation(
        "--factory", "tiny_train", "steps*=3", "steps+=1", "tags=[a]", "tags+=[b]", "tags[0]=z"
    ).task
    assert task.steps == 16 and task.tags == ["z", "b"]


def test_parsing_never_shares_mutable_values():
    first = invocation("--factory", "tiny_train", "tags=[a]").task
    second = invocation("--factory", "tiny_train").task
    first.model.hidden = 99
    assert second.model.hidden == 16
    assert first.tags is not invocation("--factory", "tiny_train", "tags=[a]").task.tags


def test_include_file_sets_nested_values(tmp_path):
    include = tmp_path / "more.yaml"
    include.write_text("steps: 42\nmodel:\n  layers: 9\n")
    task = invocation("--factory", "tiny_train", f"@{include}").task
    assert (task.steps, task.model.layers, task.model.hidden) == (42, 9, 16)


def test_value_from_config_file(tmp_path):
    optim = tmp_path / "optim.yaml"
    optim.write_text(run.to_yaml(run.Config(Optim, lr=0.5)))
    task = invocation(f"optim=@{optim}", "--allow-import", "tests").task
    assert task.optim == run.Config(Optim, lr=0.5)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["stpes=3"], "stpes: train has no parameter 'stpes'; did you mean 'steps'?"),
        (
            ["model=small", "model.hiden=3"],
            "model.hiden: Model has no parameter 'hiden'; did you mean 'hidden'?",
        ),
        (["steps=many"], "steps: expected int, got 'many'"),
        (["mode=fats"], "mode: expected one of fast, exact, got 'fats'; did you mean 'fast'?"),
        (["model=smal"], "model: expected Model, got 'smal'; did you mean 'small'?"),
        (
            ["--factory", "tiny_trian"],
            "unknown recipe 'tiny_trian' for 'optica train'; did you mean 'tiny_train'?",
        ),
        (["output.x=1"], "'output' is None, not a config to go into"),
        (["just-a-word"], "cannot parse 'just-a-word': expected key=value"),
    ],
)
def test_user_mistakes_are_one_clear_line(capsys, argv, message):
    assert main(["train", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_unknown_command_suggests_closest(capsys):
    assert main(["trian"]) == 2
    assert "unknown command 'trian'; did you mean 'train'?" in capsys.readouterr().err


def test_bad_yaml_include_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [1,\n")
    assert main(["train", f"@{bad}"]) == 2
    assert "bad.yaml: not valid YAML" in capsys.readouterr().err


def test_to_yaml_prints_loadable_task(capsys):
    assert main(["train", "--factory", "tiny_train", "steps=3", "--to-yaml"]) == 0
    text = capsys.readouterr().out
    loaded = run.from_yaml(text, allow=("tests",))
    assert loaded == invocation("--factory", "tiny_train", "steps=3").task


@pytest.mark.parametrize("fmt", ["json", "toml"])
def test_to_json_and_toml(capsys, fmt):
    assert main(["train", "--factory", "tiny_train", f"--to-{fmt}"]) == 0
    loader = getattr(run, f"from_{fmt}")
    assert loader(capsys.readouterr().out, allow=("tests",)).steps == 5


def test_dryrun_prints_resolved_config_and_does_not_run(tmp_path, capsys):
    output = tmp_path / "out.json"
    assert main(["train", "--factory", "tiny_train", f"output={output}", "--dryrun"]) == 0
    out = capsys.readouterr().out
    assert "would run in this process" in out and "steps: 5" in out
    assert not output.exists()


def test_runs_in_process_with_yes(tmp_path):
    output = tmp_path / "out.json"
    assert main(["train", "--factory", "tiny_train", "model=big", f"output={output}", "-y"]) == 0
    result = json.loads(output.read_text())
    assert (result["hidden"], result["steps"], result["lr"]) == (1024, 5, 1e-3)


def test_config_file_task(tmp_path):
    task_file = tmp_path / "task.yaml"
    task_file.write_text(run.to_yaml(invocation("--factory", "tiny_train", "steps=2").task))
    task = invocation("--config", str(task_file), "--allow-import", "tests", "steps+=1").task
    assert task.steps == 3


def test_recipes_lists_one_line_each(capsys):
    assert main(["recipes"]) == 0
    rows = [line.split(None, 3) for line in capsys.readouterr().out.strip().splitlines()]
    assert ["tiny_train", "optica", "train", "A tiny training recipe."] in rows
    assert ["vit_b16", "optica", "pretrain"] in [row[:3] for row in rows]  # optica.recipes
    assert all(len(row) == 4 for row in rows)


def test_help_lists_commands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "train" in out and "experiment" in out and "recipes" in out


def test_python_dash_m_and_console_script(tmp_path):
    env = {"OPTICA_PLUGINS": PLUGIN, "PATH": "", "OPTICA_HOME": str(tmp_path)}
    for command in ([sys.executable, "-m", "optica"], [sys.executable, "-m", "optica.cli.main"]):
        done = subprocess.run(
            [*command, "train", "stpes=1"], capture_output=True, text=True, env=env
        )
        assert done.returncode == 2
        assert done.stderr.strip() == (
            "error: stpes: train has no parameter 'stpes'; did you mean 'steps'? "
            "(valid: model, optim, steps, tags, mode, output, extra)"
        )


def test_dryrun_with_executor_shows_the_command(capsys):
    argv = ["train", "--factory", "tiny_train", "executor=torchrun", "executor.ntasks_per_node=2"]
    assert main([*argv, "--dryrun"]) == 0
    out = capsys.readouterr().out
    assert "--nproc_per_node" in out and "2" in out and "optica.run.runner" in out


def test_executor_runs_task_in_subprocess(tmp_path):
    output = tmp_path / "out.json"
    assert main(["train", "--factory", "tiny_train", f"output={output}", "executor=local"]) == 0
    assert json.loads(output.read_text())["steps"] == 5


def test_failing_task_exits_non_zero_with_log_tail(capsys):
    assert main(["explode", "code=4", "executor=local"]) == 1
    err = capsys.readouterr().err
    assert "failed with exit code 4" in err and "about to fail" in err


def test_executor_typo_is_one_line(capsys):
    assert main(["train", "executor=lokal"]) == 2
    assert "executor: expected Executor, got 'lokal'; did you mean 'local'?" in (
        capsys.readouterr().err
    )


def test_other_packages_register_through_the_entry_point_group(tmp_path):
    dist = tmp_path / "optica_plugin_example-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: optica-plugin-example\n")
    (dist / "entry_points.txt").write_text(f"[optica.cli]\nexample = {PLUGIN}\n")
    code = "from optica.run.cli import registry; print(sorted(registry.entrypoints()))"
    env = {"PYTHONPATH": f"{tmp_path}:{REPO_ROOT}", "OPTICA_HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert {"explode", "train"} <= set(ast.literal_eval(done.stdout.strip()))


def test_unset_dataclass_parameter_is_created_on_first_use():
    task = invocation("optim.lr=0.5").task
    assert task.optim == run.Config(Optim, lr=0.5)
