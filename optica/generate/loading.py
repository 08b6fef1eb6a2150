"""Where a model to generate with comes from, and what travels with it.

Three sources, each giving the model, its tokenizer, its prompt template and its image processor:

* an optica checkpoint (``optica import`` / ``optica.checkpoint.save``): tokenizer and image
  settings (``preprocessor_config.json``, or ``processor_config.json``'s ``image_processor``)
  from its files; the template from ``optica_prompt.json`` (written by
  :func:`write_prompt_format`), else the processor's chat template (an imported llava-hf
  checkpoint's, see ``processor_template``), else the tokenizer's ``chat_template``; with none
  of these, generating asks for a template (one line) rather than guessing one;
* a training run (its directory, or one ``.ckpt`` in it): the model, the data (tokenizer,
  template, system prompt, image processor) and the LoRA settings are rebuilt from the run's
  ``config.yaml``, the weights read from the checkpoint — adapters applied, or merged into the
  base weights with ``merge_lora=True``;
* a model object, with the tokenizer (and template) given alongside.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from optica.generate.errors import GenerationError

PROMPT_FILE = "optica_prompt.json"
RUN_CONFIG = "config.yaml"


@dataclass
class Loaded:
    """A model and what it needs to read prompts and images."""

    model: nn.Module
    tokenizer: Any
    template: Any = None  # a template object, a built-in name, "raw", or None (the default)
    system_prompt: str | None = None
    image_processor: Any = None


def write_prompt_format(
    checkpoint: str | os.PathLike[str], conv_template: str, system_prompt: str | None = None
) -> Path:
    """Records in a checkpoint directory how its model was prompted in training (a built-in
    template name and system prompt), so generation asks it the same way by default."""
    from optica.data.templates import get_template

    get_template(conv_template)  # a wrong name fails now, not at generation time
    file = Path(checkpoint) / PROMPT_FILE
    body = {"conv_template": conv_template, "system_prompt": system_prompt}
    file.write_text(json.dumps(body, indent=2) + "\n")
    return file


def load_source(source: Any, *, device: str | torch.device = "cpu", merge_lora: bool = False):
    """Loads ``source`` (a path or name; see the module docstring) → :class:`Loaded`."""
    if isinstance(source, nn.Module):
        return Loaded(source.eval(), tokenizer=None, template=None)
    path = Path(os.fspath(source)).expanduser()
    if path.is_file() and path.suffix == ".ckpt":
        return load_run(path.parent.parent, path, device=device, merge_lora=merge_lora)
    if path.is_dir() and (path / RUN_CONFIG).is_file() and (path / "checkpoints").is_dir():
        return load_run(path, None, device=device, merge_lora=merge_lora)
    return load_checkpoint(source, device=device)


def load_checkpoint(source: Any, *, device: str | torch.device) -> Loaded:
    """An optica checkpoint directory or imported name."""
    from optica.checkpoint import load, resolve_checkpoint

    root = resolve_checkpoint(source)
    model = load(root, device=device)
    tokenizer = _checkpoint_tokenizer(root)
    template, system = _checkpoint_prompt(root, tokenizer)
    processor = _checkpoint_processor(root, model)
    return Loaded(model, tokenizer, template, system, processor)


def _checkpoint_tokenizer(root: Path):
    from optica.data.build import load_tokenizer
    from optica.run.errors import OpticaError

    if not any((root / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json")):
        raise GenerationError(
            f"{root} has no tokenizer files (tokenizer.json); save the tokenizer into the "
            "checkpoint (tokenizer.save_pretrained) or pass tokenizer=..."
        )
    try:
        return load_tokenizer(root)
    except OpticaError as err:
        raise GenerationError(str(err)) from None


@dataclass(frozen=True)
class MissingTemplate:
    """Stands for "this checkpoint names no template": an error once a template is needed and
    none was given (a guessed template would answer plausibly but wrongly)."""

    where: Path

    def error(self) -> GenerationError:
        return GenerationError(
            f"{self.where} has no conversation template (no {PROMPT_FILE}, processor "
            "chat_template.json/.jinja or tokenizer chat_template); pick one with --conv-template "
            "(v1 for LLaVA-1.5, llama_3, mistral, chatml, ...; raw sends prompts as they are) or "
            "template= in Python"
        )


def _checkpoint_prompt(root: Path, tokenizer) -> tuple[Any, str | None]:
    """The template (and system prompt) the checkpoint names; see the module docstring."""
    from optica.generate.processor_template import read_processor_template

    file = root / PROMPT_FILE
    if not file.is_file():
        processor_template = read_processor_template(root, tokenizer)
        if processor_template is not None:
            return processor_template, None
        has_own = bool(getattr(tokenizer, "chat_template", None))
        return (None if has_own else MissingTemplate(root)), None
    try:
        body = json.loads(file.read_text())
        return body["conv_template"], body.get("system_prompt")
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise GenerationError(f"{file} is not a prompt format file: {err}") from None


def _checkpoint_processor(root: Path, model: nn.Module):
    from optica.data.images import ImageProcessor, clip_processor

    file = root / "preprocessor_config.json"
    # transformers 5 keeps them in processor_config.json
    nested = _processor_config(root).get("image_processor")
    settings = _read_json(file) if file.is_file() else nested
    if isinstance(settings, dict):
        return ImageProcessor.from_hf(settings, aspect_ratio=hf_aspect_ratio(settings))
    vision = getattr(model.config, "vision_transformer_config", None)
    size = getattr(vision, "image_size", None)
    return clip_processor(size) if isinstance(size, int) else None


def hf_aspect_ratio(settings: dict) -> str:
    """How a Hugging Face image processor with these settings fits an image to its size: CLIP's
    shortest-edge resize then centre crop is ``crop``; LlavaImageProcessor's ``do_pad``
    (LLaVA-1.5's expand-to-square) is ``pad``; a fixed height and width is ``square``."""
    if settings.get("do_pad"):
        return "pad"
    size = settings.get("size")
    shortest = isinstance(size, dict) and "shortest_edge" in size
    return "crop" if shortest and settings.get("do_center_crop") else "square"


def _processor_config(root: Path) -> dict:
    from optica.generate.processor_template import PROCESSOR_CONFIG

    file = root / PROCESSOR_CONFIG
    settings = _read_json(file) if file.is_file() else {}
    return settings if isinstance(settings, dict) else {}


def _read_json(file: Path) -> Any:
    try:
        return json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise GenerationError(f"cannot read {file}: {err}") from None


def load_run(
    run_dir: Path, ckpt: Path | None, *, device: str | torch.device, merge_lora: bool
) -> Loaded:
    """A training run: rebuilds its model (with adapters), data and weights."""
    from optica.train.exp_manager import latest_checkpoint

    task = _run_task(run_dir)
    ckpt = ckpt or latest_checkpoint(run_dir / "checkpoints")
    if ckpt is None:
        raise GenerationError(f"{run_dir / 'checkpoints'} holds no .ckpt yet")
    model = _built(task, "model", run_dir)
    peft = _built(task, "peft", run_dir, required=False)
    if peft is not None:
        peft.apply(model)
    model.load_weights(_lightning_weights(ckpt, device))
    if peft is not None and merge_lora:
        from optica.train.peft import merge_lora as merge

        merge(model)
    data = _built(task, "data", run_dir)
    encoder = getattr(data, "encoder", None)
    return Loaded(
        model.eval(),
        tokenizer=getattr(data, "tokenizer", None),
        template=getattr(encoder, "template", None),
        system_prompt=getattr(encoder, "system_prompt", None),
        image_processor=getattr(data, "image_processor", None),
    )


def _run_task(run_dir: Path):
    from optica import run
    from optica.run.errors import OpticaError

    file = run_dir / RUN_CONFIG
    try:
        return run.load_file(file)
    except OpticaError as err:
        raise GenerationError(f"cannot rebuild the run from {file}: {err}") from None


def _built(task: Any, name: str, run_dir: Path, *, required: bool = True):
    from optica import run

    value = getattr(task, name, None)
    if value is None and required:
        raise GenerationError(f"{run_dir / RUN_CONFIG} has no '{name}' to rebuild")
    return run.build(value) if value is not None and hasattr(value, "__fn_or_cls__") else value


def _lightning_weights(ckpt: Path, device: str | torch.device) -> dict[str, torch.Tensor]:
    """The model's tensors from a Lightning checkpoint (``state_dict`` keys ``model.<name>``)."""
    try:
        state = torch.load(ckpt, map_location=device, weights_only=False)["state_dict"]
    except (OSError, RuntimeError, KeyError, EOFError) as err:
        raise GenerationError(f"cannot read {ckpt}: {err}") from None
    prefix = "model."
    return {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}
