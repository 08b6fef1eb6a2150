"""Config trees as YAML, JSON and TOML in the Hydra dialect — dump **and** load, losslessly.

A ``run.Config(f, a=1)`` is ``{_target_: module.f, a: 1}``; a ``run.Partial`` adds
``_partial_: true``; positional-only and ``*args`` values go in ``_args_``. Values Hydra has no
spelling for are written as calls of their own type, so they come back as the same value::

    (1, 2)               {_target_: builtins.tuple, _args_: [[1, 2]]}
    Path("/data")        {_target_: pathlib.PosixPath, _args_: [/data]}
    Color.RED            {_target_: mymod.Color, _args_: [red]}
    torch.bfloat16       {_target_: torch.bfloat16, _call_: false}   # an object, not a call
    {1: "a"}             {_target_: builtins.dict, _args_: [[[1, a]]]}

TOML has no null: ``None`` is written there as ``{_none_: true}``.

Loading imports a target only when its dotted name is allowed (see :mod:`optica.run.allowlist`):
a config file must not be a way to run code the user did not allow.
"""

from __future__ import annotations

import enum
import inspect
import json
import pathlib
import re
import sys
from collections.abc import Iterable
from typing import Any

import fiddle as fdl
import yaml

from optica.run import allowlist
from optica.run.config import Config, Partial
from optica.run.errors import ConfigError, OpticaError

TARGET, PARTIAL, ARGS, CALL, NONE = "_target_", "_partial_", "_args_", "_call_", "_none_"
_RESERVED = re.compile(r"^_.*_$")
_PATH_TYPES = ("PosixPath", "WindowsPath", "Path", "PurePath", "PurePosixPath", "PureWindowsPath")
# Targets that load as the value they build, not as a Config (see the module docstring).
_VALUE_TARGETS = {"builtins.tuple", "builtins.dict", "builtins.set", "builtins.frozenset"}
_VALUE_TARGETS |= {f"pathlib.{name}" for name in _PATH_TYPES} | {"torch.device"}
_value_types: dict[str, type] = {}


def register_value_type(cls: type) -> type:
    """Class decorator: instances of a dataclass ``cls`` serialize as ``{_target_: cls, **fields}``
    and load back as instances (not Configs). Used for executors and scripts."""
    _value_types[qualified_name(cls)] = cls
    return cls


# ----------------------------------------------------------------------------------------------
# Public API


def to_yaml(value: Any) -> str:
    return yaml.dump(encode(value), Dumper=_Dumper, sort_keys=False, allow_unicode=True)


def from_yaml(text: str, *, allow: Iterable[str] = (), source: str = "<yaml>") -> Any:
    try:
        tree = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: not valid YAML: {_yaml_problem(err)}") from None
    return decode(tree, allow=allow, source=source)


def to_json(value: Any) -> str:
    return json.dumps(encode(value), indent=2, ensure_ascii=False)


def from_json(text: str, *, allow: Iterable[str] = (), source: str = "<json>") -> Any:
    try:
        tree = json.loads(text)
    except json.JSONDecodeError as err:
        where = f"line {err.lineno}, column {err.colno}"
        raise ConfigError(f"{source}: not valid JSON: {err.msg} at {where}") from None
    return decode(tree, allow=allow, source=source)


def to_toml(value: Any) -> str:
    import tomli_w

    tree = _nulls_to_toml(encode(value))
    if not isinstance(tree, dict):
        raise ConfigError(f"TOML needs a table at the top, got {type(value).__name__}")
    return tomli_w.dumps(tree)


def from_toml(text: str, *, allow: Iterable[str] = (), source: str = "<toml>") -> Any:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    try:
        tree = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{source}: not valid TOML: {err}") from None
    return decode(_nulls_from_toml(tree), allow=allow, source=source)


def load_file(path: str | pathlib.Path, *, allow: Iterable[str] = ()) -> Any:
    """Loads a ``.yaml``/``.yml``/``.json``/``.toml`` config file (format from the suffix)."""
    path = pathlib.Path(path)
    loaders = {".yaml": from_yaml, ".yml": from_yaml, ".json": from_json, ".toml": from_toml}
    loader = loaders.get(path.suffix.lower())
    if loader is None:
        raise ConfigError(
            f"{path}: unknown config format '{path.suffix}' (use .yaml, .json, .toml)"
        )
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror}") from None
    return loader(text, allow=allow, source=str(path))


# ----------------------------------------------------------------------------------------------
# Encoding: Python values -> plain trees of dict / list / scalars


