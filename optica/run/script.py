"""``run.Script``: a task that is a command (a script file or an inline snippet), not a config.

An inline script is passed to its entrypoint with ``-c`` (``bash -c "<inline>"``) so nothing needs
to be written before it runs and ``command.json`` records the whole command. For POSIX shells a
``$0`` placeholder is put before the arguments, so ``$1`` is ``args[0]`` exactly as it is for a
script file; other entrypoints (``python -c``) get the arguments directly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from optica.run.errors import ConfigError
from optica.run.serialize import register_value_type

_SHELLS = frozenset({"bash", "sh", "zsh", "dash", "ksh"})


@register_value_type
@dataclass
class Script:
    """A command to run as a task.

    Args:
        path: A script file, run as ``<entrypoint> <path> <args...>``.
        inline: The script's text, run as ``<entrypoint> -c <inline> <args...>``.
        args: Arguments after the script.
        env: Variables added to the task's environment.
        entrypoint: The program that runs the script (``bash``, ``python``, ...).
    """

    path: str | None = None
    inline: str | None = None
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    entrypoint: str = "bash"

    def __post_init__(self) -> None:
        if (self.path is None) == (self.inline is None):
            given = "both" if self.path is not None else "neither"
            raise ConfigError(f"run.Script needs exactly one of path= or inline= ({given} given)")
        self.args = [str(arg) for arg in self.args]
        self.env = {str(key): str(value) for key, value in self.env.items()}

    @property
    def name(self) -> str:
        """A default task name: the script file's stem, or ``script`` for inline scripts."""
        if self.path is None:
            return "script"
        return os.path.splitext(os.path.basename(self.path))[0] or "script"

    def to_command(self) -> list[str]:
        """The argv that runs this script (see the module docstring for inline scripts)."""
        if self.path is not None:
            return [self.entrypoint, self.path, *self.args]
        zeroth = [self.entrypoint] if os.path.basename(self.entrypoint) in _SHELLS else []
        return [self.entrypoint, "-c", self.inline or "", *zeroth, *self.args]
