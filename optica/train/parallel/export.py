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


def model_config_text(model) -> str:
    """What a checkpoint directory stores as ``model.yaml`` for ``model``."""
    from optica.checkpoint.layout import config_to_yaml

    return config_to_yaml(model.config)


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
