"""Bad input: what went wrong with which sample, and the ``error`` / ``skip`` policy.

A training run must never lose data silently: under ``skip`` every dropped sample becomes a
:class:`Problem` that travels with the batch to the main process (DataLoader workers cannot share
counters), where a :class:`DataReport` counts it and prints the total at the end.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from optica.run.errors import ConfigError, OpticaError

Policy = Literal["error", "skip"]
POLICIES = ("error", "skip")


class DataError(OpticaError):
    """The data cannot be read at all (a broken file, an empty data set)."""


class DataConfigError(ConfigError):
    """The data configuration is inconsistent (unknown template, image_token_len mismatch)."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one sample.

    Attributes:
        kind: Short machine-readable reason, e.g. ``missing_image``, ``unknown_role``.
        sample: The sample's ``id`` (or ``file:index`` when it has none).
        where: File and position, or image path, that the message refers to.
        message: What is wrong, for a human.
        skipped: Whether the sample was dropped (``False`` for notes such as truncation).
    """

    kind: str
    sample: str
    where: str
    message: str
    skipped: bool = True

    def __str__(self) -> str:
        return f"{self.where}: sample '{self.sample}': {self.message}"


class BadSampleError(DataError):
    """A single sample is unusable; under policy ``skip`` it is counted and left out."""

    hint = " (on_bad_input='skip' counts and skips such samples)"

    def __init__(self, problem: Problem | str, *more: Problem):
        if isinstance(problem, str):  # DataLoader workers re-raise with the message only
            super().__init__(problem)
            problem = Problem("unknown", "?", "?", problem)
        else:
            super().__init__(f"{problem}{self.hint}")
        self.problem = problem
        self.problems = (problem, *more)


def bad_sample(kind: str, sample: str, where: object, message: str) -> BadSampleError:
    """Shorthand for raising a :class:`BadSampleError` (``where`` is rendered with ``str``)."""
    return BadSampleError(Problem(kind, sample, str(where), message))


def check_policy(policy: str, name: str = "on_bad_input", allowed: Iterable[str] = POLICIES):
    """Raises a one-line :class:`DataConfigError` for a policy value outside ``allowed``."""
    allowed = tuple(allowed)
    if policy not in allowed:
        raise DataConfigError(f"{name}={policy!r}: expected one of {', '.join(allowed)}")


@dataclass
class DataReport:
    """Counts problems by kind and keeps the first few of each as examples."""

    max_examples: int = 3
    counts: Counter = field(default_factory=Counter)
    skipped: int = 0
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, problems: Iterable[Problem]) -> None:
        for problem in problems:
            self.counts[problem.kind] += 1
            self.skipped += int(problem.skipped)
            shown = self.examples.setdefault(problem.kind, [])
            if len(shown) < self.max_examples:
                shown.append(str(problem))

    def summary(self) -> str:
        """One line per kind; empty when nothing went wrong."""
        lines = [f"{count} {kind}" for kind, count in sorted(self.counts.items())]
        if not lines:
            return ""
        examples = [
            f"  e.g. {text}" for kind in sorted(self.examples) for text in self.examples[kind]
        ]
        head = f"data: {self.skipped} sample(s) skipped; " + ", ".join(lines)
        return "\n".join([head, *examples])

    def state_dict(self) -> dict:
        return {"counts": dict(self.counts), "skipped": self.skipped, "examples": self.examples}

    def load_state_dict(self, state: dict) -> None:
        self.counts = Counter(state.get("counts", {}))
        self.skipped = int(state.get("skipped", 0))
        self.examples = {k: list(v) for k, v in state.get("examples", {}).items()}
