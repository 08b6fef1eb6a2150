"""optica: configure, train, fine-tune, serve and size vision-language models and ViTs.

The top-level functions are imported on first use (PEP 562), so ``import optica`` and
``from optica import run`` stay fast and do not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from optica.checkpoint import export_ckpt, import_ckpt, load
    from optica.generate import generate
    from optica.train.api import finetune, pretrain, validate

# Public name → the module that defines it.
_LAZY = {
    "import_ckpt": "optica.checkpoint",
    "export_ckpt": "optica.checkpoint",
    "load": "optica.checkpoint",
    "generate": "optica.generate",
    "finetune": "optica.train.api",
    "pretrain": "optica.train.api",
    "validate": "optica.train.api",
}

__all__ = ["export_ckpt", "finetune", "generate", "import_ckpt", "load", "pretrain", "validate"]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'optica' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
