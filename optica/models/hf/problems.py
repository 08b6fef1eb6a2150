"""Collects everything wrong with a conversion, then reports it as one line.

Per-layer keys are folded (``model.layers.{0-31}.mlp.up_proj.weight``) so that a checkpoint missing
a whole kind of tensor reads as one entry, not thirty-two.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from optica.models.errors import CheckpointError

_INDEX = re.compile(r"\.(\d+)\.")


@dataclass
class Problems:
    """Lists of offending keys, by kind."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    misshaped: list[str] = field(default_factory=list)
    duplicate: list[str] = field(default_factory=list)
    unmapped: list[str] = field(default_factory=list)
    unknown_targets: list[str] = field(default_factory=list)

    def raise_if_any(self, what: str) -> None:
        """Raises one :class:`CheckpointError` naming every problem, if there are any."""
        parts = [
            f"{label}: {', '.join(fold_keys(keys) if fold else keys)}"
            for label, keys, fold in (
                ("missing", self.missing, True),
                ("unexpected", self.unexpected, True),
                ("mis-shaped", self.misshaped, False),
                ("given twice", self.duplicate, False),
                ("no conversion rule for", self.unmapped, True),
                ("rules for tensors the model lacks", self.unknown_targets, True),
            )
            if keys
        ]
        if parts:
            raise CheckpointError(f"{what}: {'; '.join(parts)}")


def fold_keys(keys: list[str]) -> list[str]:
    """Folds keys that differ only in their first number into ``prefix.{0-3,7}.suffix``."""
    groups: dict[str, list[int]] = {}
    for key in keys:
        match = _INDEX.search(key)
        if match is None:
            groups.setdefault(key, [])
            continue
        template = f"{key[: match.start()]}.{{}}.{key[match.end() :]}"
        groups.setdefault(template, []).append(int(match.group(1)))
    return [t.format(_ranges(sorted(n))) if n else t for t, n in groups.items()]


def _ranges(numbers: list[int]) -> str:
    if len(numbers) == 1:
        return str(numbers[0])
    spans: list[list[int]] = []
    for n in numbers:
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    text = ",".join(f"{a}-{b}" if a != b else f"{a}" for a, b in spans)
    return f"{{{text}}}"
