"""``optica chat``: an interactive chat in the terminal, answers streamed as they come.

Lines are questions; ``/image PATH`` attaches an image to the next question, ``/reset`` starts
over, ``/exit`` (or end of input) quits. A mistake in one turn (an image that does not open, a
conversation longer than the context) prints one ``error:`` line and the chat goes on.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from optica.cli.generate import add_model_arguments, add_sampling_arguments

HELP = "commands: /image PATH (attach to the next question), /reset, /exit"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    description = "chat with a checkpoint in the terminal (/image PATH, /reset, /exit)"
    parser = subparsers.add_parser("chat", help=description, description=description)
    add_model_arguments(parser)
    parser.add_argument("--image", action="append", default=[], help="attach to the first turn")
    add_sampling_arguments(parser, max_new_tokens=256)
    parser.set_defaults(func=chat_command)


def chat_command(args: argparse.Namespace) -> int:
    from optica.cli.generate import load_generator, sampling
    from optica.generate.chat import ChatSession

    session = ChatSession(
        load_generator(args), max_new_tokens=args.max_new_tokens, sampling=sampling(args)
    )
    for image in args.image:
        session.attach(image)
    interactive = sys.stdin.isatty()
    if interactive:
        print(HELP)
    run_chat(session, sys.stdin, sys.stdout, prompt="> " if interactive else "")
    return 0


def run_chat(session, lines: TextIO, out: TextIO, *, prompt: str = "") -> None:
    """Reads questions and commands from ``lines`` until ``/exit`` or the end of input."""
    from optica.run.errors import OpticaError

    while True:
        out.write(prompt)
        out.flush()
        line = lines.readline()
        if not line or line.strip() == "/exit":
            return
        try:
            _turn(session, line.strip(), out)
        except OpticaError as err:
            print(f"error: {err}", file=out, flush=True)


def _turn(session, line: str, out: TextIO) -> None:
    if not line:
        return
    if line == "/reset":
        session.reset()
        print("(conversation reset)", file=out, flush=True)
    elif line.startswith("/image"):
        path = line[len("/image") :].strip()
        if not path:
            print("usage: /image PATH", file=out, flush=True)
            return
        session.attach(path)
        print(f"(image attached: {path})", file=out, flush=True)
    elif line.startswith("/"):
        print(f"unknown command {line.split()[0]}; {HELP}", file=out, flush=True)
    else:
        for piece in session.ask(line):
            out.write(piece)
            out.flush()
        out.write("\n")
        out.flush()
