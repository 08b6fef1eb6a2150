"""Hugging Face export of a training checkpoint written under any parallel layout.

``ParallelStrategy`` stores the model's config (``model.yaml``, the same file an optica
checkpoint holds) beside the tensors of each checkpoint directory, so a checkpoint describes
itself: the export rebuilds the model from it, fills it with the consolidated weights (TP shards,
FSDP shards and pipeline stages read back as one state dict, in one process) and writes it with
the family's Hugging Face adapter.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from optica.run.errors import ConfigError
from optica.train.parallel.checkpoint import META_FILE, consolidated_model_state

MODEL_CONFIG_FILE = "model.yaml"  # optica.checkpoint.layout's name
DCP_METADATA = ".metadata"  # torch.distributed.checkpoint's index of the tensors
RUN_CHECKPOINTS = "checkpoints"  # a run directory's checkpoints (optica.train.callbacks)
RUN_CONFIG = "config.yaml"  # the task a run was launched with (optica.train.api)


def model_config_text(model) -> str:
    """What a checkpoint directory stores as ``model.yaml`` for ``model``."""
    from optica.checkpoint.layout import config_to_yaml

    return config_to_yaml(model.config)


def is_distributed_checkpoint(path: Path) -> bool:
    """Whether ``path`` is a checkpoint directory written by ``ParallelStrategy`` (any layout)."""
    return (path / META_FILE).is_file() and (path / DCP_METADATA).is_file()


def training_checkpoint(path: str | os.PathLike[str]) -> Path | None:
    """The training checkpoint ``path`` names: a distributed checkpoint directory, a one-process
    Lightning ``.ckpt`` file, or a run directory's latest of either; None when ``path`` is none
    of these (an optica checkpoint, say).

    Raises:
        ConfigError: ``path`` is a run directory without checkpoints.
    """
    from optica.train.exp_manager import latest_checkpoint

    root = Path(path).expanduser()
    if root.is_dir() and (root / RUN_CHECKPOINTS).is_dir() and not is_distributed_checkpoint(root):
        latest = latest_checkpoint(root / RUN_CHECKPOINTS)
        if latest is None:
            raise ConfigError(f"run directory {root} holds no checkpoint yet")
        root = latest
    if root.is_file() and root.suffix == ".ckpt":
        return root
    return root if root.is_dir() and is_distributed_checkpoint(root) else None


def export_training_to_hf(
    path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    merge_lora: bool = False,
) -> Path:
    """Writes the model of a training checkpoint (:func:`training_checkpoint`'s answer) as a
    Hugging Face checkpoint at ``output_path``; returns ``output_path``. ``merge_lora``: fold
    the LoRA adapters of a LoRA run into the base weights (settings from the run's
    ``config.yaml``) — a checkpoint with adapters exports only so."""
    root = Path(path).expanduser()
    if root.is_dir():
        return export_distributed_to_hf(
            root, output_path, overwrite=overwrite, merge_lora=merge_lora
        )
    config, state = _lightning_file_model(root)
    peft = _run_peft(root, state, merge_lora)
    return _write_hf(root, config, state, Path(output_path).expanduser(), overwrite, peft)


def _lightning_file_model(ckpt: Path) -> tuple[Any, dict[str, torch.Tensor]]:
    """(model config, weights) of a one-process Lightning checkpoint: the config from its run's
    ``config.yaml`` (``<run>/checkpoints/<name>.ckpt``), the weights from the file."""
    file, built = _run_setting(ckpt, "model")
    if built is None:
        raise ConfigError(
            f"{ckpt} is a one-process Lightning checkpoint and {file} has no model to rebuild "
            "it with (runs launched by optica finetune/pretrain or run.run write one)"
        )
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    except (OSError, RuntimeError, KeyError, EOFError) as err:
        raise ConfigError(f"cannot read {ckpt} as a Lightning checkpoint: {err}") from None
    prefix = "model."
    return built.config, {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def export_distributed_to_hf(
    path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    merge_lora: bool = False,
) -> Path:
    """Writes the model of training checkpoint directory ``path`` (any layout) as a Hugging Face
    checkpoint at ``output_path``, atomically; returns ``output_path``.

    Raises:
        ConfigError: ``path`` is not a distributed checkpoint with a model config, or it holds
            LoRA adapters and ``merge_lora`` is false (or its run has no LoRA config).
    """
    from optica.checkpoint.layout import read_config

    root = Path(path).expanduser()
    if not (root / META_FILE).is_file() or not (root / MODEL_CONFIG_FILE).is_file():
        raise ConfigError(
            f"{root} is not a distributed training checkpoint with a model config "
            f"({META_FILE} and {MODEL_CONFIG_FILE}); optica checkpoints export with optica export"
        )
    state = consolidated_model_state(root)
    peft = _run_peft(root, state, merge_lora)
    dest = Path(output_path).expanduser()
    return _write_hf(root, read_config(root), state, dest, overwrite, peft)


def _run_peft(ckpt: Path, state: dict[str, torch.Tensor], merge_lora: bool) -> Any:
    """The LoRA config to merge ``state``'s adapters with: the ``peft`` of the run's
    ``config.yaml`` (``<run>/checkpoints/<ckpt>``); None when there is nothing to merge.

    Raises:
        ConfigError: Adapters without ``merge_lora``, or a run config without LoRA settings.
    """
    adapters = sorted(key for key in state if ".lora_" in key)
    if not adapters:
        return None
    if not merge_lora:
        raise ConfigError(
            f"{ckpt} holds LoRA adapters ({adapters[0]}, ...): export with --merge-lora "
            "(export_ckpt(..., merge_lora=True)) to fold them into the base weights"
        )
    file, peft = _run_setting(ckpt, "peft")
    if peft is None:
        raise ConfigError(
            f"{ckpt} holds LoRA adapters but {file} has no peft settings to merge them with"
        )
    return peft


def _run_setting(ckpt: Path, name: str) -> tuple[Path, Any]:
    """(the run's ``config.yaml`` beside ``<run>/checkpoints/<ckpt>``, its task's ``name`` built),
    the setting None when the file or the setting is missing."""
    from optica import run

    file = ckpt.parent.parent / RUN_CONFIG
    task = run.load_file(file) if file.is_file() else None
    value = getattr(task, name, None)
    return file, run.build(value) if hasattr(value, "__fn_or_cls__") else value


def _write_hf(
    source: Path,
    config: Any,
    state: dict[str, torch.Tensor],
    dest: Path,
    overwrite: bool,
    peft: Any = None,
) -> Path:
    """The model of ``config`` with ``state`` written as Hugging Face files at ``dest``; with
    ``peft`` (a LoRA run), its adapters merged into the base weights first."""
    from optica.checkpoint.atomic import atomic_directory
    from optica.models import family_for_config, save_hf
    from optica.train.peft import merge_lora

    model = family_for_config(config).build(config)
    if peft is not None:
        peft.apply(model)
    model.load_weights(state)
    if peft is not None:
        merge_lora(model)
    with atomic_directory(dest, overwrite=overwrite) as tmp:
        save_hf(model, tmp)
    return dest
