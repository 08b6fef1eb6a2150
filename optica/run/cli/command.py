"""Running a registered entrypoint from the command line.

    optica <command> [--factory NAME | --factory "NAME(k=v)" | --config FILE]
                     [key=value ...] [@overrides.yaml ...] [executor=NAME executor.key=value]
                     [--dryrun] [--to-yaml | --to-json | --to-toml] [--yes] [--verbose]

The task starts as ``run.Partial(command)`` (or the recipe / file), overrides apply in order,
then it runs in this process, or through ``executor=...`` when one is given.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from typing import Any

import fiddle as fdl

from optica.run import serialize
from optica.run.allowlist import allow_imports
from optica.run.cli import registry
from optica.run.cli.overrides import Override, apply_mapping, apply_override, parse_override
from optica.run.cli.values import call_factory, split_call
from optica.run.config import Partial
from optica.run.errors import ConfigError, did_you_mean
from optica.run.executors.base import Executor

EXECUTOR_KEY = "executor"


@dataclass
class Invocation:
    """What the command line asked for, before anything runs."""

    task: fdl.Buildable
    executor: Any = None  # a Config of an executor, or None to run in this process
    options: argparse.Namespace = field(default_factory=argparse.Namespace)


def options_parser(command: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"optica {command}", add_help=True)
    parser.add_argument("--factory", "-f", help="start from a registered recipe/factory")
    parser.add_argument("--config", "-c", help="start from a YAML/JSON/TOML task file")
    parser.add_argument("--dryrun", action="store_true", help="print what would run, then exit")
    for fmt in ("yaml", "json", "toml"):
        parser.add_argument(f"--to-{fmt}", action="store_true", help=f"print the task as {fmt}")
    parser.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    parser.add_argument("--verbose", "-v", action="store_true", help="show tracebacks")
    parser.add_argument(
        "--allow-import", action="append", default=[], help="module prefix a file may import"
    )
    parser.add_argument("overrides", nargs="*", help="key=value, key+=value, @file.yaml")
    return parser


def parse_invocation(entry: registry.Entrypoint, argv: list[str]) -> Invocation:
    options = options_parser(entry.name).parse_args(argv)
    allow_imports(*options.allow_import)
    task = _base_task(entry, options)
    executor = None
    for arg in options.overrides:
        if arg.startswith("@"):
            apply_mapping(task, _mapping(arg[1:]))
            continue
        override = parse_override(arg)
        if override.path[0] == EXECUTOR_KEY:
            executor = _executor_override(executor, override)
        else:
            apply_override(task, override)
    return Invocation(task, executor, options)


def _base_task(entry: registry.Entrypoint, options: argparse.Namespace) -> fdl.Buildable:
    if options.factory and options.config:
        raise ConfigError("give either --factory or --config, not both")
    if options.config:
        task = serialize.load_file(options.config)
        if isinstance(task, dict) and entry.read_mapping is not None:
            task = entry.read_mapping(task, command=entry.fn, where=options.config)
        if not isinstance(task, fdl.Buildable) or task.__fn_or_cls__ is not entry.fn:
            name = getattr(getattr(task, "__fn_or_cls__", None), "__qualname__", type(task))
            raise ConfigError(f"{options.config}: describes {name}, not 'optica {entry.name}'")
        return task
    if options.factory:
        return _recipe(entry, options.factory)
    return Partial(entry.fn)


def _recipe(entry: registry.Entrypoint, text: str) -> fdl.Buildable:
    name, args, kwargs = split_call(text)
    recipes = registry.recipes_for(entry.fn)
    if name not in recipes:
        known = ", ".join(sorted(recipes)) or "none registered"
        raise ConfigError(
            f"--factory: unknown recipe '{name}' for 'optica {entry.name}'"
            f"{did_you_mean(name, recipes)} (known: {known})"
        )
    task = call_factory(recipes[name], args, kwargs)
    if not isinstance(task, fdl.Buildable):
        raise ConfigError(
            f"--factory: recipe '{name}' returned {type(task).__name__}, not a config"
        )
    return task


def _mapping(path: str) -> dict[str, Any]:
    loaded = serialize.load_file(path)
    if not isinstance(loaded, dict):
        raise ConfigError(f"@{path}: expected a mapping of overrides at the top")
    return loaded


def _executor_override(executor: Any, override: Override) -> Any:
    """``executor=NAME`` picks an executor factory; ``executor.key=value`` edits it."""
    if len(override.path) > 1 and executor is None:
        raise ConfigError(f"{override.text}: choose an executor first (e.g. executor=local)")
    holder = Partial(_hold, executor=executor)
    apply_override(holder, override)
    if not isinstance(holder.executor, fdl.Buildable):
        raise ConfigError(f"{override.text}: executor must be a config, e.g. executor=local")
    return holder.executor


def _hold(executor: Executor | None = None) -> Executor | None:
    """A one-parameter holder, so executor overrides reuse the override walker and its errors."""
    return executor


def confirm(invocation: Invocation) -> bool:
    """Asks before running when a person is at the terminal and did not pass ``--yes``."""
    if invocation.options.yes or not sys.stdin.isatty():
        return True
    answer = input("Run this? [y/N] ").strip().lower()
    return answer in ("y", "yes")
