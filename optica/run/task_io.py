"""Lossless task storage: fiddle's own JSON serializer, plus a plain-JSON form for scripts.

``task.json`` is what a job actually runs (and what ``Experiment.from_id`` rebuilds), so it must
bring back exactly the config that was added: fiddle's serializer keeps the Buildable subclass,
shared sub-configs and every Python reference. ``config.yaml`` beside it is for people.

torch dtypes are module constants, not types or functions, so fiddle needs them registered before
it can write them. That happens lazily and only when torch is already imported: a task can only
hold a dtype if torch was imported, and loading a dtype reference imports torch by itself. Plain
tasks therefore never pay torch's import time.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import sys
import types
from typing import Any

import fiddle as fdl
from fiddle import daglish
from fiddle.experimental import serialization

from optica.run.errors import ConfigError
from optica.run.script import Script

_SCRIPT_KEY = "optica_script"
_torch_registered = False


def dump_task(task: Any) -> str:
    """Serializes a config tree or a :class:`Script` to a JSON string."""
    if isinstance(task, Script):
        return json.dumps({_SCRIPT_KEY: dataclasses.asdict(task)}, indent=2)
    _register_torch_constants()
    return serialization.dump_json(task, indent=2)


def load_task(text: str) -> Any:
    """The inverse of :func:`dump_task`.

    NOTE: fiddle imports every module the task references. Task files are written by optica
    itself under ``$OPTICA_HOME``; user-written config files go through ``run.from_yaml``,
    whose import allowlist guards against running code the user did not ask for.
    """
    data = json.loads(text)
    if isinstance(data, dict) and _SCRIPT_KEY in data:
        return Script(**data[_SCRIPT_KEY])
    _register_torch_constants()
    return serialization.load_json(text)


def check_round_trip(task: Any, name: str = "task") -> None:
    """Raises :class:`ConfigError` naming the first value that would not come back from disk.

    A task that cannot be saved cannot run in another process, so this runs when a task is
    added, where the mistake is cheap to fix, instead of failing inside a launched job.
    """
    if isinstance(task, Script):
        return
    if not isinstance(task, fdl.Buildable):
        raise ConfigError(
            f"task '{name}' must be a run.Config, run.Partial or run.Script,"
            f" not {type(task).__name__}"
        )
    _register_torch_constants()
    for value, path in daglish.iterate(task):
        _check_value(value, path, name)
    try:
        loaded = load_task(dump_task(task))
    except Exception as err:  # fiddle raises several types; the message says which
        raise ConfigError(f"task '{name}' cannot be saved: {_first_line(err)}") from None
    if loaded != task:
        where = _first_difference(task, loaded)
        raise ConfigError(f"task '{name}' changes when saved and loaded again (at '{where}')")


def _check_value(value: Any, path: daglish.Path, name: str) -> None:
    """Tries to serialize one node on its own: a leaf, or a Buildable's target."""
    if isinstance(value, fdl.Buildable):
        value = value.__fn_or_cls__
        where = _where(path, "target")
    elif daglish.find_node_traverser(type(value)) is not None:
        return  # a container: its items are checked one by one
    else:
        where = _where(path, "value")
    try:
        serialization.dump_json(value)
    except Exception:  # fiddle raises several types; the path is what the user needs
        raise ConfigError(
            f"task '{name}' cannot be saved: {where} ({_describe(value)}) is not serializable;"
            " use run.Config(...) or a module-level Python function"
        ) from None
    if getattr(inspect.getmodule(value), "__name__", None) == "__main__":
        raise ConfigError(
            f"task '{name}' cannot be saved: {where} ({_describe(value)}) is defined in "
            "__main__, which another process cannot import; move it to an importable module"
        )


def _where(path: daglish.Path, kind: str) -> str:
    dotted = daglish.path_str(path).lstrip(".")
    return f"{kind} at '{dotted}'" if dotted else f"the task's {kind}"


def _describe(value: Any) -> str:
    """A short human name for a value: ``a lambda``, ``a local function 'f.<locals>.g'``..."""
    if isinstance(value, types.FunctionType):
        if value.__name__ == "<lambda>":
            return "a lambda"
        if "<locals>" in value.__qualname__:
            return f"a local function '{value.__qualname__}'"
        return f"function '{value.__qualname__}'"
    if inspect.isbuiltin(value):
        return f"builtin '{getattr(value, '__module__', None)}.{value.__qualname__}'"
    if inspect.isclass(value):
        return f"class '{value.__qualname__}'"
    return f"an instance of {type(value).__name__}"


def _first_difference(original: Any, loaded: Any) -> str:
    """The dotted path of the first leaf whose loaded value differs from the original."""
    pairs = zip(daglish.iterate(original), daglish.iterate(loaded))
    for (left, path), (right, _) in pairs:
        traversable = daglish.find_node_traverser(type(left)) is not None
        if isinstance(left, fdl.Buildable):
            left, right = left.__fn_or_cls__, getattr(right, "__fn_or_cls__", None)
        elif traversable:
            continue
        if left != right:
            return daglish.path_str(path).lstrip(".") or "<root>"
    return "<root>"


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def _register_torch_constants() -> None:
    """Registers every canonical ``torch.<dtype>`` with fiddle once torch is imported."""
    global _torch_registered
    torch = sys.modules.get("torch")
    if _torch_registered or torch is None:
        return
    for name in dir(torch):
        value = getattr(torch, name, None)
        if isinstance(value, torch.dtype) and str(value) == f"torch.{name}":
            serialization.register_constant("torch", name, compare_by_identity=True)
    _torch_registered = True
