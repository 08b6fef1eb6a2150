"""``export_ckpt``: an optica checkpoint → a directory ``transformers`` loads with
``AutoModel*.from_pretrained``, written atomically.

config.json is the imported one (kept as ``hf_config.json``) overlaid with the architecture, so
token ids and other fields optica does not model come back unchanged; the tokenizer and processor
files are copied back beside it.
"""

from __future__ import annotations

import os
from pathlib import Path

from optica.checkpoint.api import hf_base_config, load, resolve_checkpoint
from optica.checkpoint.assets import copy_assets
from optica.checkpoint.atomic import atomic_directory, is_vacant
from optica.checkpoint.errors import CheckpointError, CheckpointExistsError
from optica.checkpoint.layout import Manifest
from optica.checkpoint.selection import adapter_of
from optica.models import get_family, save_hf
from optica.run.errors import did_you_mean

TARGETS = ("hf",)


def export_ckpt(
    path: str | os.PathLike[str],
    target: str = "hf",
    output_path: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Converts the optica checkpoint at ``path`` to another format.

    Args:
        path: An optica checkpoint directory, or the name it was imported under.
        target: ``"hf"``: Hugging Face (config.json, safetensors, tokenizer / processor files).
        output_path: Default ``<path>/<target>``.
        overwrite: Replace an existing output directory.

    Returns:
        The output directory.
    """
    if target not in TARGETS:
        hint = did_you_mean(target, TARGETS)
        raise CheckpointError(f"unknown export target {target!r}{hint}; supported: hf")
    root = resolve_checkpoint(path)
    dest = Path(output_path).expanduser() if output_path is not None else root / target
    if not overwrite and not is_vacant(dest):
        raise CheckpointExistsError(
            f"{dest} already exists; pass overwrite=True (optica export --overwrite) to replace it"
        )
    manifest = Manifest.read(root)
    adapter_of(get_family(manifest.family))  # fail before loading the weights
    base = hf_base_config(root, manifest)
    model = load(root)
    with atomic_directory(dest, overwrite=overwrite) as tmp:
        save_hf(model, tmp, base_config=_with_dtype(base, manifest.dtype))
        copy_assets(root, tmp, manifest.assets)
    return dest


def _with_dtype(base: dict | None, dtype: str) -> dict | None:
    """``base`` with a transformers-4 ``torch_dtype`` that agrees with the weights (save_hf
    writes ``dtype``, the 5.x spelling)."""
    if base is None or "torch_dtype" not in base or "," in dtype:
        return base
    return {**base, "torch_dtype": dtype}
