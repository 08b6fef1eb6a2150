"""Adapter-only checkpoints: the small artifact of a LoRA (or freezing) run, written beside each
full Lightning checkpoint.

    checkpoints/last.ckpt                 # the whole training state: exact resume
    checkpoints/last.adapters/
        adapters.safetensors              # adapter_state_dict(model): adapters + unfrozen params
        adapter_config.json               # the PEFT config, adapted module names, base model

The full checkpoint stays the one to resume from (optimizer state, the frozen base, RNG); the
adapters folder is what to share: with the base model it names (``resume.restore_config``) it
rebuilds the fine-tuned model (:func:`load_adapters`, ``optica.load(base, adapters=...)``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import callbacks as pl_callbacks
from safetensors.torch import load_file, save_file
from torch import nn

from optica.run.errors import ConfigError
from optica.train.peft import Freeze, LoRA, LoRALinear, adapter_state_dict

ADAPTERS_SUFFIX = ".adapters"
ADAPTER_WEIGHTS = "adapters.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
FORMAT = "optica-adapters"
PEFT_KINDS: dict[str, type] = {"lora": LoRA, "freeze": Freeze}


def adapters_path(checkpoint: str | os.PathLike[str]) -> Path:
    """The adapters folder beside a checkpoint: ``x.ckpt`` → ``x.adapters``."""
    path = Path(checkpoint)
    stem = path.name[: -len(".ckpt")] if path.name.endswith(".ckpt") else path.name
    return path.with_name(stem + ADAPTERS_SUFFIX)


def adapted_modules(model: nn.Module) -> list[str]:
    """Names of the layers that carry LoRA adapters."""
    return [name for name, module in model.named_modules() if isinstance(module, LoRALinear)]


def adapter_config(peft: LoRA | Freeze, model: nn.Module, base_model: str | None) -> dict:
    """What ``adapter_config.json`` holds (JSON-ready)."""
    kind = next(name for name, cls in PEFT_KINDS.items() if isinstance(peft, cls))
    return {
        "format": FORMAT,
        "version": 1,
        "peft": {"kind": kind, **dataclasses.asdict(peft)},
        "adapted_modules": adapted_modules(model),
        "base_model": base_model,
        "model_class": type(model).__name__,
    }


def write_adapters(
    model: nn.Module, peft: LoRA | Freeze, directory: Path, *, base_model: str | None = None
) -> Path:
    """Writes ``model``'s adapters (and unfrozen parameters) to ``directory``, atomically (a
    finished folder replaces the previous one; an interrupted write leaves it as it was)."""
    tensors = _full_tensors(adapter_state_dict(model))
    return _write_folder(Path(directory), tensors, adapter_config(peft, model, base_model))


def _write_folder(directory: Path, tensors: dict[str, torch.Tensor], config: dict) -> Path:
    from optica.checkpoint.atomic import atomic_directory

    with atomic_directory(directory, overwrite=True) as tmp:
        save_file(tensors, tmp / ADAPTER_WEIGHTS, metadata={"format": FORMAT})
        (tmp / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    return directory


def _full_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Plain, contiguous CPU tensors; a sharded (DTensor) parameter is gathered first (a
    collective: every rank must call this with the same keys)."""
    out = {}
    for key, tensor in state.items():
        full = tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor
        out[key] = full.detach().to("cpu").contiguous()
    return out


