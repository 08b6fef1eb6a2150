"""Where optica keeps what outlives a process: experiments, their tasks, logs and results."""

from __future__ import annotations

import os
from pathlib import Path


def optica_home() -> Path:
    """``$OPTICA_HOME`` if set (tests and shared clusters point elsewhere), else ``~/.optica``."""
    configured = os.environ.get("OPTICA_HOME")
    return Path(configured).expanduser() if configured else Path.home() / ".optica"


def experiments_dir() -> Path:
    """The folder holding one sub-folder per experiment (``<title>_<YYYYmmdd_HHMMSS>``)."""
    return optica_home() / "experiments"
