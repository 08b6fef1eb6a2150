"""The non-weight files that travel with a model: tokenizer, image processor, generation config,
chat template, licence and model card.

Rather than a list of known tokenizer file names (which grows with every tokenizer type), every
top-level file of the source is carried except weights, their indexes and config.json (which is
kept apart as ``hf_config.json``). Sub-directories are not carried: in Hugging Face repositories
they hold alternative weight formats (``original/``, ``onnx/``).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from optica.checkpoint.layout import RESERVED

WEIGHT_SUFFIXES = (
    ".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx", ".gguf",
    ".npz", ".tflite", ".ot", ".pkl",
)  # fmt: skip
SKIPPED = frozenset({"config.json", ".gitattributes"}) | RESERVED


def asset_files(source: Path) -> list[str]:
    """Names of the files in ``source`` to carry (links are followed: cache snapshots link to
    blobs)."""
    return sorted(path.name for path in source.iterdir() if path.is_file() and _is_asset(path.name))


def copy_assets(source: Path, dest: Path, names: Iterable[str]) -> list[str]:
    """Copies ``names`` from ``source`` to ``dest`` (contents, not links). Returns the names."""
    copied = []
    for name in names:
        shutil.copyfile(source / name, dest / name)
        copied.append(name)
    return copied


def _is_asset(name: str) -> bool:
    lowered = name.lower()
    if name in SKIPPED or lowered.endswith(".index.json"):
        return False
    return not lowered.endswith(WEIGHT_SUFFIXES)
