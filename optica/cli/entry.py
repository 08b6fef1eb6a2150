"""``optica <entrypoint> ...``: parse, then print, dry-run or run the task."""

from __future__ import annotations

import sys

from optica.run import serialize
from optica.run.cli import registry
from optica.run.cli.command import Invocation, confirm, parse_invocation
from optica.run.config import build


def run_command(entry: registry.Entrypoint, argv: list[str]) -> int:
    invocation = parse_invocation(entry, argv)
    options = invocation.options
    for fmt in ("yaml", "json", "toml"):
        if getattr(options, f"to_{fmt}"):
            print(getattr(serialize, f"to_{fmt}")(invocation.task), end="")
            return 0
    if options.dryrun:
        print(describe(entry, invocation))
        return 0
    if not confirm(invocation):
        print("not run", file=sys.stderr)
        return 1
    from optica.run.api import run

    executor = build(invocation.executor) if invocation.executor is not None else None
    run(invocation.task, executor=executor, direct=executor is None, name=entry.name)
    return 0


def describe(entry: registry.Entrypoint, invocation: Invocation) -> str:
    """The resolved task and where it would run, for ``--dryrun``."""
    if invocation.executor is None:
        text = serialize.to_yaml(invocation.task)
        return f"# dry run: optica {entry.name} would run in this process:\n{text}"
    from optica.run import api

    return api.describe(invocation.task, build(invocation.executor), name=entry.name)