def read_adapter_config(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """``adapter_config.json`` of an adapters folder.

    Raises:
        ConfigError: ``directory`` is not an adapters folder, or its config is unreadable.
    """
    root = Path(directory).expanduser()
    file = root / ADAPTER_CONFIG
    if not file.is_file() or not (root / ADAPTER_WEIGHTS).is_file():
        raise ConfigError(
            f"{root} is not an adapters folder (no {ADAPTER_CONFIG} and {ADAPTER_WEIGHTS}); a "
            f"LoRA run writes one beside each checkpoint: checkpoints/<name>{ADAPTERS_SUFFIX}"
        )
    try:
        config = json.loads(file.read_text())
        config["peft"]["kind"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ConfigError(f"{file} is not an optica adapter config: {err}") from None
    return config


def peft_from_config(config: dict[str, Any]) -> LoRA | Freeze:
    """The :class:`LoRA` / :class:`Freeze` recorded in an adapter config."""
    settings = dict(config["peft"])
    kind = settings.pop("kind")
    if kind not in PEFT_KINDS:
        raise ConfigError(f"adapter config: unknown peft kind {kind!r}; one of {list(PEFT_KINDS)}")
    try:
        return PEFT_KINDS[kind](**settings)
    except TypeError as err:  # a field this version of optica does not have
        raise ConfigError(f"adapter config: {kind} settings do not fit: {err}") from None


def load_adapters(model: nn.Module, directory: str | os.PathLike[str]) -> nn.Module:
    """Applies the adapters folder's PEFT config to ``model`` (the base it was trained from) and
    loads its tensors; returns ``model``, adapters applied (``merge_lora`` folds them in).

    Raises:
        ConfigError: The folder does not fit ``model`` (other adapted layers, names or shapes).
    """
    config = read_adapter_config(directory)
    peft = peft_from_config(config)
    names = peft.apply(model)
    if names != config["adapted_modules"]:
        raise ConfigError(
            f"{directory}: the adapters were trained on {len(config['adapted_modules'])} layers "
            f"({config['adapted_modules'][:1]}...), this model adapts {len(names)} "
            f"({names[:1]}...); load them onto the base model named in {ADAPTER_CONFIG}"
        )
    _load_tensors(model, Path(directory).expanduser() / ADAPTER_WEIGHTS)
    return model


def _load_tensors(model: nn.Module, file: Path) -> None:
    tensors = load_file(file)
    own = model.state_dict()
    unknown = sorted(set(tensors) - set(own))
    misshapen = sorted(k for k in tensors if k in own and own[k].shape != tensors[k].shape)
    if unknown or misshapen:
        bad = (unknown or misshapen)[0]
        raise ConfigError(
            f"{file}: tensor {bad} does not fit {type(model).__name__} "
            f"({'no such parameter' if unknown else 'other shape'}); is this its base model?"
        )
    with torch.no_grad():
        for key, tensor in tensors.items():
            own[key].copy_(tensor)


class ModelCheckpointWithAdapters(pl_callbacks.ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` that, for a run with PEFT (``TrainingModule.peft``), also
    writes :func:`write_adapters` beside every checkpoint it saves and removes it with the
    checkpoint it rotates out (top-k)."""

    def _save_checkpoint(self, trainer: Any, filepath: str) -> None:
        super()._save_checkpoint(trainer, filepath)
        peft = getattr(trainer.lightning_module, "peft", None)
        if peft is None:
            return
        model = trainer.lightning_module.model
        tensors = _full_tensors(adapter_state_dict(model))  # NOTE: on every rank (collective)
        if trainer.is_global_zero:
            config = adapter_config(peft, model, run_base_model())
            _write_folder(adapters_path(filepath), tensors, config)
        trainer.strategy.barrier()

    def _remove_checkpoint(self, trainer: Any, filepath: str) -> None:
        super()._remove_checkpoint(trainer, filepath)
        if trainer.is_global_zero:
            shutil.rmtree(adapters_path(filepath), ignore_errors=True)


def run_base_model() -> str | None:
    """The running task's ``resume.restore_config.path`` (an existing local path made absolute),
    or None: a run from random init has no base to share adapters against."""
    from optica.run.context import current_task

    resume = getattr(current_task(), "resume", None)
    restore = getattr(resume, "restore_config", None)
    path = getattr(restore, "path", None)
    if not isinstance(path, str):
        return None
    local = Path(path).expanduser()
    return str(local.resolve()) if local.exists() else path
