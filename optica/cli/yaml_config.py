"""Seed 000's YAML layout (NeMo's ``trainer`` / ``exp_manager`` / ``model`` / ``optim`` / ``data``
blocks) read into an ``optica finetune|pretrain`` task, so such a file runs as is:

    optica finetune --config examples/shapes_tiny_llava.yaml

``${name}``-style references (OmegaConf's absolute interpolation) resolve first. NeMo keys
that optica derives or ignores by design are accepted: ``trainer.accumulate_grad_batches: 1``
(derived from the batch sizes), ``data.dataloader_type`` (the sampler is always resumable),
``data.is_multimodal`` and ``data.lazy_preprocess``. Any other key optica does not know is one
error line with a did-you-mean. The ``model`` block picks the model by ``preset`` (a registered
model factory, e.g. ``llava_tiny``); its other keys set fields of that model's config.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from typing import Any

from torch import nn

from optica import run
from optica.run.cli import registry
from optica.run.errors import ConfigError, did_you_mean
from optica.train.exp_manager import (
    CheckpointConfig,
    EMAConfig,
    ExpManager,
    RestoreConfig,
    ResumeConfig,
)
from optica.train.optim import OptimizerConfig
from optica.train.schedules import Constant, CosineAnnealing, WarmupPolicy
from optica.train.trainer import TrainerConfig

BLOCKS = ("name", "trainer", "exp_manager", "model", "optim", "data")
SCHEDULES = {
    "WarmupPolicy": WarmupPolicy,
    "CosineAnnealing": CosineAnnealing,
    "ConstantPolicy": Constant,
    "Constant": Constant,
}
PARALLEL_KEYS = (
    "tensor_model_parallel_size",
    "pipeline_model_parallel_size",
    "virtual_pipeline_model_parallel_size",
    "context_parallel_size",
    "sequence_parallel",
)
EXP_MANAGER_KEYS = (
    "exp_dir",
    "name",
    "version",
    "create_wandb_logger",
    "wandb_logger_kwargs",
    "create_tensorboard_logger",
    "create_csv_logger",
    "create_checkpoint_callback",
    "checkpoint_callback_params",
    "ema",
    "resume_if_exists",
    "resume_ignore_no_checkpoint",
    "resume_from_checkpoint",
)
DATA_IGNORED = ("dataloader_type", "is_multimodal", "lazy_preprocess")
IMAGE_DATA_KEYS = (
    "image_folder",
    "conv_template",
    "image_aspect_ratio",
    "image_token_len",
    "system_prompt",
    "on_bad_input",
    "overlong",
)


def is_seed_layout(mapping: Any) -> bool:
    return isinstance(mapping, dict) and "_target_" not in mapping


def seed_task(mapping: dict, *, command: Any, where: str) -> run.Partial:
    """The ``run.Partial(command, ...)`` that a seed-000-layout mapping describes."""
    tree = _resolve(mapping, where)
    _check_keys(tree, BLOCKS, where)
    model_block = dict(tree.get("model") or {})
    batch = {
        k: model_block.pop(k) for k in ("micro_batch_size", "global_batch_size") if k in model_block
    }
    parallel = {k: model_block.pop(k) for k in PARALLEL_KEYS if k in model_block}
    seed = model_block.pop("seed", None)
    restore = model_block.pop("restore_from_path", None)
    model_resume = model_block.pop("resume_from_checkpoint", None)
    log, resume = exp_manager(
        tree.get("exp_manager") or {}, tree.get("name"), f"{where}: exp_manager"
    )
    resume.resume_from_checkpoint = resume.resume_from_checkpoint or model_resume
    if restore:
        resume.restore_config = run.Config(RestoreConfig, path=restore)
    parts = {
        "model": lambda: model(model_block, f"{where}: model"),
        "data": lambda: data(dict(tree.get("data") or {}), batch, f"{where}: data"),
        "trainer": lambda: trainer(
            dict(tree.get("trainer") or {}), parallel, seed, f"{where}: trainer"
        ),
        "log": lambda: log,
        "optim": lambda: optim(tree["optim"], f"{where}: optim") if tree.get("optim") else None,
        "resume": lambda: resume,
    }
    accepted = inspect.signature(command).parameters  # validate takes no optimizer
    return run.Partial(command, **{k: make() for k, make in parts.items() if k in accepted})


_REFERENCE = re.compile(r"\$\{([A-Za-z_][\w.]*)\}")


def _resolve(mapping: dict, where: str) -> dict:
    """Replaces ``${a.b}`` references (OmegaConf's absolute interpolation) by their values: a
    string that is only a reference takes the value itself (``null`` stays None)."""

    def lookup(path: str, seen: tuple[str, ...]) -> Any:
        if path in seen:
            raise ConfigError(f"{where}: '${{{path}}}' refers to itself")
        node: Any = mapping
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                raise ConfigError(f"{where}: '${{{path}}}' refers to a missing key")
            node = node[part]
        return resolve(node, (*seen, path))

    def resolve(value: Any, seen: tuple[str, ...] = ()) -> Any:
        if isinstance(value, dict):
            return {k: resolve(v, seen) for k, v in value.items()}
        if isinstance(value, list):
            return [resolve(v, seen) for v in value]
        if not isinstance(value, str):
            return value
        whole = _REFERENCE.fullmatch(value)
        if whole:
            return lookup(whole[1], seen)
        return _REFERENCE.sub(lambda m: str(lookup(m[1], seen)), value)

    return resolve(mapping)


def _check_keys(block: dict, known, where: str) -> None:
    for key in block:
        if key not in known:
            raise ConfigError(f"{where}: unknown key '{key}'{did_you_mean(key, known)}")


def _fields(cls: type) -> tuple[str, ...]:
    if dataclasses.is_dataclass(cls):
        return tuple(f.name for f in dataclasses.fields(cls))
    return tuple(p for p in inspect.signature(cls).parameters if p not in ("self",))


def config_of(cls: type, block: dict, where: str) -> run.Config:
    _check_keys(block, _fields(cls), where)
    return run.Config(cls, **block)


def trainer(block: dict, parallel: dict, seed: int | None, where: str) -> run.Config:
    if block.get("accumulate_grad_batches") == 1:  # NeMo: "do not modify"; optica derives it
        block.pop("accumulate_grad_batches")
    config = config_of(TrainerConfig, block, where)
    if seed is not None:
        config.seed = seed
    if any(v not in (None, 1, False) for v in parallel.values()):
        from optica.train.strategy import ParallelStrategy

        config.strategy = run.Config(ParallelStrategy, **parallel)
    return config


def exp_manager(block: dict, name: str | None, where: str) -> tuple[run.Config, run.Config]:
    """``(log, resume)`` from the ``exp_manager`` block."""
    _check_keys(block, EXP_MANAGER_KEYS, where)
    log = run.Config(ExpManager, name=block.get("name") or name or "default")
    for key, field in (
        ("exp_dir", "exp_dir"),
        ("version", "version"),
        ("create_wandb_logger", "wandb"),
        ("wandb_logger_kwargs", "wandb_logger_kwargs"),
        ("create_tensorboard_logger", "tensorboard"),
        ("create_csv_logger", "csv"),
    ):
        if block.get(key) is not None:
            setattr(log, field, block[key])
    log.ckpt = checkpoint(block, f"{where}.checkpoint_callback_params")
    ema = dict(block.get("ema") or {})
    if ema.pop("enable", False):
        log.ema = config_of(EMAConfig, ema, f"{where}.ema")
    resume_keys = ("resume_if_exists", "resume_ignore_no_checkpoint", "resume_from_checkpoint")
    resume = run.Config(ResumeConfig, **{k: block[k] for k in resume_keys if k in block})
    return log, resume


def checkpoint(block: dict, where: str) -> run.Config | None:
    if block.get("create_checkpoint_callback") is False:
        return None
    params = dict(block.get("checkpoint_callback_params") or {})
    for key in ("every_n_epochs", "every_n_train_steps"):
        if params.get(key) == 0:  # NeMo's "off"
            params[key] = None
    return config_of(CheckpointConfig, params, where)


def optim(block: dict, where: str) -> run.Config:
    block = dict(block)
    sched = dict(block.pop("sched", None) or {})
    config = config_of(OptimizerConfig, block, where)
    if sched:
        name = sched.pop("name", "WarmupPolicy")
        if name not in SCHEDULES:
            raise ConfigError(
                f"{where}.sched: unknown name '{name}'{did_you_mean(name, SCHEDULES)}"
                f" (known: {', '.join(SCHEDULES)})"
            )
        config.sched = config_of(SCHEDULES[name], sched, f"{where}.sched")
    return config


def _factory(kind: Any, block: dict, where: str) -> tuple[registry.Factory, dict]:
    block = dict(block)
    preset = block.pop("preset", None)
    found = registry.factories_for(kind)
    if preset not in found:
        names = sorted(found)
        hint = did_you_mean(str(preset), names) if preset else ""
        raise ConfigError(
            f"{where}.preset: '{preset}' is not a known preset{hint} (known: {', '.join(names)})"
        )
    return found[preset], block


def _call_preset(factory: registry.Factory, fields: dict, where: str) -> run.Config:
    """Calls the preset's factory with the keys that are its own parameters (they leave
    ``fields``), e.g. ``image_folder``'s ``root``; a required one missing is one error line."""
    params = inspect.signature(factory.fn).parameters
    missing = [n for n, p in params.items() if p.default is p.empty and n not in fields]
    if missing:
        raise ConfigError(f"{where}: preset '{factory.name}' needs {', '.join(missing)}")
    return factory.fn(**{key: fields.pop(key) for key in list(fields) if key in params})


