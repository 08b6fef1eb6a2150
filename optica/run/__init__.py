"""optica.run — describe a job as a config, serialize it, and launch it (seed 003, NeMo-Run).

``from optica import run`` gives the public surface; the implementation lives in the submodules.
"""

# NOTE: never import optica.run.supervisor / runner / driver here: they run as `python -m`.
from optica.run import cli
from optica.run.allowlist import allow_imports
from optica.run.api import RunResult, run
from optica.run.config import Config, Partial, autoconvert, build
from optica.run.errors import ConfigError, OpticaError, TaskFailedError
from optica.run.executors import Executor, LocalExecutor, SlurmExecutor
from optica.run.experiment import Experiment, list_experiments
from optica.run.script import Script
from optica.run.serialize import (
    from_json,
    from_toml,
    from_yaml,
    load_file,
    to_json,
    to_toml,
    to_yaml,
)

__all__ = [
    "Config",
    "ConfigError",
    "Executor",
    "Experiment",
    "LocalExecutor",
    "OpticaError",
    "Partial",
    "RunResult",
    "Script",
    "SlurmExecutor",
    "TaskFailedError",
    "allow_imports",
    "autoconvert",
    "build",
    "cli",
    "from_json",
    "from_toml",
    "from_yaml",
    "list_experiments",
    "load_file",
    "run",
    "to_json",
    "to_toml",
    "to_yaml",
]
