"""``run.Config`` and ``run.Partial``: fiddle's buildables with early, friendly argument checks.

They are fiddle's own ``Config`` / ``Partial`` (so every fiddle tool — build, daglish, selectors,
diffing, graphviz — works on them) plus three things NeMo-Run users expect:

* unknown argument names fail at construction or assignment with a did-you-mean;
* ``broadcast(**kw)`` sets a parameter everywhere it exists in the tree;
* ``walk(**fns)`` replaces a parameter everywhere with ``fn(config)``.

Unlike NeMo-Run, ``broadcast`` and ``walk`` also recurse into lists, tuples and dicts.
"""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import fiddle as fdl
from fiddle import daglish, signatures
from fiddle._src.casting import register_supported_cast

from optica.run.errors import UnknownParameterError, did_you_mean

T = TypeVar("T")


def target_name(fn_or_cls: Any) -> str:
    """A readable name of a configured function or class, for messages."""
    return getattr(fn_or_cls, "__qualname__", None) or repr(fn_or_cls)


def accepts_parameter(fn_or_cls: Any, name: str) -> bool:
    """Whether ``name`` can be passed to ``fn_or_cls`` by keyword."""
    params = _parameters(fn_or_cls)
    if params is None:
        return True
    param = params.get(name)
    if param is not None:
        return param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY)
    return any(p.kind is p.VAR_KEYWORD for p in params.values())


def keyword_parameters(fn_or_cls: Any) -> list[str]:
    """Names that ``fn_or_cls`` accepts by keyword, in signature order."""
    params = _parameters(fn_or_cls) or {}
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [name for name, p in params.items() if p.kind in kinds]


def check_parameter(fn_or_cls: Any, name: str) -> None:
    """Raises :class:`UnknownParameterError` with a did-you-mean if ``name`` is not accepted."""
    if accepts_parameter(fn_or_cls, name):
        return
    valid = keyword_parameters(fn_or_cls)
    raise UnknownParameterError(
        f"{target_name(fn_or_cls)} has no parameter '{name}'{did_you_mean(name, valid)}"
        f" (valid: {', '.join(valid) or 'none'})"
    )


def _parameters(fn_or_cls: Any) -> dict[str, inspect.Parameter] | None:
    try:
        return dict(signatures.get_signature(fn_or_cls).parameters)
    except (TypeError, ValueError):
        return None  # no inspectable signature (some builtins): let fiddle decide


class _TreeMethods:
    """``broadcast`` and ``walk``, shared by :class:`Config` and :class:`Partial`."""

    def broadcast(self, **values: Any) -> _TreeMethods:
        """Sets each ``name=value`` on every buildable in the tree that accepts ``name``.

        Each place gets its own deep copy of the value, so no two places share a mutable object.
        """
        for node in _buildables(self):
            for name, value in values.items():
                if _has_named_parameter(node, name):
                    setattr(node, name, copy.deepcopy(value))
        return self

    def walk(self, **fns: Callable[[Any], Any]) -> _TreeMethods:
        """Sets ``name`` to ``fn(node)`` on every buildable in the tree where ``name`` has a value.

        ``config.walk(a=lambda cfg: cfg.a * 2)`` doubles ``a`` wherever it is set or defaulted.
        """
        for node in _buildables(self):
            for name, fn in fns.items():
                if _has_value(node, name):
                    setattr(node, name, fn(node))
        return self


def _has_named_parameter(node: fdl.Buildable, name: str) -> bool:
    params = _parameters(node.__fn_or_cls__)
    if params is None or name in params:
        return params is None or accepts_parameter(node.__fn_or_cls__, name)
    return name in node.__arguments__  # only **kwargs targets: set where already given


def _has_value(node: fdl.Buildable, name: str) -> bool:
    if name in node.__arguments__:
        return True
    param = (_parameters(node.__fn_or_cls__) or {}).get(name)
    return param is not None and param.default is not inspect.Parameter.empty


def _buildables(root: Any) -> list[fdl.Buildable]:
    """Every buildable reachable from ``root``, parents before children, each once."""
    found: list[fdl.Buildable] = []
    seen: set[int] = set()

    def visit(value: Any) -> None:
        if id(value) in seen:
            return
        seen.add(id(value))
        if isinstance(value, fdl.Buildable):
            found.append(value)
            children = list(value.__arguments__.values())
        elif isinstance(value, (list, tuple, set, frozenset)):
            children = list(value)
        elif isinstance(value, dict):
            children = list(value.values())
        else:
            return
        for child in children:
            visit(child)

    visit(root)
    return found


class _CheckedArguments:
    """Checks keyword names against the target's signature before fiddle stores them."""

    def __init__(self, fn_or_cls: Any, /, *args: Any, **kwargs: Any) -> None:
        for name in kwargs:
            check_parameter(fn_or_cls, name)
        super().__init__(fn_or_cls, *args, **kwargs)

    def __setattr__(self, name: str, value: Any) -> None:
        if not (name.startswith("__") and name.endswith("__")):
            check_parameter(self.__fn_or_cls__, name)
        super().__setattr__(name, value)


class Config(_CheckedArguments, _TreeMethods, fdl.Config, Generic[T]):
    """Builds into ``fn_or_cls(**arguments)``; see the module docstring."""


class Partial(_CheckedArguments, _TreeMethods, fdl.Partial, Generic[T]):
    """Builds into ``functools.partial(fn_or_cls, **arguments)``; see the module docstring."""


for _source in (fdl.Config, fdl.Partial, Config, Partial):
    for _destination in (Config, Partial):
        register_supported_cast(_source, _destination)


def build(buildable: Any) -> Any:
    """Builds a config tree into objects (``fiddle.build``): Configs are called, Partials bound."""
    return fdl.build(buildable)


def to_run_types(value: Any) -> Any:
    """``value`` with plain ``fdl.Config`` / ``fdl.Partial`` replaced by ours, recursively."""

    def convert(node: Any, state: daglish.State) -> Any:
        node = state.map_children(node)
        for plain, ours in ((fdl.Partial, Partial), (fdl.Config, Config)):
            if type(node) is plain:
                return fdl.cast(ours, node)
        return node

    return daglish.MemoizedTraversal.run(convert, value)


def autoconvert(fn: Callable[..., Any] | None = None, *, partial: bool = False) -> Any:
    """Turns a function that builds objects into one that returns the config of those objects.

    Uses fiddle's ``auto_config`` (an AST rewrite: every call becomes a ``Config``), so::

        @run.autoconvert
        def automodel() -> LlavaModel:
            return LlavaModel(config=Llava15Config7B())

        automodel() == run.Config(LlavaModel, config=run.Config(Llava15Config7B))

    With ``partial=True`` the outermost call becomes a ``run.Partial``.
    """
    from fiddle.experimental import auto_config

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        rewritten = auto_config.auto_config(function)

        @functools.wraps(function)
        def as_config(*args: Any, **kwargs: Any) -> Any:
            result = to_run_types(rewritten.as_buildable(*args, **kwargs))
            if partial and isinstance(result, Config):
                result = fdl.cast(Partial, result)
            return result

        return as_config

    return decorate(fn) if fn is not None else decorate