def model(block: dict, where: str) -> run.Config:
    """The preset's model config, with the block's other keys set on its architecture."""
    factory, fields = _factory(nn.Module, block, where)
    config = _call_preset(factory, fields, where)
    architecture = config.config
    known = _fields(architecture.__fn_or_cls__)
    _check_keys(fields, known, where)
    for key, value in fields.items():
        setattr(architecture, key, value)
    return config


def data(block: dict, batch: dict, where: str) -> run.Config:
    """``data_path`` (+ ``tokenizer``): LLaVA conversation files; ``preset``: a registered data
    factory (``shapes``, ``shapes_classification``, ...) whose parameters the other keys set."""
    for key in DATA_IGNORED:
        block.pop(key, None)
    if "data_path" in block:
        return _llava_files(block, batch, where)
    import lightning.pytorch as pl

    factory, fields = _factory(pl.LightningDataModule, block, where)
    config = _call_preset(factory, fields, where)
    _check_keys(fields, _fields(config.__fn_or_cls__), where)
    for key, value in {**fields, **batch}.items():
        setattr(config, key, value)
    return config


def _llava_files(block: dict, batch: dict, where: str) -> run.Config:
    from optica.data.config import ImageDataConfig
    from optica.data.neva import NevaLazyDataModule

    image = {k: block.pop(k) for k in IMAGE_DATA_KEYS if k in block}
    paths = block.pop("data_path")
    _check_keys(block, _fields(NevaLazyDataModule), where)
    return run.Config(
        NevaLazyDataModule,
        paths=paths,
        data_config=run.Config(ImageDataConfig, **image),
        **block,
        **batch,
    )
