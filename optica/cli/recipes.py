"""``optica recipes``: one line per registered recipe."""

from __future__ import annotations

import argparse

from optica.run.cli import registry


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    description = "list registered recipes (use with: optica <command> --factory NAME)"
    parser = subparsers.add_parser("recipes", help=description, description=description)
    parser.set_defaults(func=list_recipes)


def list_recipes(args: argparse.Namespace) -> int:
    found = registry.recipes_for()
    if not found:
        print("no recipes registered")
        return 0
    commands = {e.fn: name for name, e in registry.entrypoints().items()}
    rows = [(name, commands[f.target], f.help) for name, f in sorted(found.items())]
    width = max(len(name) for name, _, _ in rows)
    command_width = max(len(command) for _, command, _ in rows)
    for name, command, text in rows:
        print(f"{name.ljust(width)}  optica {command.ljust(command_width)}  {text}")
    return 0
