"""What each pipeline stage holds: layers, the extra modules at either end, its parameters, and
how many micro-batches of activations it keeps alive.

Placement follows Megatron/NeMo: the first stage holds the embeddings (and, for a VLM, the vision
encoder and projector); the last holds the final norm and output layer (with tied embeddings and
PP > 1 it keeps its own copy of the embedding matrix). In-flight micro-batches follow the 1F1B
schedule (Narayanan et al. 2021): stage i of p keeps min(p − i, m) of m micro-batches; under the
interleaved schedule with v chunks per stage it keeps 2(p − i − 1) + (v − 1)p + 1 chunk
micro-batches, which for the first stage is the p·(1 + (p − 1)/(p·v)) of Korthikanti et al. 2022.
"""

from __future__ import annotations

from dataclasses import dataclass

from optica.autoconfig import params as P
from optica.autoconfig.layout import Layout
from optica.autoconfig.params import ParamCount
from optica.autoconfig.shapes import ModelShape, TransformerShape
from optica.autoconfig.training import Lora, Training


@dataclass(frozen=True)
class Stage:
    """One pipeline stage (the ranks of one PP index)."""

    index: int
    layers: int
    first: bool
    last: bool
    in_flight: float


@dataclass(frozen=True)
class StageParams:
    """A stage's parameters: ``trainable`` (gradients + optimizer), ``frozen`` (weights only) and
    ``adapters`` (LoRA parameters per rank, trainable)."""

    trainable: ParamCount
    frozen: ParamCount
    adapters: float = 0.0


def in_flight_microbatches(index: int, layout: Layout) -> float:
    """Micro-batches of activations stage ``index`` holds at its peak (module docstring)."""
    p, v, m = layout.pp, layout.vp, layout.num_microbatches
    if v == 1:
        return float(min(p - index, m))
    chunks = 2 * (p - index - 1) + (v - 1) * p + 1
    return min(chunks, m * v) / v


def stages(model: ModelShape, layout: Layout) -> list[Stage]:
    """The first, a middle and the last stage: every stage is like one of these."""
    p = layout.pp
    per_stage = model.backbone.num_layers // p
    picked = sorted({0, min(1, p - 1), p - 1})
    return [
        Stage(i, per_stage, i == 0, i == p - 1, in_flight_microbatches(i, layout)) for i in picked
    ]


def stage_params(model: ModelShape, stage: Stage, training: Training, pp: int) -> StageParams:
    """The parameters of ``stage``, split into trainable and frozen."""
    layers = P.layer_params(model.backbone) * stage.layers
    trained = backbone_trained(model, training)
    trainable, frozen = (layers, ParamCount()) if trained else (ParamCount(), layers)
    if stage.first:
        trainable, frozen = _add_first(model, training, trainable, frozen)
    if stage.last:
        trainable, frozen = _add_last(model, training, trainable, frozen, pp)
    adapters = 0.0
    if training.lora is not None and model.language is not None:
        adapters = lora_layer_params(model.language, training.lora) * stage.layers
    return StageParams(trainable, frozen, adapters)


def lora_layer_params(t: TransformerShape, lora: Lora) -> float:
    """LoRA parameters of one layer: dim·(in + out) per targeted linear layer (and expert)."""
    shapes = lora_target_shapes(t)
    return sum(lora.dim * (i + o) * n for i, o, n in (shapes[m] for m in lora.target_modules))


def lora_target_shapes(t: TransformerShape) -> dict[str, tuple[int, int, int]]:
    """(in, out, copies) of each linear layer LoRA can target (copies: one per expert)."""
    h, d, f = t.hidden_size, t.head_dim, t.ffn_hidden_size
    experts = t.num_experts or 1
    return {
        "linear_qkv": (h, (t.num_attention_heads + 2 * t.kv_heads) * d, 1),
        "linear_proj": (t.num_attention_heads * d, h, 1),
        "linear_fc1": (h, f * (2 if t.gated_mlp else 1), experts),
        "linear_fc2": (f, h, experts),
    }


def backbone_trained(model: ModelShape, training: Training) -> bool:
    """Whether the repeated layers (a language model's, else a ViT's encoder) get gradients."""
    if model.language is not None:
        return training.language_trained()
    return not training.vision_frozen(model.kind)


def _add_first(
    model: ModelShape, training: Training, trainable: ParamCount, frozen: ParamCount
) -> tuple[ParamCount, ParamCount]:
    if model.language is not None:
        embedding = P.embedding_params(model.language)
        if training.language_trained():
            trainable += embedding
        else:
            frozen += embedding
    if model.vision is not None:
        vision = P.vision_embedding_params(model.vision)
        if model.language is not None:  # a VLM: the whole encoder and the projector live here
            vision = P.vision_params(model.vision)
            trainable += P.projector_params(model.projector)  # type: ignore[arg-type]
        if training.vision_frozen(model.kind):
            frozen += vision
        else:
            trainable += vision
    return trainable, frozen


def _add_last(
    model: ModelShape, training: Training, trainable: ParamCount, frozen: ParamCount, pp: int
) -> tuple[ParamCount, ParamCount]:
    if model.language is None:  # a ViT classifier: final norm and head
        norm = ParamCount(replicated=P.norm_params(model.vision))  # type: ignore[arg-type]
        return trainable + norm + P.classifier_params(model), frozen
    head = P.head_params(model.language)
    if model.language.tied_embeddings and pp > 1:
        head += ParamCount(sharded=model.language.vocab_size * model.language.hidden_size)
    if training.language_trained():
        return trainable + head, frozen
    return trainable, frozen + head
