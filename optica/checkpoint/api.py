"""Saving and loading optica checkpoints (layout: :mod:`optica.checkpoint.layout`).

``load`` builds the model on the meta device and adopts the tensors read from the files as its
parameters (``assign``), so a model exists in memory once, never twice.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from optica.checkpoint.assets import asset_files, copy_assets
from optica.checkpoint.atomic import atomic_directory, is_vacant
from optica.checkpoint.errors import CheckpointError, CheckpointExistsError
from optica.checkpoint.layout import (
    CONFIG_FILE,
    HF_CONFIG,
    MANIFEST,
    Manifest,
    config_to_yaml,
    read_config,
)
from optica.checkpoint.sources import SCHEME
from optica.checkpoint.weights import dtype_name, read_weights, write_weights
from optica.models import family_for_model, get_family
from optica.models.vision.resample import grid_resamplers
from optica.run.home import optica_home

StrPath = str | os.PathLike[str]


def load(
    path: StrPath, device: torch.device | str = "cpu", *, adapters: StrPath | None = None
) -> nn.Module:
    """Loads the optica checkpoint at ``path``: the model, its weights on ``device``, eval mode.

    Args:
        path: A checkpoint directory, or the name it was imported under (``org/name`` or
            ``hf://org/name``, looked up in ``$OPTICA_HOME/models``).
        device: Where the weights are read to (straight from the files, no CPU detour).
        adapters: An adapters folder of a LoRA run trained from this base
            (``checkpoints/<name>.adapters``): applied on top of the base weights.
    """
    root = resolve_checkpoint(path)
    manifest = Manifest.read(root)
    config = read_config(root)
    model = get_family(manifest.family).build(config)
    expected = {key: tensor.shape for key, tensor in model.state_dict().items()}
    model.load_weights(read_weights(root, expected, device=device))
    if adapters is not None:
        from optica.train.adapters import load_adapters  # NOTE: Lightning only when asked

        load_adapters(model, adapters)
    return model.eval()


def load_weights_into(model: nn.Module, path: StrPath, device: torch.device | str = "cpu") -> None:
    """Fills a lazy (meta) ``model`` with the weights of the checkpoint at ``path``, in place —
    how training starts from an imported model (``resume.restore_config``). The shapes must fit
    the model, except vision encoders' position tables, which are resampled to the model's patch
    grid (a checkpoint pre-trained at another resolution); a mismatch names the tensor."""
    root = resolve_checkpoint(path)
    expected = {key: tensor.shape for key, tensor in model.state_dict().items()}
    resamplers = grid_resamplers(model, read_config(root))
    model.load_weights(read_weights(root, expected, device=device, resamplers=resamplers))


def save(
    model: nn.Module,
    path: StrPath,
    *,
    overwrite: bool = False,
    carry_from: StrPath | None = None,
    max_shard_bytes: int | None = None,
) -> Path:
    """Writes ``model`` (a materialised model of a registered family) as an optica checkpoint,
    atomically.

    Args:
        model: The model; its ``config`` and ``state_dict()`` are stored.
        path: Output directory.
        overwrite: Replace an existing directory at ``path``.
        carry_from: A checkpoint (optica or Hugging Face) whose HF config.json and tokenizer /
            processor files to carry along, e.g. the one a fine-tuned model started from.
        max_shard_bytes: Split the weights into files of at most this size.
    """
    dest = Path(path).expanduser()
    if not overwrite and not is_vacant(dest):
        raise CheckpointExistsError(f"{dest} already exists; pass overwrite=True to replace it")
    with atomic_directory(dest, overwrite=overwrite) as tmp:
        base = Path(carry_from).expanduser() if carry_from is not None else None
        write_checkpoint(tmp, model, base=base, max_shard_bytes=max_shard_bytes)
    return dest


def write_checkpoint(
    root: Path,
    model: nn.Module,
    *,
    base: Path | None = None,
    source: dict[str, Any] | None = None,
    max_shard_bytes: int | None = None,
) -> Manifest:
    """Writes the checkpoint files into the (empty) directory ``root``, the manifest last."""
    family = family_for_model(model)
    state = model.state_dict()
    if any(tensor.is_meta for tensor in state.values()):
        raise CheckpointError(
            f"{type(model).__name__} has no weights yet (meta device): call init_weights or "
            "load_weights before saving it"
        )
    write_weights(root, state, max_shard_bytes=max_shard_bytes)
    text = config_to_yaml(model.config)
    (root / CONFIG_FILE).write_text(text)
    if config_to_yaml(read_config(root)) != text:  # the format promises a lossless config
        raise CheckpointError(f"{type(model.config).__name__} does not survive serialization")
    hf_config, assets = _carry(base, root)
    manifest = Manifest(
        family=family.name,
        dtype=dtype_name(state),
        num_parameters=sum(p.numel() for p in model.parameters()),
        source=source,
        hf_config=hf_config,
        assets=tuple(assets),
    )
    manifest.write(root)
    return manifest


def resolve_checkpoint(path: StrPath) -> Path:
    """The checkpoint directory ``path`` names (see :func:`load`)."""
    text = os.fspath(path)
    name = text[len(SCHEME) :] if text.startswith(SCHEME) else text
    direct = Path(name).expanduser()
    imported = optica_home() / "models" / name
    for candidate in (direct, imported) if not direct.is_absolute() else (direct,):
        if candidate.is_dir():
            Manifest.read(candidate)  # fails with a clear line if it is not a checkpoint
            return candidate
    looked = direct if direct.is_absolute() else f"{direct.absolute()} and {imported}"
    looks_like_id = not direct.is_absolute() and not name.startswith((".", "~"))
    hint = f"; import it first: optica import {SCHEME}{name}" if looks_like_id else ""
    raise CheckpointError(f"no optica checkpoint {text!r} (looked in {looked}){hint}")


def hf_base_config(root: Path, manifest: Manifest) -> dict[str, Any] | None:
    """The Hugging Face config.json kept in the checkpoint at ``root``, if any."""
    if manifest.hf_config is None:
        return None
    file = root / manifest.hf_config
    try:
        return json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"cannot read {file}: {err}") from None


def _carry(base: Path | None, root: Path) -> tuple[str | None, list[str]]:
    """Copies the HF config and assets of ``base`` (optica or HF checkpoint) into ``root``."""
    if base is None:
        return None, []
    if not base.is_dir():
        raise CheckpointError(f"cannot carry files from {base}: not a directory")
    if (base / MANIFEST).is_file():
        manifest = Manifest.read(base)
        config_file = base / manifest.hf_config if manifest.hf_config else None
        names = list(manifest.assets)
    else:
        config_file = base / "config.json"
        names = asset_files(base)
    if config_file is not None and config_file.is_file():
        (root / HF_CONFIG).write_bytes(config_file.read_bytes())
    hf_config = HF_CONFIG if (root / HF_CONFIG).is_file() else None
    return hf_config, copy_assets(base, root, names)
