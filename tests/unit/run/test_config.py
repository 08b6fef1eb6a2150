"""run.Config / run.Partial: argument checks, build, broadcast, walk, autoconvert (seed 003)."""

import functools
import inspect
import textwrap

import fiddle as fdl
import pytest

from optica import run
from optica.run.errors import UnknownParameterError
from tests.unit.run.targets import Llama3Config8B, LlamaModel, SomeObject


def seed_config():
    return run.Config(SomeObject, a=5, b=run.Config(SomeObject, a=10))


def test_unknown_keyword_at_construction_names_closest_parameter():
    with pytest.raises(UnknownParameterError, match=r"no parameter 'aa'; did you mean 'a'\?"):
        run.Config(SomeObject, aa=1)


def test_unknown_attribute_assignment_names_closest_parameter():
    cfg = run.Partial(LlamaModel)
    with pytest.raises(AttributeError, match="did you mean 'config'"):
        cfg.confg = 1


def test_unknown_name_without_close_match_lists_valid_ones():
    with pytest.raises(UnknownParameterError, match=r"\(valid: a, b\)") as info:
        run.Config(SomeObject, zzzz=1)
    assert "did you mean" not in str(info.value)


def test_config_builds_object_and_partial_builds_functools_partial():
    # The seed: fdl.build(partial)() == fdl.build(config)
    partial = run.Partial(LlamaModel, config=run.Config(Llama3Config8B, seq_length=16384))
    config = run.Config(LlamaModel, config=run.Config(Llama3Config8B, seq_length=16384))
    built_partial = run.build(partial)
    assert isinstance(built_partial, functools.partial)
    assert built_partial() == run.build(config)
    assert run.build(config).config.seq_length == 16384


def test_python_operations_apply_to_the_config():
    config = run.Config(LlamaModel, config=run.Config(Llama3Config8B, seq_length=16384))
    config.config.seq_length *= 2
    assert run.build(config).config.seq_length == 32768


def test_seed_broadcast_then_walk():
    config = seed_config()
    config.broadcast(a=20)
    assert (config.a, config.b.a) == (20, 20)
    config.walk(a=lambda cfg: cfg.a * 2)
    assert (config.a, config.b.a) == (40, 40)


def test_seed_broadcast_and_walk_yaml():
    config = seed_config()
    config.broadcast(a=20)
    assert run.to_yaml(config) == textwrap.dedent("""\
        _target_: tests.unit.run.targets.SomeObject
        a: 20
        b:
          _target_: tests.unit.run.targets.SomeObject
          a: 20
        """)
    config.walk(a=lambda cfg: cfg.a * 2)
    assert "a: 40" in run.to_yaml(config) and "a: 20" not in run.to_yaml(config)


def test_broadcast_and_walk_recurse_into_containers():
    inner = [run.Config(SomeObject, a=1), {"k": (run.Config(SomeObject, a=2),)}]
    config = run.Partial(SomeObject, b=inner)
    config.broadcast(a=7)
    assert [config.b[0].a, config.b[1]["k"][0].a, config.a] == [7, 7, 7]
    config.walk(a=lambda cfg: cfg.a + 1)
    assert [config.b[0].a, config.b[1]["k"][0].a, config.a] == [8, 8, 8]


def test_broadcast_gives_each_place_its_own_copy():
    config = run.Config(SomeObject, a=[1], b=run.Config(SomeObject, a=[1]))
    config.broadcast(a=[5])
    config.a.append(6)
    assert config.b.a == [5]


def test_broadcast_skips_targets_without_the_parameter():
    config = run.Config(LlamaModel, config=run.Config(Llama3Config8B))
    config.broadcast(seq_length=128)
    assert config.config.seq_length == 128
    assert "seq_length" not in config.__arguments__


def test_walk_applies_to_defaulted_parameters_too():
    config = run.Config(SomeObject, b=run.Config(SomeObject, a=3))
    config.walk(a=lambda cfg: cfg.a * 10)
    assert (config.a, config.b.a) == (10, 30)


@run.autoconvert
def automodel() -> LlamaModel:
    return LlamaModel(config=Llama3Config8B())


def model() -> run.Config[LlamaModel]:
    return run.Config(LlamaModel, config=run.Config(Llama3Config8B))


def test_seed_autoconvert_equals_hand_written_config():
    assert model() == automodel()
    assert type(automodel()) is run.Config
    assert type(automodel().config) is run.Config


@run.autoconvert(partial=True)
def autopartial(seq_length: int) -> LlamaModel:
    return LlamaModel(config=Llama3Config8B(seq_length=seq_length))


def test_autoconvert_partial_and_arguments():
    cfg = autopartial(4096)
    assert type(cfg) is run.Partial
    assert cfg.config.seq_length == 4096
    assert run.build(cfg)().config.seq_length == 4096


def test_config_is_a_fiddle_config():
    cfg = model()
    assert isinstance(cfg, fdl.Config)
    assert fdl.build(cfg) == run.build(cfg)
    assert inspect.isclass(run.Config) and issubclass(run.Partial, fdl.Partial)
