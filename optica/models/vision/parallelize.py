"""The vision encoders' parallel plan (CLIP, SigLIP, InternViT — one ``VisionTransformer``), and
the pieces the ViT classifier's and LLaVA's plans reuse.

Tensor parallelism is Megatron-Core's layout for a bidirectional encoder: ``linear_qkv`` and
``linear_fc1`` column-parallel, ``linear_proj`` and ``linear_fc2`` row-parallel. Attention is
multi-head (one query head per KV group), so a plain ``Shard(0)`` of the fused ``[q_h; k_h; v_h]``
rows gives every rank whole heads with their biases. Patch and position embeddings, the class
token, norms and InternViT's layer scales stay replicated (they are small); sequence parallelism
does not apply to the encoder (its sequence is short: 577 tokens for ViT-L/14-336).

Context parallelism (the encoder on its own, and the ViT classifier): after the embeddings the
sequence is padded to a multiple of CP and each rank keeps one contiguous chunk; attention
all-gathers keys and values (padded keys masked out, no causal mask), and the encoder's output is
all-gathered again, so whatever follows (pooling, a head) sees the whole sequence. Every CP rank
then computes the same loss; the gathers' backward sums the gradients over CP, and data
parallelism over ``dp × cp`` averages them back — the single-process gradient.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.distributed._functional_collectives import all_gather_tensor_autograd
from torch.distributed.device_mesh import DeviceMesh

from optica.autoconfig.shapes import ModelShape, VisionShape
from optica.models.modules.parallel import (
    ParallelConfig,
    ParallelPlan,
    apply_activation_checkpointing,
    apply_data_parallel,
    compile_layers,
)
from optica.models.vision.encoder import VisionTransformer, VisionTransformerConfig


def vision_shape(config: VisionTransformerConfig) -> VisionShape:
    """The encoder's numbers for ``optica.autoconfig.layout`` (the image side is the part whole
    patches cover, as the encoder sees it)."""
    rows, _ = config.grid_size
    return VisionShape(
        hidden_size=config.hidden_size,
        ffn_hidden_size=config.ffn_hidden_size,
        num_layers=config.num_layers,
        num_attention_heads=config.num_attention_heads,
        image_size=rows * config.patch_dim,
        patch_size=config.patch_dim,
        num_channels=config.num_channels,
        class_token=config.add_class_token,
        patch_bias=config.patch_bias,
        pre_norm=config.pre_layernorm,
        dropout=config.hidden_dropout > 0 or config.attention_dropout > 0,
    )


def encoder_shape(config: VisionTransformerConfig) -> ModelShape:
    """A bare encoder, described as a classifier whose "classes" are its output features."""
    return ModelShape(
        name=type(config).__name__, vision=vision_shape(config), num_classes=config.hidden_size
    )


def encoder_layers(encoder: VisionTransformer) -> list[nn.Module]:
    """The encoder's layers (a pipeline stage's pruned model keeps them in a ``ModuleDict``)."""
    layers = encoder.decoder.layers
    return list(layers.values() if isinstance(layers, nn.ModuleDict) else layers)


def apply_encoder_tensor_parallel(layers: list[nn.Module], tp: DeviceMesh) -> None:
    """Megatron's column/row split of encoder layers over ``tp`` (see the module docstring)."""
    from torch.distributed.tensor.parallel import (
        ColwiseParallel,
        RowwiseParallel,
        parallelize_module,
    )

    plan = {
        "self_attention.linear_qkv": ColwiseParallel(),
        "self_attention.linear_proj": RowwiseParallel(),
        "mlp.linear_fc1": ColwiseParallel(),
        "mlp.linear_fc2": RowwiseParallel(),
    }
    for layer in layers:
        parallelize_module(layer, tp, plan)