def qualified_name(obj: Any) -> str:
    """``module.QualName`` of a function, class or dtype, checked to be importable by that name."""
    if _is_torch_dtype(obj):
        return str(obj)  # "torch.bfloat16"
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not module or not qualname or "<locals>" in qualname or "<lambda>" in qualname:
        raise ConfigError(
            f"{obj!r} has no importable name; define it at module level or use run.Config"
        )
    if any(part.startswith("_") for part in module.split(".")) and "." not in qualname:
        module = _public_module_of(obj, module) or module
    return f"{module}.{qualname}"


def _public_module_of(obj: Any, private_module: str) -> str | None:
    """Shortest public module of the same package that exports ``obj`` under its own name.

    Some functions (e.g. ``torch.nn.functional.gelu``) report a private home
    (``torch._C._nn``) that a config file may not name.
    """
    package = private_module.split(".")[0]
    candidates = [
        name
        for name, module in list(sys.modules.items())
        if (name == package or name.startswith(package + "."))
        and not any(part.startswith("_") for part in name.split("."))
        and getattr(module, obj.__name__, None) is obj
    ]
    return min(candidates, key=lambda n: (n.count("."), len(n)), default=None)


def encode(value: Any, path: str = "") -> Any:
    """Converts a config tree to plain data in the Hydra dialect; ``path`` names errors."""
    if value is None or (
        isinstance(value, (bool, int, float, str)) and not isinstance(value, enum.Enum)
    ):
        return value
    if isinstance(value, fdl.Buildable):
        return _encode_buildable(value, path)
    if isinstance(value, list):
        return [encode(item, f"{path}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, dict):
        return _encode_dict(value, path)
    return _encode_special(value, path)


def _encode_buildable(buildable: fdl.Buildable, path: str) -> dict[str, Any]:
    tree: dict[str, Any] = {TARGET: qualified_name(buildable.__fn_or_cls__)}
    if isinstance(buildable, fdl.Partial):
        tree[PARTIAL] = True
    positional, named = _split_arguments(buildable)
    if positional:
        tree[ARGS] = [encode(v, f"{path}[{i}]") for i, v in enumerate(positional)]
    for name, value in named.items():
        tree[name] = encode(value, _join(path, name))
    return tree


def _split_arguments(buildable: fdl.Buildable) -> tuple[list[Any], dict[str, Any]]:
    """Values that must be passed by position (in order) apart from keyword-settable ones."""
    arguments = buildable.__arguments__
    has_varargs = any(isinstance(key, int) for key in arguments)
    args, kwargs = buildable.__signature_info__.transform_to_args_kwargs(
        arguments, include_pos_or_kw_in_args=has_varargs, include_no_value=True
    )
    if any(value is fdl.NO_VALUE for value in args):
        name = qualified_name(buildable.__fn_or_cls__)
        raise ConfigError(f"{name}: a positional argument before others is unset")
    return list(args), dict(kwargs)


def _encode_dict(value: dict[Any, Any], path: str) -> dict[str, Any]:
    if all(isinstance(k, str) and not _RESERVED.match(k) for k in value):
        return {k: encode(v, _join(path, k)) for k, v in value.items()}
    items = [[encode(k, path), encode(v, f"{path}[{k!r}]")] for k, v in value.items()]
    return {TARGET: "builtins.dict", ARGS: [items]}


def _encode_special(value: Any, path: str) -> dict[str, Any]:
    """Tuples, sets, enums, paths, dtypes, devices, functions, classes, registered values."""
    if isinstance(value, (tuple, set, frozenset)):
        items = [encode(v, f"{path}[{i}]") for i, v in enumerate(value)]
        return {TARGET: f"builtins.{type(value).__name__}", ARGS: [items]}
    if isinstance(value, enum.Enum):
        return {TARGET: qualified_name(type(value)), ARGS: [encode(value.value, path)]}
    if isinstance(value, pathlib.PurePath):
        return {TARGET: f"pathlib.{type(value).__name__}", ARGS: [str(value)]}
    if _is_torch_dtype(value) or inspect.isclass(value) or inspect.isroutine(value):
        return {TARGET: _checked_name(value, path), CALL: False}
    if type(value).__name__ == "device" and type(value).__module__ == "torch":
        return {TARGET: "torch.device", ARGS: [str(value)]}
    if qualified_name(type(value)) in _value_types:
        fields = {f: getattr(value, f) for f in value.__dataclass_fields__}
        encoded = {f: encode(v, _join(path, f)) for f, v in fields.items()}
        return {TARGET: qualified_name(type(value)), **encoded}
    where = f" at '{path}'" if path else ""
    raise ConfigError(
        f"cannot serialize a {type(value).__name__}{where}: use run.Config(...) to describe it"
    )


def _checked_name(value: Any, path: str) -> str:
    try:
        return qualified_name(value)
    except ConfigError as err:
        raise ConfigError(f"at '{path}': {err}") from None


def _is_torch_dtype(value: Any) -> bool:
    return type(value).__name__ == "dtype" and type(value).__module__ == "torch"


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


# ----------------------------------------------------------------------------------------------
# Decoding: plain trees -> Configs, Partials and values


def decode(tree: Any, *, allow: Iterable[str] = (), source: str = "<config>") -> Any:
    """Rebuilds the config tree from plain data; imports only allowed targets."""
    policy = allowlist.Policy(extra=tuple(allow))
    try:
        return _decode(tree, "", policy)
    except OpticaError as err:
        raise type(err)(f"{source}: {err}") from None


def _decode(tree: Any, path: str, policy: allowlist.Policy) -> Any:
    if isinstance(tree, list):
        return [_decode(item, f"{path}[{i}]", policy) for i, item in enumerate(tree)]
    if not isinstance(tree, dict):
        return tree
    if TARGET not in tree:
        return {k: _decode(v, _join(path, str(k)), policy) for k, v in tree.items()}
    return _decode_target(tree, path, policy)


def _decode_target(tree: dict[str, Any], path: str, policy: allowlist.Policy) -> Any:
    where = f"at '{path}': " if path else ""
    known = (TARGET, PARTIAL, ARGS, CALL)
    unknown = [k for k in tree if _RESERVED.match(str(k)) and k not in known]
    if unknown:
        raise ConfigError(
            f"{where}unsupported key '{unknown[0]}' (optica reads {', '.join(known)})"
        )
    name = tree[TARGET]
    try:
        target = policy.import_object(name)
    except ConfigError as err:
        raise type(err)(f"{where}{err}") from None
    if tree.get(CALL) is False:
        return target
    args = [_decode(v, f"{path}[{i}]", policy) for i, v in enumerate(tree.get(ARGS, []))]
    names = [k for k in tree if not (isinstance(k, str) and _RESERVED.match(k))]
    if any(not isinstance(k, str) for k in names):
        raise ConfigError(f"{where}argument names of {name} must be strings, got {names}")
    kwargs = {k: _decode(tree[k], _join(path, k), policy) for k in names}
    policy.check_arguments(name, kwargs, where)
    return _construct(name, target, args, kwargs, tree.get(PARTIAL, False), where)


def _construct(name: str, target: Any, args: list, kwargs: dict, partial: bool, where: str) -> Any:
    is_value = name in _VALUE_TARGETS or name in _value_types
    is_value = is_value or (inspect.isclass(target) and issubclass(target, enum.Enum))
    try:
        if is_value:
            return target(*args, **kwargs)
        return (Partial if partial else Config)(target, *args, **kwargs)
    except OpticaError as err:
        raise type(err)(f"{where}{err}") from None
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}cannot build {name}: {err}") from None


# ----------------------------------------------------------------------------------------------
# Format details


def _nulls_to_toml(tree: Any) -> Any:
    if tree is None:
        return {NONE: True}
    if isinstance(tree, list):
        return [_nulls_to_toml(v) for v in tree]
    if isinstance(tree, dict):
        return {k: _nulls_to_toml(v) for k, v in tree.items()}
    return tree


def _nulls_from_toml(tree: Any) -> Any:
    if isinstance(tree, dict):
        if tree == {NONE: True}:
            return None
        return {k: _nulls_from_toml(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_nulls_from_toml(v) for v in tree]
    return tree


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-8`` as a float (YAML 1.1 wants ``1.0e-8``)."""


class _Dumper(yaml.SafeDumper):
    """SafeDumper that indents lists under their key, as people write YAML."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


# Both sides must agree: the dumper quotes any string the loader would read as a float.
_EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")
for _side in (_Loader, _Dumper):
    _side.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT_FLOAT, list("-+0123456789"))


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    flat = all(item is None or isinstance(item, (bool, int, float, str)) for item in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flat and bool(data))


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    # NOTE: PyYAML writes YAML 1.1 line breaks (NEL, LS, PS) unquoted and reads them back as
    # spaces; double quotes keep them exact.
    style = '"' if any(c in data for c in "\x85\u2028\u2029") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(list, _represent_list)
_Dumper.add_representer(str, _represent_str)


def _yaml_problem(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else problem
