"""The override grammar: ``a.b.c=value``, ``a.b[0]=v``, ``a["key"]=v``, ``x+=v``, ``x*=v``.

Each override walks the config tree along its dotted path — through Configs and Partials by
parameter name, through lists and dicts by ``[index]`` — and sets the last element with the
value parsed for that parameter's annotation (:mod:`optica.run.cli.values`). Errors name the
path, what was expected and the closest valid name.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import inspect
import operator
import re
import typing
from dataclasses import dataclass
from typing import Any

import fiddle as fdl

from optica.run.cli.values import parameter_annotation, parse_value
from optica.run.config import Config, check_parameter, keyword_parameters
from optica.run.errors import ConfigError, OpticaError, did_you_mean

_OVERRIDE = re.compile(
    r"^(?P<path>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*|\[[^\]]*\])*)\s*(?P<op>\+=|-=|\*=|/=|=)(?P<value>.*)$",
    re.DOTALL,
)
_ELEMENT = re.compile(r"\.?([A-Za-z_]\w*)|\[([^\]]*)\]")
_OPERATORS = {"+=": operator.add, "-=": operator.sub, "*=": operator.mul, "/=": operator.truediv}


@dataclass(frozen=True)
class Override:
    path: tuple[str | int, ...]  # attribute names (str) and [index] keys (int or str)
    op: str
    value: str
    text: str

    @property
    def dotted(self) -> str:
        return format_path(self.path)


def is_override(arg: str) -> bool:
    return _OVERRIDE.match(arg) is not None


def parse_override(arg: str) -> Override:
    match = _OVERRIDE.match(arg)
    if match is None:
        raise ConfigError(f"cannot parse '{arg}': expected key=value (e.g. trainer.max_steps=100)")
    elements = [_element(m) for m in _ELEMENT.finditer(match["path"])]
    return Override(tuple(elements), match["op"], match["value"], arg)


def _element(match: re.Match) -> str | int:
    if match[1] is not None:
        return match[1]
    key = match[2].strip()
    try:
        return ast.literal_eval(key)  # [0], ["key"], ['key']
    except (ValueError, SyntaxError):
        return _IndexKey(key)  # [key] unquoted: a dict key


class _IndexKey(str):
    """An unquoted ``[key]``: a dict key, never an attribute."""


def format_path(path: tuple[str | int, ...]) -> str:
    text = ""
    for element in path:
        if isinstance(element, str) and not isinstance(element, _IndexKey):
            text += f".{element}" if text else element
        else:
            text += f"[{element!r}]" if not isinstance(element, _IndexKey) else f"[{element}]"
    return text


def apply_override(root: Any, override: Override) -> None:
    """Applies one override to ``root`` in place."""
    try:
        parent = _walk(root, override.path[:-1])
        _set(parent, override.path[-1], override)
    except OpticaError as err:
        raise type(err)(f"{override.dotted}: {err}") from None


def _walk(node: Any, path: tuple[str | int, ...]) -> Any:
    for depth, element in enumerate(path):
        node = _child(node, element, path[: depth + 1])
    return node


def _child(node: Any, element: str | int, path: tuple) -> Any:
    if isinstance(node, fdl.Buildable) and _is_attribute(element):
        check_parameter(node.__fn_or_cls__, element)
        value = getattr(node, element, None)
        if value is None:
            value = _default_config(node, element)
        if isinstance(value, (fdl.Buildable, list, dict)):
            return value
        raise ConfigError(f"'{format_path(path)}' is {value!r}, not a config to go into")
    if isinstance(node, (list, tuple)) and isinstance(element, int):
        if -len(node) <= element < len(node):
            return node[element]
        raise ConfigError(f"index {element} out of range (length {len(node)})")
    if isinstance(node, dict):
        if element in node:
            return node[element]
        keys = [str(k) for k in node]
        raise ConfigError(f"no key '{element}'{did_you_mean(str(element), keys)}")
    raise ConfigError(f"cannot look up {element!r} in a {type(node).__name__}")


def _default_config(node: fdl.Buildable, name: str) -> fdl.Buildable | None:
    """An unset parameter annotated with a dataclass (or a class taking keyword options only,
    e.g. ``ParallelStrategy``) becomes ``Config(thatclass)``, so ``trainer.max_steps=10`` works
    without first writing ``trainer=...``."""
    annotation = parameter_annotation(node.__fn_or_cls__, name)
    candidates = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    candidates = [a for a in candidates if _options_only(a)]
    if len(candidates) != 1:
        return None
    config = Config(candidates[0])
    setattr(node, name, config)
    return config


def _options_only(cls: Any) -> bool:
    """A dataclass, or a (non-builtin) class whose every parameter is a keyword with a default."""
    if dataclasses.is_dataclass(cls):
        return True
    if not inspect.isclass(cls) or cls.__module__ == "builtins":
        return False
    try:
        params = list(inspect.signature(cls).parameters.values())
    except (TypeError, ValueError):
        return False
    keyword = inspect.Parameter.KEYWORD_ONLY
    return bool(params) and all(p.kind is keyword and p.default is not p.empty for p in params)


def _is_attribute(element: str | int) -> bool:
    return isinstance(element, str) and not isinstance(element, _IndexKey)


def _set(parent: Any, element: str | int, override: Override) -> None:
    if isinstance(parent, fdl.Buildable):
        if not _is_attribute(element):
            raise ConfigError(f"use .name, not [{element!r}], for a parameter")
        check_parameter(parent.__fn_or_cls__, element)
        annotation = parameter_annotation(parent.__fn_or_cls__, element)
        current = lambda: copy.deepcopy(getattr(parent, element))  # noqa: E731
        setattr(parent, element, _new_value(override, annotation, current))
    elif isinstance(parent, list) and isinstance(element, int):
        _child(parent, element, override.path)  # range check
        parent[element] = _new_value(override, Any, lambda: copy.deepcopy(parent[element]))
    elif isinstance(parent, dict):
        current = lambda: copy.deepcopy(parent[element])  # noqa: E731
        parent[element] = _new_value(override, Any, current)
    else:
        raise ConfigError(f"cannot set {element!r} on a {type(parent).__name__}")


def _new_value(override: Override, annotation: Any, current: Any) -> Any:
    value = parse_value(override.value, annotation)
    if override.op == "=":
        return value
    try:
        return _OPERATORS[override.op](current(), value)
    except (TypeError, AttributeError, ZeroDivisionError, ValueError) as err:
        raise ConfigError(f"cannot apply '{override.op}' ({err})") from None


def apply_mapping(root: fdl.Buildable, mapping: dict[str, Any], prefix: str = "") -> None:
    """Applies an ``@file.yaml`` include: nested keys set parameters, Configs replace sub-trees."""
    for key, value in mapping.items():
        path = f"{prefix}.{key}" if prefix else key
        if not isinstance(root, fdl.Buildable):
            raise ConfigError(f"{path}: cannot set a key on a {type(root).__name__}")
        if key not in keyword_parameters(root.__fn_or_cls__):
            check_parameter(root.__fn_or_cls__, key)
        current = getattr(root, key, None)
        if isinstance(value, dict) and isinstance(current, fdl.Buildable):
            apply_mapping(current, value, path)
        else:
            setattr(root, key, value)
