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

from optica.run.errors import ConfigError
from optica.train.parallel.checkpoint import META_FILE, consolidated_model_state

MODEL_CONFIG_FILE = "model.yaml"  # optica.checkpoint.layout's name
DCP_METADATA = ".metadata"  # torch.distributed.checkpoint's index of the tensors
RUN_CHECKPOINTS = "checkpoints"  # a run directory's checkpoints (optica.train.callbacks)


def model_config_text(model) -> str:
    """What a checkpoint directory stores as ``model.yaml`` for ``model``."""
    from optica.checkpoint.layout import config_to_yaml

    return config_to_yaml(model.config)


def is_distributed_checkpoint(path: Path) -> bool:
    """Whether ``path`` is a checkpoint directory written by ``ParallelStrategy`` (any layout)."""
    return (path / META_FILE).is_file() and (path / DCP_METADATA).is_file()


def distributed_checkpoint(path: str | os.PathLike[str]) -> Path | None:
    """The distributed checkpoint ``path`` names: the checkpoint directory itself, or a training
    run directory's latest checkpoint; None when ``path`` is neither (an optica checkpoint, say).

    Raises:
        ConfigError: ``path`` is a run without checkpoints, or its checkpoint is a one-process
            Lightning file (no layout-free tensors and no model config to export from).
    """
    root = Path(path).expanduser()
    if root.is_dir() and is_distributed_checkpoint(root):
        return root
    if root.is_dir() and (root / RUN_CHECKPOINTS).is_dir():
        latest = latest_training_checkpoint(root / RUN_CHECKPOINTS)
        if latest is None:
            raise ConfigError(f"run directory {root} holds no checkpoint yet")
        root = latest
    if root.suffix == ".ckpt" and root.is_file():
        raise ConfigError(
            f"{root} is a one-process Lightning checkpoint file, not a distributed one: train "
            "with trainer.strategy=parallel (any layout, one process included) to export to HF"
        )
    return root if root.is_dir() and is_distributed_checkpoint(root) else None


def latest_training_checkpoint(directory: Path) -> Path | None:
    """``last.ckpt`` if present, else the most recently written ``*.ckpt`` (file or
    directory); the hidden ``.<name>.partial`` of an unfinished save is never one."""
    last = directory / "last.ckpt"
    if last.exists():
        return last
    found = [p for p in directory.glob("*.ckpt") if not p.name.startswith(".")]
    return max(found, key=lambda p: p.stat().st_mtime, default=None)


def export_distributed_to_hf(
    path: str | os.PathLike[str], output_path: str | os.PathLike[str], *, overwrite: bool = False
) -> Path:
    """Writes the model of training checkpoint directory ``path`` (any layout) as a Hugging Face
    checkpoint at ``output_path``, atomically; returns ``output_path``.

    Raises:
        ConfigError: ``path`` is not a distributed checkpoint with a model config, or it holds
            LoRA adapters (merge them first: ``optica.train.peft.merge_lora``).
    """
    from optica.checkpoint.atomic import atomic_directory
    from optica.checkpoint.layout import read_config
    from optica.models import family_for_config, save_hf

    root = Path(path).expanduser()
    if not (root / META_FILE).is_file() or not (root / MODEL_CONFIG_FILE).is_file():
        raise ConfigError(
            f"{root} is not a distributed training checkpoint with a model config "
            f"({META_FILE} and {MODEL_CONFIG_FILE}); optica checkpoints export with optica export"
        )
    state = consolidated_model_state(root)
    adapters = sorted(key for key in state if ".lora_" in key)
    if adapters:
        raise ConfigError(
            f"{root} holds LoRA adapters ({adapters[0]}, ...): merge them into the base weights "
            "before exporting (optica.train.peft.merge_lora)"
        )
    config = read_config(root)
    model = family_for_config(config).build(config).load_weights(state)
    with atomic_directory(Path(output_path).expanduser(), overwrite=overwrite) as tmp:
        save_hf(model, tmp)
    return Path(output_path).expanduser()
