"""Commands and factories registered for the CLI tests (loaded through OPTICA_PLUGINS)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Literal

import torch

from optica import run


@dataclass
class Model:
    hidden: int = 8
    layers: int = 2
    dtype: torch.dtype = torch.float32


@dataclass
class Optim:
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)


@run.cli.factory
def small() -> run.Config[Model]:
    """A small model."""
    return run.Config(Model, hidden=16)


@run.cli.factory(name="big")
def big_model(layers: int = 24) -> run.Config[Model]:
    """A big model."""
    return run.Config(Model, hidden=1024, layers=layers)


@run.cli.entrypoint
def train(
    model: Model = None,
    optim: Optim = None,
    steps: int = 10,
    tags: list[str] = field(default_factory=list),  # noqa: B008 - any default works here
    mode: Literal["fast", "exact"] = "fast",
    output: str | None = None,
    extra: dict[str, int] | None = None,
) -> dict:
    """Pretend to train: writes what it received to ``output``."""
    result = {
        "hidden": model.hidden if model else None,
        "layers": model.layers if model else None,
        "dtype": str(model.dtype) if model else None,
        "lr": optim.lr if optim else None,
        "betas": list(optim.betas) if optim else None,
        "steps": steps,
        "mode": mode,
        "extra": extra,
        "rank": int(os.environ.get("RANK", "0")),
    }
    if output:
        with open(output, "w") as file:
            json.dump(result, file)
    return result


@run.cli.factory(target=train)
def tiny_train(steps: int = 5) -> run.Partial:
    """A tiny training recipe."""
    return run.Partial(train, model=small(), optim=run.Config(Optim), steps=steps)


@run.cli.entrypoint
def explode(code: int = 3) -> None:
    """Always fails with exit code ``code``."""
    print("about to fail")
    raise SystemExit(code)
