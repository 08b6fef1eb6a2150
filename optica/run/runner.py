"""``python -m optica.run.runner TASK_JSON [--result PATH]``: what every rank of a launched
Python task runs (see :func:`optica.run.execute.run_task_file`).

Only an entry point: nothing in the package imports it, so ``python -m`` runs it cleanly.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from optica.run.execute import run_task_file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m optica.run.runner")
    parser.add_argument("task", type=Path, help="a task.json written by optica")
    parser.add_argument("--result", type=Path, help="where rank 0 writes the return value")
    args = parser.parse_args(argv)
    result = args.result or args.task.with_name("result.json")
    return run_task_file(args.task, result)


if __name__ == "__main__":
    sys.exit(main())
