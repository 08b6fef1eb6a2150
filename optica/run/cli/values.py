"""Command-line values parsed by the annotation of the parameter they set.

``max_steps=100`` gives an int because ``max_steps: int``; ``precision=bf16-mixed`` stays a string;
``dtype=torch.bfloat16`` becomes the dtype; ``betas=[0.9,0.95]`` a list of floats; ``peft=lora``
calls the factory named ``lora`` registered for the parameter's type; ``data=@data.yaml`` loads a
config file. Every parse builds fresh objects, so no two values ever share a mutable object.
"""

from __future__ import annotations

import ast
import enum
import inspect
import pathlib
import typing
from typing import Any

import yaml

from optica.run.cli import registry
from optica.run.errors import ConfigError, did_you_mean
from optica.run.serialize import _Loader, load_file

_NONE = {"none", "null", "~"}
_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}


def parse_value(text: str, annotation: Any = Any) -> Any:
    """Parses ``text`` for a parameter annotated ``annotation`` (``Any`` when unknown)."""
    if text.startswith("@"):
        return load_file(text[1:])
    made = _from_factory(text, annotation)
    if made is not _NO_MATCH:
        return made
    return coerce(_literal(text), annotation, text)


_NO_MATCH = object()


def _from_factory(text: str, annotation: Any) -> Any:
    """``name`` or ``name(k=v, ...)`` where ``name`` is a factory for ``annotation``."""
    if annotation is Any or not text[:1].isalpha():
        return _NO_MATCH
    name, args, kwargs = split_call(text)
    found = registry.factories_for(annotation).get(name)
    return _NO_MATCH if found is None else call_factory(found, args, kwargs)


def call_factory(found: registry.Factory, args: list[str], kwargs: dict[str, str]) -> Any:
    """Calls a factory with string arguments parsed by its own parameters' annotations."""
    hints = _hints(found.fn)
    params = list(inspect.signature(found.fn).parameters)
    for key in kwargs:
        if key not in params:
            raise ConfigError(
                f"factory '{found.name}' has no parameter '{key}'{did_you_mean(key, params)}"
            )
    given = {*params[: len(args)], *kwargs}
    signature = inspect.signature(found.fn).parameters.values()
    required = [p.name for p in signature if p.default is p.empty]
    if missing := [name for name in required if name not in given]:
        raise ConfigError(
            f"factory '{found.name}' needs {', '.join(missing)}: {found.name}({missing[0]}=...)"
        )
    parsed_args = [parse_value(a, hints.get(p, Any)) for a, p in zip(args, params)]
    parsed_kwargs = {k: parse_value(v, hints.get(k, Any)) for k, v in kwargs.items()}
    return found.fn(*parsed_args, **parsed_kwargs)


def split_call(text: str) -> tuple[str, list[str], dict[str, str]]:
    """``"llava15_7b(num_nodes=2)"`` -> ``("llava15_7b", [], {"num_nodes": "2"})``."""
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        raise ConfigError(f"cannot parse '{text}': expected name or name(key=value, ...)") from None
    if isinstance(node, ast.Call) and isinstance(node.func, (ast.Name, ast.Attribute)):
        args = [_source(text, a) for a in node.args]
        kwargs = {k.arg: _source(text, k.value) for k in node.keywords if k.arg}
        return ast.unparse(node.func), args, kwargs
    return text.strip(), [], {}


def _source(text: str, node: ast.AST) -> str:
    segment = ast.get_source_segment(text.strip(), node) or ast.unparse(node)
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value  # "a b" -> a b
    return segment


def _literal(text: str) -> Any:
    """YAML-ish literal: numbers, true/false, null, [lists], {dicts}; anything else a string."""
    stripped = text.strip()
    if stripped.lower() in _NONE:
        return None
    try:
        value = yaml.load(stripped, Loader=_Loader)
    except yaml.YAMLError:
        return text
    return text if isinstance(value, (str, type(None))) else value


def coerce(value: Any, annotation: Any, text: str) -> Any:
    """Converts a parsed literal to ``annotation``; raises one line naming what was expected."""
    if annotation is Any or annotation is inspect.Parameter.empty:
        return _untyped(value)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Union or type(annotation).__name__ == "UnionType":
        return _coerce_union(value, args, text)
    if origin is typing.Literal:
        return _coerce_literal(value, args, text)
    if origin in (list, tuple, set, frozenset) or annotation in (list, tuple):
        return _coerce_sequence(value, origin or annotation, args, text)
    if origin is dict or annotation is dict:
        return _coerce_dict(value, args, text)
    return _coerce_scalar(value, annotation, text)


