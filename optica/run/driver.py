"""``python -m optica.run.driver EXPERIMENT_DIR``: the background loop of a detached sequential
experiment. It runs the tasks one after another exactly as ``Experiment.run(sequential=True)``
does in the foreground, so the order and the stop-at-first-failure rule survive the caller's exit.
On SIGTERM (``Experiment.cancel``) it cancels the running task and marks the rest CANCELLED.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

from optica.run.experiment import Experiment


class Cancelled(BaseException):
    """Raised in the driver's main thread by SIGTERM, to unwind out of a wait."""


def _raise_cancelled(*_signal_args: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one unwind; the cleanup must not be cut
    raise Cancelled


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m optica.run.driver EXPERIMENT_DIR", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _raise_cancelled)
    experiment = Experiment.from_dir(Path(args[0]))
    try:
        experiment.run_sequentially(detach=True)
    except Cancelled:
        return 143
    return 0


if __name__ == "__main__":
    sys.exit(main())
