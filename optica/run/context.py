"""The task being executed, so what it runs can record the config that described it (the
training loop saves it as ``config.yaml`` in its run directory)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

_current: ContextVar[Any] = ContextVar("optica_current_task", default=None)


def current_task() -> Any:
    """The config of the task being executed, or None outside ``optica.run``."""
    return _current.get()


@contextlib.contextmanager
def running(task: Any) -> Iterator[None]:
    token = _current.set(task)
    try:
        yield
    finally:
        _current.reset(token)
