"""Hydra-dialect YAML/JSON/TOML: lossless round trips (hypothesis) and the import allowlist."""

import pathlib
import textwrap

import fiddle as fdl
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optica import run
from optica.run.errors import ConfigError, ImportNotAllowedError, UnknownParameterError
from tests.unit.run.targets import Color, SomeObject, anything, positional

FORMATS = {
    "yaml": (run.to_yaml, run.from_yaml),
    "json": (run.to_json, run.from_json),
    "toml": (run.to_toml, run.from_toml),
}
ALLOW = ("tests.unit.run",)

identifiers = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
)
leaves = (
    scalars
    | st.sampled_from(list(Color))
    | st.sampled_from([torch.float32, torch.bfloat16, torch.float16, torch.int64])
    | st.text(st.characters(codec="ascii", exclude_characters="\x00"), max_size=10).map(
        pathlib.Path
    )
    | st.just(torch.nn.functional.gelu)
)


def buildables(values):
    kinds = st.sampled_from([run.Config, run.Partial])
    arguments = st.dictionaries(identifiers, values, max_size=3)
    return st.builds(lambda kind, kwargs: kind(anything, **kwargs), kinds, arguments)


def containers(children):
    # NOTE: one key type per dict: fiddle's own equality sorts dict keys.
    return (
        st.lists(children, max_size=3)
        | st.lists(children, max_size=3).map(tuple)
        | st.dictionaries(st.text(max_size=6), children, max_size=3)
        | st.dictionaries(st.integers(-5, 5), children, max_size=3)
        | buildables(children)
    )


trees = buildables(st.recursive(leaves, containers, max_leaves=12))


def canonical(value):
    """``value`` with every config's arguments in sorted order.

    TOML writes plain values before tables, so key order changes; fiddle's ``==`` is
    order-insensitive except where one object is shared by several arguments (a dtype, say).
    """
    if isinstance(value, fdl.Buildable):
        arguments = {k: canonical(v) for k, v in sorted(value.__arguments__.items())}
        return type(value)(value.__fn_or_cls__, **arguments)
    if isinstance(value, (list, tuple)):
        return type(value)(canonical(v) for v in value)
    if isinstance(value, dict):
        return {k: canonical(v) for k, v in sorted(value.items(), key=lambda kv: repr(kv[0]))}
    return value


@pytest.mark.parametrize("fmt", FORMATS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=trees)
def test_round_trip_is_lossless(fmt, config):
    dump, load = FORMATS[fmt]
    text = dump(config)
    assert canonical(load(text, allow=ALLOW)) == canonical(config)
    assert dump(load(text, allow=ALLOW)) == text


def test_partial_and_nested_config_match_seed_yaml():
    partial = run.Partial(SomeObject, b=run.Config(SomeObject, a=16384))
    assert run.to_yaml(partial) == textwrap.dedent("""\
        _target_: tests.unit.run.targets.SomeObject
        _partial_: true
        b:
          _target_: tests.unit.run.targets.SomeObject
          a: 16384
        """)


@pytest.mark.parametrize("fmt", FORMATS)
def test_special_values_keep_their_type(fmt):
    dump, load = FORMATS[fmt]
    config = run.Config(
        anything,
        dtype=torch.bfloat16,
        path=pathlib.Path("/data/images"),
        color=Color.GREEN,
        shape=(2, 3),
        none=None,
        keys={1: "one", "_target_": "not a target"},
        device=torch.device("cpu"),
    )
    loaded = load(dump(config), allow=ALLOW)
    assert loaded.dtype is torch.bfloat16
    assert loaded.path == pathlib.Path("/data/images")
    assert loaded.color is Color.GREEN and loaded.shape == (2, 3) and loaded.none is None
    assert loaded.keys == {1: "one", "_target_": "not a target"}
    assert loaded.device == torch.device("cpu")


def test_positional_only_and_var_positional_arguments_round_trip():
    config = run.Config(positional, 1, 5, 6, 7, z=4)
    text = run.to_yaml(config)
    assert "_args_: [1, 5, 6, 7]" in text
    assert run.build(run.from_yaml(text, allow=ALLOW)) == (1, 5, (6, 7), 4)


def test_hydra_file_written_by_hand_loads():
    text = textwrap.dedent("""\
        _target_: torch.optim.AdamW
        _partial_: true
        lr: 1e-4
        eps: 1e-8
        weight_decay: 0.01
        """)
    config = run.from_yaml(text)
    assert isinstance(config, run.Partial)
    assert config.lr == 1e-4 and isinstance(config.eps, float)


def test_module_outside_allowlist_is_refused():
    with pytest.raises(ImportNotAllowedError, match="'os' is not on the import allowlist"):
        run.from_yaml("_target_: os.system\n_args_: [echo hacked]")


def test_allowlist_extends_explicitly():
    text = "_target_: tests.unit.run.targets.SomeObject\na: 3\n"
    with pytest.raises(ImportNotAllowedError, match="--allow-import tests"):
        run.from_yaml(text)
    assert run.build(run.from_yaml(text, allow=("tests",))).a == 3


def test_allowlist_extends_through_environment(monkeypatch):
    monkeypatch.setenv("OPTICA_ALLOW_IMPORTS", "tests.unit")
    assert run.from_json('{"_target_": "tests.unit.run.targets.SomeObject"}').a == 1


@pytest.mark.parametrize(
    "target", ["torch.hub.load", "torch.load", "torch.utils.cpp_extension.load_inline"]
)
def test_code_loading_entry_points_in_trusted_packages_are_refused(target):
    with pytest.raises(ImportNotAllowedError, match="loads or runs code"):
        run.from_yaml(f"_target_: {target}\n")


def test_private_names_and_remote_code_are_refused():
    with pytest.raises(ImportNotAllowedError, match="private"):
        run.from_yaml("_target_: torch._C._set_grad_enabled\n")
    text = "_target_: transformers.AutoConfig.from_pretrained\ntrust_remote_code: true\n"
    with pytest.raises(ImportNotAllowedError, match="trust_remote_code"):
        run.from_yaml(text)


def test_unknown_parameter_in_file_names_path_and_suggestion():
    text = textwrap.dedent("""\
        _target_: tests.unit.run.targets.SomeObject
        b:
          _target_: torch.nn.Linear
          in_featres: 3
        """)
    with pytest.raises(UnknownParameterError) as info:
        run.from_yaml(text, allow=ALLOW, source="model.yaml")
    message = str(info.value)
    assert message.startswith("model.yaml: at 'b': ")
    assert "did you mean 'in_features'" in message


def test_bad_files_give_one_line(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match=r"broken.yaml: not valid YAML: .* line 2"):
        run.load_file(broken)
    with pytest.raises(ConfigError, match="cannot read"):
        run.load_file(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="unknown config format '.ini'"):
        run.load_file(tmp_path / "x.ini")
    with pytest.raises(ConfigError, match="not valid JSON: .* line 1"):
        run.from_json("{'a': 1}")
    with pytest.raises(ConfigError, match="did you mean 'Linear'"):
        run.from_yaml("_target_: torch.nn.Linearr\n")


def test_unsupported_values_name_their_path():
    with pytest.raises(ConfigError, match="at 'b.fn'"):
        run.to_yaml(run.Config(SomeObject, b={"fn": lambda x: x}))
    with pytest.raises(ConfigError, match="cannot serialize a object at 'a'"):
        run.to_json(run.Config(SomeObject, a=object()))
