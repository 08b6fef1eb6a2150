"""``optica``: built-in commands (argparse) plus every registered entrypoint (override grammar).

User mistakes print one line (``error: ...``) and exit non-zero; ``--verbose`` shows tracebacks.
"""

from __future__ import annotations

import argparse
import sys

from optica.run.cli import registry
from optica.run.errors import OpticaError, did_you_mean
from optica.run.runtime import apply_process_defaults

_USAGE = "usage: optica <command> [options] [key=value ...]   (optica <command> --help)"


def main(argv: list[str] | None = None) -> int:
    apply_process_defaults()  # before torch is imported: it reads them once
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in argv or "-v" in argv
    try:
        return _dispatch(argv)
    except OpticaError as err:
        if verbose:
            raise
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _dispatch(argv: list[str]) -> int:
    builtins = _builtin_parser()
    if not argv or argv[0] in ("-h", "--help"):
        print(_overview(builtins))
        return 0
    if argv[0] == "--version":
        from importlib.metadata import version

        print(f"optica {version('optica')}")
        return 0
    command = argv[0]
    if command in _subcommands(builtins):
        args = builtins.parse_args(argv)
        return args.func(args)
    entry = _entrypoint(command, builtins)
    from optica.cli.entry import run_command

    return run_command(entry, argv[1:])


def _entrypoint(command: str, builtins: argparse.ArgumentParser) -> registry.Entrypoint:
    commands = registry.entrypoints()
    if command not in commands:
        known = [*_subcommands(builtins), *commands]
        raise OpticaError(f"unknown command '{command}'{did_you_mean(command, known)}. {_USAGE}")
    return commands[command]


def _builtin_parser() -> argparse.ArgumentParser:
    from optica.cli import autoconfig, chat, checkpoint, data, demo, experiment, generate, recipes
    from optica.cli import eval as evaluate

    parser = argparse.ArgumentParser(prog="optica")
    subparsers = parser.add_subparsers(dest="command")
    commands = (autoconfig, chat, checkpoint, data, demo, evaluate, experiment, generate, recipes)
    for command in commands:
        command.add_parser(subparsers)
    for sub in _subcommands(parser).values():
        _accept_verbose(sub)
    return parser


def _accept_verbose(parser: argparse.ArgumentParser) -> None:
    """Every built-in command (and its own sub-commands) takes ``-v/--verbose``, read by main."""
    if not any("--verbose" in action.option_strings for action in parser._actions):
        parser.add_argument("-v", "--verbose", action="store_true", help="show tracebacks")
    for sub in _subcommands(parser).values():
        _accept_verbose(sub)


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _overview(builtins: argparse.ArgumentParser) -> str:
    lines = [_USAGE, "", "commands:"]
    entries = {name: e.help for name, e in registry.entrypoints().items()}
    entries |= {name: p.description or "" for name, p in _subcommands(builtins).items()}
    width = max(map(len, entries), default=0)
    lines += [f"  {name.ljust(width)}  {text}" for name, text in sorted(entries.items())]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
