"""LLaVA's parallel plan: the language model gets the Llama plan, the vision tower the encoders'
(``optica.models.vision.parallelize``), the projector Megatron's MLP split.

* Tensor parallelism shards all three (the vision tower is *not* replicated across TP ranks:
  its heads and MLP must divide TP like the language model's). Sequence parallelism is refused:
  image features are spliced into the full sequence right before the language model.
* Context parallelism splits only the language model's sequence. Every CP rank receives the whole
  batch and encodes all of its images (the vision tower is replicated over CP); the splice runs
  on the whole sequence, which a hook on the language model then pads to a multiple of 2·CP and
  cuts into this rank's load-balanced share (``load_balanced_positions``), dropping the padding
  mask — exact for right-padded rows, whose real tokens never see a later pad under a causal
  mask. ``split_llava_batch`` gives the loss the matching share of the spliced labels.
* Data parallelism: each language and vision layer is its own FSDP/DDP unit; the root (LLaVA)
  holds the embeddings, norms, output layer and projector (the language model's embedding is
  called by LLaVA outside the language model's forward, so the language model cannot be a unit).
* Pipeline parallelism (``optica.models.vlm.llava.pipeline``): the first stage runs the vision
  tower, the projector, the splice and the first language layers; the spliced sequence is padded
  to the language model's ``seq_length`` so every stage sends one shape. Not with CP (refused by
  the strategy) nor SP.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.distributed.device_mesh import DeviceMesh

from optica.autoconfig.shapes import ModelShape, ProjectorShape
from optica.models.language.llama.parallelize import (
    apply_llama_tensor_parallel,
    llama_layers,
    llama_problems,
    llama_shape,
)
from optica.models.modules.parallel import (
    ParallelConfig,
    ParallelPlan,
    apply_activation_checkpointing,
    apply_context_parallel,
    apply_data_parallel,
    compile_layers,
    load_balanced_positions,
)
from optica.models.vision.parallelize import (
    encoder_layers,
    parallelize_encoder_layers,
    vision_shape,
)
from optica.models.vlm.llava.model import LlavaConfig, VisionProjection
from optica.models.vlm.llava.pipeline import (
    LlavaStage,
    llava_pipeline_batch,
    llava_pipeline_stages,
)
from optica.models.vlm.llava.splice import IGNORE_INDEX, expand_labels
from optica.run.errors import ConfigError


def llava_shape(config: LlavaConfig) -> ModelShape:
    """The numbers ``optica.autoconfig.layout`` checks a layout against."""
    vision, language = config.vision_transformer_config, config.language_transformer_config
    return ModelShape(
        name=type(config).__name__,
        language=llama_shape(language).language,
        vision=vision_shape(vision),
        projector=ProjectorShape(vision.hidden_size, language.hidden_size, config.projector_type),
        drop_class_token=config.drop_vision_class_token,
    )


def llava_problems(config: LlavaConfig, sizes: dict[str, int]) -> list[str]:
    """What the generic layout check cannot know about LLaVA."""
    found = llama_problems(config.language_transformer_config, sizes)
    if sizes.get("sp"):
        found.append(
            "sequence_parallel with LLaVA is not supported yet (image features are spliced "
            "into the whole sequence right before the language model); use TP alone"
        )
    return found


def apply_projector_tensor_parallel(projector: VisionProjection, tp: DeviceMesh) -> None:
    """``mlp2x_gelu``: column-parallel then row-parallel (one all-reduce); a single linear
    projector stays replicated."""
    from torch.distributed.tensor.parallel import (
        ColwiseParallel,
        RowwiseParallel,
        parallelize_module,
    )

    if projector.linear_fc2 is not None:
        plan = {"linear_fc1": ColwiseParallel(), "linear_fc2": RowwiseParallel()}
        parallelize_module(projector, tp, plan)


def apply_language_context_parallel(language_model: nn.Module, cp: DeviceMesh) -> None:
    """Cuts the spliced sequence the language model receives into this rank's share (see the
    module docstring); its attention gathers keys and values over ``cp``."""
    attentions = [layer.self_attention for layer in llama_layers(language_model)]
    apply_context_parallel(attentions, cp, language_model.config.sliding_window)

    def keep_share(module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> tuple:
        embeds = kwargs.get("inputs_embeds")
        if embeds is None or args:
            return args, kwargs  # text given as ids: the strategy split it already
        _check_unpacked_right_padded(kwargs)
        seq_len = embeds.shape[1]
        padded = _round_up(seq_len, 2 * cp.size())
        index = load_balanced_positions(padded, cp.get_local_rank(), cp.size(), embeds.device)
        positions = kwargs.get("position_ids")
        if positions is None:
            positions = torch.arange(padded, device=embeds.device).expand(embeds.shape[0], -1)
        kwargs.update(
            inputs_embeds=_pad_sequence(embeds, padded)[:, index],
            position_ids=_pad_sequence(positions, padded)[:, index],
            attention_mask=None,
        )
        return args, kwargs

    language_model.register_forward_pre_hook(keep_share, with_kwargs=True)


def _check_unpacked_right_padded(kwargs: dict[str, Any]) -> None:
    problem = None
    if kwargs.get("packed_seq_params") is not None:
        problem = "packed batches are not supported yet"
    elif kwargs.get("kv_cache") is not None:
        problem = "generation with a KV cache is not supported"
    mask = kwargs.get("attention_mask")
    if mask is not None and (mask.dim() != 2 or bool((mask[:, 1:] > mask[:, :-1]).any())):
        problem = "only right-padded rows are supported (real tokens first, then padding)"
    if problem:
        raise ConfigError(f"context parallelism with LLaVA: {problem}")


def split_llava_batch(
    batch: dict[str, Any], model: nn.Module, rank: int, size: int
) -> dict[str, Any]:
    """This context-parallel rank's loss targets: the labels spliced like the sequence, padded
    and shifted, then cut like the language model's input; inputs stay whole (the model splices
    before cutting). Adds ``next_labels`` and ``loss_denominator``
    (see ``optica.train.parallel.context``)."""
    if "input_ids" not in batch or "labels" not in batch:
        raise ConfigError("context parallelism with LLaVA: batches need input_ids and labels")
    labels = expand_labels(batch["input_ids"], batch["labels"], model.config.num_image_tokens)
    padded = _round_up(labels.shape[1], 2 * size)
    labels = _pad_sequence(labels, padded, IGNORE_INDEX)
    next_labels = torch.cat([labels[:, 1:], torch.full_like(labels[:, :1], IGNORE_INDEX)], 1)
    index = load_balanced_positions(padded, rank, size, labels.device)
    learned = (next_labels != IGNORE_INDEX).sum().clamp(min=1)
    return {**batch, "next_labels": next_labels[:, index], "loss_denominator": learned / size}


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _pad_sequence(values: torch.Tensor, length: int, fill: float = 0) -> torch.Tensor:
    """``values`` [B, T, ...] padded at the end of dim 1 to ``length``."""
    pad = values.new_full((values.shape[0], length - values.shape[1], *values.shape[2:]), fill)
    return torch.cat([values, pad], dim=1)


def parallelize_llava(part: nn.Module, mesh: DeviceMesh, config: ParallelConfig) -> None:
    """Applies the plan to a ``LlavaModel`` or one ``LlavaStage``: TP (language model, vision
    tower, projector) → CP (language model) → activation checkpointing → compile → FSDP or DDP
    over data × context, per layer then at the root."""
    model = part.llava if isinstance(part, LlavaStage) else part
    language = part.language if isinstance(part, LlavaStage) else part.language_model
    language_layers = llama_layers(language)
    vision_layers = encoder_layers(model.vision_model) if model is not None else []
    if mesh["tp"].size() > 1:
        apply_llama_tensor_parallel(language, mesh["tp"], sequence_parallel=False)
        if model is not None:
            apply_projector_tensor_parallel(model.vision_projection, mesh["tp"])
    if mesh["cp"].size() > 1:  # NOTE: never a stage (CP with PP is refused)
        apply_language_context_parallel(language, mesh["cp"])
    parallelize_encoder_layers(vision_layers, mesh, config)  # TP, AC, compile
    apply_activation_checkpointing(language_layers, config)
    if config.compile:
        compile_layers(language_layers)
    apply_data_parallel(part, language_layers + vision_layers, mesh["dp_cp"], config)


PLAN = ParallelPlan(
    shape=llava_shape,
    parallelize=parallelize_llava,
    context_parallel=True,
    problems=llava_problems,
    pads_for_context_parallel=True,
    split_batch=split_llava_batch,
    pipeline_stages=llava_pipeline_stages,
    pipeline_batch=llava_pipeline_batch,
)
