"""``optica experiment list | status ID | logs ID [--task NAME] | cancel ID``.

Everything is read from ``$OPTICA_HOME/experiments``, so these work from any shell, while the
experiment runs or long after.
"""

from __future__ import annotations

import argparse
from collections import Counter

from rich.console import Console
from rich.table import Table

from optica.run.experiment import Experiment, list_experiments
from optica.run.home import experiments_dir
from optica.run.job import Job


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    description = "list experiments, show their status and logs, cancel them"
    parser = subparsers.add_parser("experiment", help=description, description=description)
    commands = parser.add_subparsers(dest="experiment_command", required=True)
    commands.add_parser("list", help="experiments, newest first").set_defaults(func=list_command)
    status = commands.add_parser("status", help="each task's state and exit code")
    status.add_argument("id", help="experiment id (see: optica experiment list)")
    status.set_defaults(func=status_command)
    logs = commands.add_parser("logs", help="the tasks' output")
    logs.add_argument("id", help="experiment id")
    logs.add_argument("--task", help="only this task's log")
    logs.set_defaults(func=logs_command)
    cancel = commands.add_parser("cancel", help="stop every task that has not ended")
    cancel.add_argument("id", help="experiment id")
    cancel.set_defaults(func=cancel_command)


def list_command(args: argparse.Namespace) -> int:
    infos = list_experiments()
    if not infos:
        print(f"no experiments in {experiments_dir()}")
        return 0
    table = Table("ID", "TITLE", "CREATED", "TASKS", "STATES")
    for info in infos:
        # The recorded states: listing must not import every experiment's task modules.
        states = Counter(str(Job(info.path / name).state()) for name in info.tasks)
        summary = ", ".join(f"{count} {state}" for state, count in sorted(states.items()))
        table.add_row(info.id, info.title, info.created[:19], str(len(info.tasks)), summary)
    _print(table)
    return 0


def status_command(args: argparse.Namespace) -> int:
    experiment = Experiment.from_id(args.id)
    table = Table("TASK", "STATE", "EXIT CODE", "STARTED", "ENDED", "LOG", title=experiment.id)
    for name, state in experiment.status().items():
        job = experiment.job(name)
        status = job.status()
        code = status.get("returncode")
        started, ended = (str(status.get(key) or "")[:19] for key in ("started", "ended"))
        table.add_row(
            name, str(state), "" if code is None else str(code), started, ended, str(job.log_path)
        )
    _print(table)
    return 0


def logs_command(args: argparse.Namespace) -> int:
    print(Experiment.from_id(args.id).logs(args.task), end="")
    return 0


def cancel_command(args: argparse.Namespace) -> int:
    experiment = Experiment.from_id(args.id)
    experiment.cancel()
    for name, state in experiment.status().items():
        print(f"{name}: {state}")
    return 0


def _print(table: Table) -> None:
    # NOTE: a wide console, so ids and paths are not wrapped when output goes to a pipe.
    Console(width=max(Console().width, 200), highlight=False).print(table)
