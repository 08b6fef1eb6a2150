"""Importable task functions for the executor and experiment tests (a launched task must name a
module-level function, since it is loaded again in another process)."""

import sys
import time


def add(a: int = 1, b: int = 2) -> int:
    print(f"adding {a} and {b}")
    return a + b


def exit_with(code: int = 3) -> None:
    print("about to exit")
    sys.exit(code)


def boom(message: str = "boom") -> None:
    print("working...")
    raise RuntimeError(message)


def sleep(seconds: float = 60.0) -> str:
    time.sleep(seconds)
    return "slept"


def make_object(a: int = 1) -> object:
    """Returns something that is not JSON, so the result is stored as its repr."""
    return {1, a}
