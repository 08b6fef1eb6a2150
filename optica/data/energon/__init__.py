"""Sharded web-scale data: the Energon / WebDataset layout, read with megatron-energon.

Seed 001's "Energon data loader"; SPEC §3. ``optica data convert`` turns LLaVA JSON into shards
(:mod:`~optica.data.energon.convert`), :class:`EnergonMultiModalDataModule` reads them (or any
``energon prepare``-d VQA, captioning, interleaved or similarity-interleaved dataset) through
:class:`MultiModalTaskEncoder` into the same batches as the JSON path.

megatron-energon is an optional dependency (``pip install 'optica[energon]'``): it is imported
only when shards are prepared or read, and its absence is one clear line.
"""

from __future__ import annotations

import importlib
import importlib.util

from optica.data.errors import DataConfigError

_LAZY = {
    "EnergonMultiModalDataModule": "optica.data.energon.module",
    "EnergonDataModule": "optica.data.energon.module",
    "MultiModalTaskEncoder": "optica.data.energon.task_encoder",
    "convert_llava": "optica.data.energon.convert",
    "ConversionReport": "optica.data.energon.convert",
    "prepare_shards": "optica.data.energon.prepare",
    "default_encoders": "optica.data.energon.samples",
}


def require_energon() -> None:
    """Raises a one-line :class:`DataConfigError` when megatron-energon is not installed."""
    if importlib.util.find_spec("megatron") is None or (
        importlib.util.find_spec("megatron.energon") is None
    ):
        raise DataConfigError(
            "Energon shards need megatron-energon, which is not installed: "
            "pip install 'optica[energon]' (or megatron-energon>=7)"
        )


def __getattr__(name: str):
    if name in _LAZY:
        if _LAZY[name] in ("optica.data.energon.module", "optica.data.energon.task_encoder"):
            require_energon()
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'optica.data.energon' has no attribute {name!r}")


__all__ = [*_LAZY, "require_energon"]
