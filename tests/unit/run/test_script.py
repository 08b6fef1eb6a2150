"""run.Script: validation, the command it becomes, and that the command really runs."""

import subprocess
import sys

import pytest

from optica.run.errors import ConfigError
from optica.run.script import Script
from optica.run.serialize import from_yaml, to_yaml


@pytest.mark.parametrize("kwargs", [{}, {"path": "a.sh", "inline": "echo hi"}])
def test_needs_exactly_one_of_path_or_inline(kwargs):
    with pytest.raises(ConfigError, match="exactly one of path= or inline="):
        Script(**kwargs)


def test_path_command_is_entrypoint_path_args():
    assert Script(path="train.sh", args=["--lr", 1]).to_command() == [
        "bash",
        "train.sh",
        "--lr",
        "1",
    ]


def test_inline_shell_arguments_start_at_dollar_one(tmp_path):
    command = Script(inline='echo "first=$1 all=$*"', args=["a", "b c"]).to_command()
    assert command[:3] == ["bash", "-c", 'echo "first=$1 all=$*"']
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    assert output == "first=a all=a b c\n"


def test_inline_python_gets_arguments_in_argv():
    script = Script(inline="import sys; print(sys.argv[1:])", args=["x"], entrypoint=sys.executable)
    output = subprocess.run(script.to_command(), capture_output=True, text=True, check=True)
    assert output.stdout == "['x']\n"


def test_path_script_runs_with_its_arguments(tmp_path):
    path = tmp_path / "hello.sh"
    path.write_text('echo "hello $1"\n')
    output = subprocess.run(Script(path=str(path), args=["you"]).to_command(), capture_output=True)
    assert output.stdout == b"hello you\n"


def test_default_name_is_the_file_stem():
    assert Script(path="/x/train.sh").name == "train"
    assert Script(inline="true").name == "script"


def test_yaml_round_trip_gives_an_equal_script():
    script = Script(inline="echo $FOO", args=["1"], env={"FOO": "bar"}, entrypoint="sh")
    text = to_yaml(script)
    assert "inline: echo $FOO" in text
    assert from_yaml(text) == script