class PaddedContextParallelAttention:
    """Bidirectional attention over a sequence split into contiguous chunks: keys and values are
    all-gathered over the ``cp`` mesh and the padding after the real tokens is masked out.

    Args:
        mesh: The 1-D context-parallel mesh.
        core: The attention core to run on the gathered keys/values.
        seq_len: Real tokens before padding.
    """

    def __init__(self, mesh: DeviceMesh, core: Any, seq_len: int) -> None:
        self.mesh, self.core, self.seq_len = mesh, core, seq_len

    def __call__(self, q, k, v, *, mask, causal, dropout):
        """q [B, H, T/cp, d], k and v [B, H, T/cp, d] → [B, H, T/cp, d]."""
        k = all_gather_tensor_autograd(k.contiguous(), gather_dim=2, group=self.mesh)
        v = all_gather_tensor_autograd(v.contiguous(), gather_dim=2, group=self.mesh)
        keys = torch.arange(k.shape[2], device=k.device)
        padding = None if k.shape[2] == self.seq_len else (keys < self.seq_len)[None, None, None]
        return self.core(q, k, v, mask=padding, causal=causal, dropout=dropout)


def apply_encoder_context_parallel(encoder: VisionTransformer, cp: DeviceMesh) -> None:
    """Splits the encoder's token sequence over ``cp`` (see the module docstring): a pre-hook on
    the layer stack pads and keeps this rank's chunk, a hook after it gathers the chunks back."""
    seq_len = encoder.config.seq_length
    chunk = math.ceil(seq_len / cp.size())
    for layer in encoder_layers(encoder):
        attention = layer.self_attention
        attention.core_attention = PaddedContextParallelAttention(
            cp, attention.core_attention, seq_len
        )

    def keep_chunk(module: nn.Module, args: tuple, kwargs: dict) -> tuple:
        (hidden,) = args
        padded = nn.functional.pad(hidden, (0, 0, 0, chunk * cp.size() - hidden.shape[1]))
        start = cp.get_local_rank() * chunk
        return (padded[:, start : start + chunk],), kwargs

    def gather_chunks(module: nn.Module, args: tuple, kwargs: dict, output: torch.Tensor):
        whole = all_gather_tensor_autograd(output.contiguous(), gather_dim=1, group=cp)
        return whole[:, :seq_len]

    encoder.decoder.register_forward_pre_hook(keep_chunk, with_kwargs=True)
    encoder.decoder.register_forward_hook(gather_chunks, with_kwargs=True)


def parallelize_encoder_layers(
    layers: list[nn.Module],
    mesh: DeviceMesh,
    config: ParallelConfig,
    *,
    context: VisionTransformer | None = None,
) -> None:
    """TP → CP (over ``context``'s sequence, when given) → activation checkpointing → compile on
    encoder ``layers``; the caller wraps them for data parallelism."""
    if mesh["tp"].size() > 1:
        apply_encoder_tensor_parallel(layers, mesh["tp"])
    if context is not None and mesh["cp"].size() > 1:
        apply_encoder_context_parallel(context, mesh["cp"])
    apply_activation_checkpointing(layers, config)
    if config.compile:
        compile_layers(layers)


def parallelize_encoder(encoder: nn.Module, mesh: DeviceMesh, config: ParallelConfig) -> None:
    """The plan for a bare encoder: its layers (TP/CP/AC/compile), then FSDP or DDP over the
    data × context ranks."""
    layers = encoder_layers(encoder)
    parallelize_encoder_layers(layers, mesh, config, context=encoder)
    apply_data_parallel(encoder, layers, mesh["dp_cp"], config)


def whole_batch(batch: dict[str, Any], model: nn.Module, rank: int, size: int) -> dict[str, Any]:
    """Every context-parallel rank gets the whole batch: the encoder splits its own sequence."""
    return batch


def encoder_problems(config: VisionTransformerConfig, sizes: dict[str, int]) -> list[str]:
    """What the generic layout check cannot know about the encoder."""
    if sizes.get("sp"):
        return ["sequence_parallel does not apply to vision encoders (use TP alone)"]
    return []


PLAN = ParallelPlan(
    shape=encoder_shape,
    parallelize=parallelize_encoder,
    context_parallel=True,
    pads_for_context_parallel=True,
    problems=encoder_problems,
    split_batch=whole_batch,
)
