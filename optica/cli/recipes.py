"""``optica recipes``: one line per registered recipe."""

from __future__ import annotations

import argparse

from optica.run.cli import registry


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    description = "list registered recipes (use with: optica <command> --factory NAME)"
    parser = subparsers.add_parser("recipes", help=description, description=description)
    parser.set_defaults(func=list_recipes)


def list_recipes(args: argparse.Namespace) -> int:
    # NOTE: one name may be a recipe of several commands (``vit_b16`` pretrains and fine-tunes).
    rows = sorted(
        (name, command, recipe.help)
        for command, entry in registry.entrypoints().items()
        for name, recipe in registry.recipes_for(entry.fn).items()
    )
    if not rows:
        print("no recipes registered")
        return 0
    width = max(len(name) for name, _, _ in rows)
    command_width = max(len(command) for _, command, _ in rows)
    for name, command, text in rows:
        print(f"{name.ljust(width)}  optica {command.ljust(command_width)}  {text}")
    return 0
