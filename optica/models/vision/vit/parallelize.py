"""The ViT classifier's parallel plan: the encoder's (``optica.models.vision.parallelize``: TP
over the layers, CP over the patch sequence, activation checkpointing, compile) with the head
replicated (``num_classes`` outputs are too few to split), then FSDP or DDP.

Pipeline parallelism cuts the encoder layers evenly: the first stage also embeds the images
(patches, class token, positions), the last one also runs the final norm, the pooling and the
head. Images have one size, so every stage sends ``[micro-batch, seq_length, hidden]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.distributed.device_mesh import DeviceMesh

from optica.autoconfig.shapes import ModelShape
from optica.models.modules.parallel import ParallelConfig, ParallelPlan, apply_data_parallel
from optica.models.vision.parallelize import (
    encoder_layers,
    encoder_problems,
    parallelize_encoder_layers,
    vision_shape,
    whole_batch,
)
from optica.models.vision.vit.model import ViTClassificationModel, ViTConfig


def vit_shape(config: ViTConfig) -> ModelShape:
    """The numbers ``optica.autoconfig.layout`` checks a layout against."""
    return ModelShape(
        name=type(config).__name__, vision=vision_shape(config), num_classes=config.num_classes
    )


class ViTStage(nn.Module):
    """One pipeline stage of a ViT classifier; shares its modules with the (pruned) model, whose
    state dict keeps the original parameter names.

    Args:
        model: The classifier (pruned to this rank's stages afterwards).
        layers: This stage's encoder layers.
        first: Whether the stage embeds the images.
        last: Whether the stage ends in the head.
    """

    def __init__(self, model: ViTClassificationModel, layers: list[nn.Module], first: bool,
                 last: bool) -> None:  # fmt: skip
        super().__init__()
        self.config = model.config
        self.backbone = model.backbone if first else None  # its embeddings, for ``embed``
        self.layers = nn.ModuleList(layers)
        backbone = model.backbone
        self.final_layernorm = backbone.decoder.final_layernorm if last else None
        self.ln_post = backbone.ln_post if last else None
        self.head = model.head if last else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images [B, C, H, W] (first stage) or hidden states [B, T, hidden] → the next stage's
        hidden states, or logits [B, num_classes] (last stage)."""
        hidden = self.backbone.embed(x) if self.backbone is not None else x
        for layer in self.layers:
            hidden = layer(hidden)
        if self.head is None:
            return hidden
        if self.final_layernorm is not None:
            hidden = self.final_layernorm(hidden)
        # NOTE: pooled by the config, not by ``class_token``: later stages do not hold it.
        pooled = hidden[:, 0] if self.config.add_class_token else hidden.mean(dim=1)
        return self.head(pooled if self.ln_post is None else self.ln_post(pooled))


def vit_pipeline_stages(
    model: ViTClassificationModel, stage_ids: Sequence[int], num_stages: int
) -> list[ViTStage]:
    """Splits the encoder layers evenly into ``num_stages`` and keeps, in ``model``, only what the
    stages ``stage_ids`` run (the layers stay under their names ``decoder.layers.<i>``)."""
    backbone = model.backbone
    layers = encoder_layers(backbone)
    per_stage = len(layers) // num_stages
    owned = {s: range(s * per_stage, (s + 1) * per_stage) for s in stage_ids}
    last = num_stages - 1
    stages = [ViTStage(model, [layers[i] for i in owned[s]], s == 0, s == last) for s in stage_ids]
    kept = sorted(i for ids in owned.values() for i in ids)
    backbone.decoder.layers = nn.ModuleDict({str(i): layers[i] for i in kept})
    if 0 not in stage_ids:
        backbone.patch_embed = backbone.position_embeddings = backbone.ln_pre = None
        backbone.class_token = None
    if last not in stage_ids:
        backbone.decoder.final_layernorm = backbone.ln_post = model.head = None
    return stages


def parallelize_vit(part: nn.Module, mesh: DeviceMesh, config: ParallelConfig) -> None:
    """Applies the plan to a ``ViTClassificationModel`` or one ``ViTStage``: the encoder layers'
    TP → CP → activation checkpointing → compile, then FSDP or DDP over data × context."""
    if isinstance(part, ViTStage):
        layers, context = list(part.layers), None  # NOTE: CP with PP is refused earlier
    else:
        layers, context = encoder_layers(part.backbone), part.backbone
    parallelize_encoder_layers(layers, mesh, config, context=context)
    apply_data_parallel(part, layers, mesh["dp_cp"], config)


PLAN = ParallelPlan(
    shape=vit_shape,
    parallelize=parallelize_vit,
    pipeline_stages=vit_pipeline_stages,
    context_parallel=True,
    problems=encoder_problems,
    pads_for_context_parallel=True,
    split_batch=whole_batch,
    pipeline_input="images",
)
