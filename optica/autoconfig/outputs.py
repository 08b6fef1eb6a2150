"""What a search leaves on disk: ``candidates.csv``, ``base_config.yaml`` and the top-k configs.

Configs are written with :func:`optica.run.to_yaml` (Hydra dialect) from ``run.Config`` trees of
the shape and layout dataclasses, so ``run.from_yaml`` gives them back and ``run.build`` turns
them into objects. They hold the model shape, the layout, the cluster and the predictions, not a
training recipe: the recipe objects arrive with the training engine, and a runner will build its
recipe from these. Every file is written to a temporary name and renamed, so an interrupted write
never leaves half a file where a good one was.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from pathlib import Path
from typing import Any

from optica import run
from optica.autoconfig.search import Candidate, SearchResult

HEADER = (
    "# optica autoconfig: {what}. Load with optica.run.from_yaml; build with optica.run.build.\n"
)


def as_config(value: Any) -> Any:
    """A dataclass instance as a ``run.Config`` tree (recursively), other values unchanged."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: as_config(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return run.Config(type(value), **fields)
    if isinstance(value, (list, tuple)):
        return type(value)(as_config(v) for v in value)
    if isinstance(value, dict):
        return {k: as_config(v) for k, v in value.items()}
    return value


def candidate_config(result: SearchResult, candidate: Candidate) -> dict[str, Any]:
    """One candidate as a config tree: model, layout, cluster, training and the predictions."""
    return {
        "model": as_config(result.model),
        "layout": as_config(candidate.layout),
        "cluster": as_config(result.cluster),
        "training": as_config(result.training),
        "predicted": {k: v for k, v in candidate.row().items() if k not in _LAYOUT_COLUMNS},
    }


def write_candidates_csv(result: SearchResult, path: Path) -> Path:
    """Every evaluated candidate, one row each, best first."""
    rows = [c.row() for c in result.candidates]
    text = io.StringIO()
    if rows:
        writer = csv.DictWriter(text, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return write_atomic(path, text.getvalue())


def write_base_config(result: SearchResult, path: Path) -> Path:
    """The model shape the search ran on (the seed's "base config")."""
    what = f"base config of {result.model.name}"
    return write_atomic(path, HEADER.format(what=what) + run.to_yaml(as_config(result.model)))


def write_top_k(result: SearchResult, directory: Path, k: int) -> list[Path]:
    """``rank_01.yaml``... for the ``k`` best candidates that fit; older ranks beyond them are
    removed, so the directory never mixes two searches."""
    paths = []
    for candidate in result.top(k):
        what = f"candidate {candidate.rank} of {len(result.candidates)} for {result.model.name}"
        text = HEADER.format(what=what) + run.to_yaml(candidate_config(result, candidate))
        paths.append(write_atomic(directory / f"rank_{candidate.rank:02d}.yaml", text))
    for stale in set(directory.glob("rank_*.yaml")) - set(paths):
        stale.unlink()
    return paths


def write_atomic(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)
    return path


_LAYOUT_COLUMNS = {
    "tp", "pp", "cp", "ep", "vp", "dp", "mbs", "gbs", "act_ckpt_layers", "sequence_parallel",
    "distributed_optimizer",
}  # fmt: skip
