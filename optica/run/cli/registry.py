"""Registries behind the ``optica`` command: entrypoints (commands) and factories (named configs).

* ``@run.cli.entrypoint`` registers a function as a command: ``optica <name> key=value ...``.
* ``@run.cli.factory`` registers a function returning a config under a name. Its key is the type
  it configures (from the return annotation, or ``target=``), so ``optim=adamw`` only considers
  factories of the ``optim`` parameter's type. A factory whose target is an entrypoint function is
  a *recipe* (``optica finetune --factory llava15_7b``).

Other packages add commands and factories through the ``optica.cli`` entry-point group (each
entry point names a module to import) or, for quick experiments, ``OPTICA_PLUGINS=mod1,mod2``.
"""

from __future__ import annotations

import importlib
import inspect
import os
import typing
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import fiddle as fdl

from optica.run.errors import ConfigError, did_you_mean

ENTRY_POINT_GROUP = "optica.cli"
# optica's own modules that register commands and factories; imported on first lookup.
BUILTIN_MODULES: list[str] = ["optica.run.cli.builtin", "optica.cli.commands", "optica.recipes"]


@dataclass(frozen=True)
class Entrypoint:
    name: str
    fn: Callable[..., Any]
    help: str
    # ``fn(mapping, command=, where=) -> task``: reads a ``--config`` file that holds a plain
    # mapping (another tool's layout, e.g. seed 000's YAML) instead of a serialized task.
    read_mapping: Callable[..., Any] | None = None


@dataclass(frozen=True)
class Factory:
    name: str
    fn: Callable[..., Any]
    target: Any  # the configured type, or an entrypoint function for recipes
    help: str

    @property
    def is_recipe(self) -> bool:
        return any(ep.fn is self.target for ep in _entrypoints.values())


_entrypoints: dict[str, Entrypoint] = {}
_factories: list[Factory] = []
_loaded = False


def entrypoint(
    fn: Callable | None = None,
    *,
    name: str | None = None,
    help: str | None = None,
    read_mapping: Callable | None = None,
):
    """Registers ``fn`` as the command ``optica <name>`` (default: the function's name)."""

    def register(function: Callable) -> Callable:
        command = (name or function.__name__).replace("_", "-")
        text = help or _first_line(function)
        _entrypoints[command] = Entrypoint(command, function, text, read_mapping)
        return function

    return register(fn) if fn is not None else register


def factory(fn: Callable | None = None, *, target: Any = None, name: str | None = None):
    """Registers ``fn`` (returning a config) under ``name`` for ``target`` (default: its return
    annotation, e.g. ``-> run.Config[LlamaModel]`` or ``-> LlamaModel``)."""

    def register(function: Callable) -> Callable:
        configured = target if target is not None else _return_target(function)
        if configured is None:
            raise ConfigError(
                f"factory {function.__qualname__} needs a return annotation or target="
            )
        _factories.append(
            Factory(name or function.__name__, function, configured, _first_line(function))
        )
        return function

    return register(fn) if fn is not None else register


def entrypoints() -> dict[str, Entrypoint]:
    load_plugins()
    return dict(_entrypoints)


def get_entrypoint(name: str) -> Entrypoint:
    commands = entrypoints()
    if name not in commands:
        raise ConfigError(f"unknown command '{name}'{did_you_mean(name, commands)}")
    return commands[name]


def factories_for(annotation: Any) -> dict[str, Factory]:
    """Factories whose target fits a parameter annotated ``annotation`` (later ones win)."""
    load_plugins()
    wanted = [t for t in _annotation_types(annotation) if t is not None]
    return {f.name: f for f in _factories if any(_fits(f.target, t) for t in wanted)}


def recipes_for(fn: Callable | None = None) -> dict[str, Factory]:
    """Recipes (factories targeting an entrypoint), optionally only those for ``fn``."""
    load_plugins()
    return {f.name: f for f in _factories if f.is_recipe and (fn is None or f.target is fn)}


def load_plugins() -> None:
    """Imports optica's command modules, entry-point plugins and ``OPTICA_PLUGINS`` once."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    modules = list(BUILTIN_MODULES)
    modules += [ep.value for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)]
    modules += [m.strip() for m in os.environ.get("OPTICA_PLUGINS", "").split(",") if m.strip()]
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ConfigError(f"cannot load optica plugin '{module}': {err}") from None


def _fits(target: Any, wanted: Any) -> bool:
    if target is wanted:
        return True
    return inspect.isclass(target) and inspect.isclass(wanted) and issubclass(target, wanted)


def _annotation_types(annotation: Any) -> list[Any]:
    """``Optional[X]`` / ``X | None`` / ``run.Config[X]`` -> ``[X]``; ``Union`` -> members."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union or type(annotation).__name__ == "UnionType":
        return [t for a in typing.get_args(annotation) for t in _annotation_types(a)]
    if inspect.isclass(origin) and issubclass(origin, fdl.Buildable):
        return _annotation_types(typing.get_args(annotation)[0])
    return [annotation]


def _return_target(function: Callable) -> Any:
    try:
        hints = typing.get_type_hints(function)
    except Exception:  # unresolvable forward references: fall back to the raw annotation
        hints = getattr(function, "__annotations__", {})
    types = _annotation_types(hints.get("return"))
    return types[0] if types else None


def _first_line(function: Callable) -> str:
    doc = (inspect.getdoc(function) or "").replace("``", "")
    return doc.splitlines()[0] if doc else ""
