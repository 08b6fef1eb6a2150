"""Lossless task storage (fiddle JSON) and the round-trip check that names the bad value."""

import subprocess
import sys
import types

import fiddle as fdl
import pytest
import torch

from optica import run
from optica.run.errors import ConfigError
from optica.run.script import Script
from optica.run.task_io import check_round_trip, dump_task, load_task
from tests.unit.run import tasks
from tests.unit.run.targets import Color, SomeObject, anything


def test_round_trip_keeps_types_values_and_sharing():
    shared = run.Config(SomeObject, a=3)
    task = run.Partial(
        anything,
        first=shared,
        second=shared,
        items=[1, (2.5, "x"), {"k": None}],
        color=Color.RED,
        plain=fdl.Config(SomeObject, b=True),
    )
    loaded = load_task(dump_task(task))
    assert loaded == task
    assert type(loaded) is run.Partial and type(loaded.first) is run.Config
    assert type(loaded.plain) is fdl.Config
    assert loaded.first is loaded.second  # one object, as in the original
    assert loaded.items[1] == (2.5, "x")


@pytest.mark.parametrize(
    "dtype", [torch.bfloat16, torch.float32, torch.float16, torch.int8, torch.bool]
)
def test_torch_dtypes_round_trip_as_the_same_object(dtype):
    loaded = load_task(dump_task(run.Config(SomeObject, a=dtype)))
    assert loaded.a is dtype


def test_script_round_trip():
    script = Script(path="run.sh", args=["1"], env={"A": "b"})
    assert load_task(dump_task(script)) == script


def test_plain_tasks_do_not_import_torch():
    code = (
        "import sys; from optica.run.task_io import dump_task, load_task;"
        "from tests.unit.run.targets import anything; from optica import run;"
        "load_task(dump_task(run.Partial(anything, a=1))); assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_good_task_passes_the_check():
    check_round_trip(run.Partial(tasks.add, a=1, b=run.Config(SomeObject)), "add")


def test_lambda_is_reported_with_its_dotted_path():
    task = run.Partial(anything, data=run.Config(SomeObject, b=lambda x: x))
    with pytest.raises(ConfigError) as error:
        check_round_trip(task, "train")
    assert str(error.value) == (
        "task 'train' cannot be saved: value at 'data.b' (a lambda) is not serializable;"
        " use run.Config(...) or a module-level Python function"
    )


def test_unserializable_object_inside_containers_is_located():
    task = run.Partial(anything, items=[1, {"k": SomeObject()}])
    with pytest.raises(
        ConfigError, match=r"value at 'items\[1\]\['k'\]' \(an instance of SomeObject\)"
    ):
        check_round_trip(task, "train")


def test_local_function_as_target_is_reported():
    def local():
        return 1

    with pytest.raises(ConfigError, match=r"the task's target \(a local function '.*local'\)"):
        check_round_trip(run.Partial(local), "train")


def test_function_from_main_is_refused(monkeypatch):
    main = types.FunctionType(tasks.add.__code__, {}, "main_task")
    main.__module__, main.__qualname__ = "__main__", "main_task"
    monkeypatch.setattr(sys.modules["__main__"], "main_task", main, raising=False)
    with pytest.raises(ConfigError, match="defined in __main__, which another process cannot"):
        check_round_trip(run.Partial(anything, fn=main), "train")


def test_non_config_task_is_refused():
    with pytest.raises(
        ConfigError, match="task 'x' must be a run.Config, run.Partial or run.Script, not int"
    ):
        check_round_trip(3, "x")
