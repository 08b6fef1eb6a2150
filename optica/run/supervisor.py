"""``python -m optica.run.supervisor JOB_DIR``: the process every launched job runs under.

The work is :class:`optica.run.supervise.Supervisor`; this module is only the entry point, and
nothing in the package imports it, so ``python -m`` runs it without a double import.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

from optica.run.job import Job
from optica.run.supervise import Supervisor, echo_to, exit_status


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m optica.run.supervisor JOB_DIR", file=sys.stderr)
        return 2
    supervisor = Supervisor(Job(Path(args[0])), echo=echo_to(sys.stdout))
    signal.signal(signal.SIGTERM, supervisor.cancel)
    signal.signal(signal.SIGINT, supervisor.cancel)
    return exit_status(supervisor.run())


if __name__ == "__main__":
    sys.exit(main())
