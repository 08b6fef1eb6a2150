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
from optica.checkpoint.layout import MANIFEST, Manifest
from optica.checkpoint.selection import adapter_of
from optica.models import get_family, save_hf
from optica.run.errors import did_you_mean

TARGETS = ("hf",)


def export_ckpt(
    path: str | os.PathLike[str],
    target: str = "hf",
    output_path: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    merge_lora: bool = False,
) -> Path:
    """Converts the optica checkpoint at ``path`` to another format.

    Args:
        path: An optica checkpoint directory, or the name it was imported under; or a
            training checkpoint: a distributed one written under any parallel layout
            (``ParallelStrategy``), a one-process Lightning ``.ckpt`` of a run with its
            ``config.yaml``, or a run directory (its latest checkpoint).
        target: ``"hf"``: Hugging Face (config.json, safetensors, tokenizer / processor files).
        output_path: Default ``<path>/<target>``.
        overwrite: Replace an existing output directory.
        merge_lora: A LoRA run's checkpoint: fold the adapters into the base weights (a
            checkpoint with adapters exports only so).

    Returns:
        The output directory.
    """
    if target not in TARGETS:
        hint = did_you_mean(target, TARGETS)
        raise CheckpointError(f"unknown export target {target!r}{hint}; supported: hf")
    training = _training_checkpoint(path)
    if training is not None:
        default = Path(path).expanduser() / target
        return _export_training(training, default, output_path, overwrite, merge_lora)
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


def _training_checkpoint(path: str | os.PathLike[str]) -> Path | None:
    """The training checkpoint ``path`` names (itself, or a run directory's latest),
    None for an optica checkpoint or an imported name; a local path that is neither fails in
    one line."""
    local = Path(path).expanduser()
    if not local.exists() or (local / MANIFEST).is_file():
        return None
    # NOTE: imported here: optica.train (and Lightning) load only for training checkpoints.
    from optica.train.parallel.export import training_checkpoint

    found = training_checkpoint(local)
    if found is None:
        hf = (local / "config.json").is_file()
        hint = "; it looks like a Hugging Face checkpoint: optica import it" if hf else ""
        raise CheckpointError(
            f"{local} is not an optica checkpoint (no {MANIFEST}), a distributed training "
            f"checkpoint (no meta.pt and .metadata) or a run directory (no checkpoints/){hint}"
        )
    return found


def _export_training(
    checkpoint: Path,
    default: Path,
    output_path: str | os.PathLike[str] | None,
    overwrite: bool,
    merge_lora: bool,
) -> Path:
    from optica.train.parallel.export import export_training_to_hf

    dest = Path(output_path).expanduser() if output_path is not None else default
    if not overwrite and not is_vacant(dest):
        raise CheckpointExistsError(
            f"{dest} already exists; pass overwrite=True (optica export --overwrite) to replace it"
        )
    return export_training_to_hf(checkpoint, dest, overwrite=overwrite, merge_lora=merge_lora)


def _with_dtype(base: dict | None, dtype: str) -> dict | None:
    """``base`` with a transformers-4 ``torch_dtype`` that agrees with the weights (save_hf
    writes ``dtype``, the 5.x spelling)."""
    if base is None or "torch_dtype" not in base or "," in dtype:
        return base
    return {**base, "torch_dtype": dtype}
