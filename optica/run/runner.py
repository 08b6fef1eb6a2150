"""``python -m optica.run.runner TASK_JSON [--result PATH]``: what every rank of a launched
Python task runs (see :func:`optica.run.execute.run_task_file`).

Only an entry point: nothing in the package imports it, so ``python -m`` runs it cleanly.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from optica.run.execute import run_task_file
from optica.run.teardown import exit_now_if_gloo_lingers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m optica.run.runner")
    parser.add_argument("task", type=Path, help="a task.json written by optica")
    parser.add_argument("--result", type=Path, help="where rank 0 writes the return value")
    args = parser.parse_args(argv)
    result = args.result or args.task.with_name("result.json")
    code = run_task_file(args.task, result)
    exit_now_if_gloo_lingers(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
