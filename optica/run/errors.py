"""Errors a user can cause. Each renders as one clear line (what, where, a hint); the CLI prints
``str(error)`` and exits non-zero without a traceback unless ``--verbose``."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class OpticaError(Exception):
    """Base for user-facing errors: the message is the whole story, no traceback needed."""

    exit_code = 2


class ConfigError(OpticaError, ValueError):
    """A configuration is wrong: unknown parameter, bad value, unreadable file."""


class UnknownParameterError(ConfigError, AttributeError):
    """A parameter name that the configured function or class does not accept."""


class ImportNotAllowedError(ConfigError):
    """A config file names a target outside the import allowlist."""


class TaskFailedError(OpticaError, RuntimeError):
    """A launched task ended with a non-zero exit code (or was cancelled)."""

    exit_code = 1  # what the CLI exits with

    def __init__(self, message: str, *, returncode: int | None = None, log_tail: str = ""):
        super().__init__(message)
        self.returncode = returncode  # the task's own exit code
        self.log_tail = log_tail


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """Returns ``"; did you mean 'x'?"`` for the closest candidate, or ``""`` when none is close."""
    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean '{matches[0]}'?" if matches else ""