def _untyped(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("torch."):
        dtype = _dtype(value)
        return value if dtype is None else dtype
    return value


def _coerce_union(value: Any, members: tuple, text: str) -> Any:
    if value is None and type(None) in members:
        return None
    candidates = [m for m in members if m is not type(None)]
    if len(candidates) == 1:  # Optional[X]: X's own message (with its did-you-mean) says most
        return coerce(value, candidates[0], text)
    for member in candidates:
        try:
            return coerce(value, member, text)
        except ConfigError:
            continue
    names = " or ".join(_type_name(m) for m in members)
    raise ConfigError(f"expected {names}, got '{text}'")


def _coerce_literal(value: Any, choices: tuple, text: str) -> Any:
    for choice in choices:
        if value == choice or str(choice) == text.strip():
            return choice
    options = [str(c) for c in choices]
    raise ConfigError(
        f"expected one of {', '.join(options)}, got '{text}'{did_you_mean(text, options)}"
    )


def _coerce_sequence(value: Any, kind: Any, args: tuple, text: str) -> Any:
    if not isinstance(value, list):
        value = [value] if not isinstance(value, str) or "," not in value else value.split(",")
    if kind is tuple and len(args) == 2 and args[1] is Ellipsis:
        args = (args[0],)
    item_types = args if kind is tuple and len(args) == len(value) else args[:1] * len(value)
    items = [coerce(v, t, str(v)) for v, t in zip(value, item_types or [Any] * len(value))]
    return kind(items) if kind in (tuple, set, frozenset) else items


def _coerce_dict(value: Any, args: tuple, text: str) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(f"expected a mapping like {{key: value}}, got '{text}'")
    key_type, value_type = args if len(args) == 2 else (Any, Any)
    return {coerce(k, key_type, str(k)): coerce(v, value_type, str(v)) for k, v in value.items()}


def _coerce_scalar(value: Any, annotation: Any, text: str) -> Any:
    if annotation is type(None):
        if value is None:
            return None
        raise ConfigError(f"expected None, got '{text}'")
    converter = _SCALARS.get(annotation)
    if converter is not None:
        return converter(value, text)
    if inspect.isclass(annotation) and issubclass(annotation, enum.Enum):
        return _coerce_enum(annotation, text)
    if inspect.isclass(annotation) and issubclass(annotation, pathlib.PurePath):
        return annotation(text)
    if _type_name(annotation) == "torch.dtype":
        dtype = _dtype(text.strip())
        if dtype is None:
            raise ConfigError(f"expected a torch dtype like torch.bfloat16, got '{text}'")
        return dtype
    if isinstance(value, annotation if inspect.isclass(annotation) else object):
        return value
    factories = sorted(registry.factories_for(annotation))
    known = f" (factories: {', '.join(factories)})" if factories else ""
    hint = did_you_mean(text, factories)
    raise ConfigError(f"expected {_type_name(annotation)}, got '{text}'{hint}{known}")


def _to_int(value: Any, text: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"expected int, got '{text}'")
    if isinstance(value, float) and not value.is_integer():
        raise ConfigError(f"expected int, got '{text}'")
    return int(value)


def _to_float(value: Any, text: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"expected float, got '{text}'")
    return float(value)


def _to_bool(value: Any, text: str) -> bool:
    lowered = text.strip().lower()
    if isinstance(value, bool):
        return value
    if lowered in _TRUE | _FALSE:
        return lowered in _TRUE
    raise ConfigError(f"expected bool (true/false), got '{text}'")


def _to_str(value: Any, text: str) -> str:
    stripped = text.strip()
    quoted = len(stripped) >= 2 and stripped[0] == stripped[-1] and stripped[0] in "'\""
    return stripped[1:-1] if quoted else text


_SCALARS = {int: _to_int, float: _to_float, bool: _to_bool, str: _to_str}


def _coerce_enum(enum_type: type[enum.Enum], text: str) -> enum.Enum:
    for member in enum_type:
        if text in (member.name, str(member.value)) or text.lower() == member.name.lower():
            return member
    names = [m.name for m in enum_type]
    raise ConfigError(
        f"expected one of {', '.join(names)}, got '{text}'{did_you_mean(text, names)}"
    )


def _dtype(text: str) -> Any:
    import torch

    value = getattr(torch, text.removeprefix("torch."), None)
    return value if isinstance(value, torch.dtype) else None


def _type_name(annotation: Any) -> str:
    if annotation is type(None):
        return "None"
    module = getattr(annotation, "__module__", "")
    name = getattr(annotation, "__qualname__", None) or str(annotation)
    return f"torch.{name}" if module == "torch" else name


def _hints(fn: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception:  # unresolvable forward references: treat as untyped
        return {}


def parameter_annotation(fn_or_cls: Any, name: str) -> Any:
    """The annotation of parameter ``name`` of a function or class (``Any`` if none)."""
    target = fn_or_cls.__init__ if inspect.isclass(fn_or_cls) else fn_or_cls
    hint = _hints(target).get(name)
    if hint is None and inspect.isclass(fn_or_cls):
        hint = _hints(fn_or_cls).get(name)  # dataclass fields
    return Any if hint is None else hint
