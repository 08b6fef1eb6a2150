"""The Llama family's parallel plan (also Mistral's: same model class), applied from outside the
model like torchtitan's ``parallelize_llama``, with Megatron-Core's tensor-parallel layout.

Tensor parallelism (DTensor styles):

* ``linear_qkv`` column-parallel: the fused weight is laid out per KV group (each group's query
  heads, then its k head, then its v head), so a plain ``Shard(0)`` gives every rank whole groups
  with matching q, k and v heads; attention reads its local head counts from the width.
* ``linear_proj`` and ``linear_fc2`` row-parallel (their all-reduce — or reduce-scatter under
  sequence parallelism — is the only communication of each block).
* ``linear_fc1`` = ``[gate; up]``: ``gate_up_colwise_parallel`` splits each half on its own.
* token embedding row-parallel over the (padded) vocabulary, looked up on the local rows
  (``vocab_parallel_embedding``: each rank's gradient is its own rows); output layer
  column-parallel with the logits gathered (the loss sees the full vocabulary).
* sequence parallelism: norms run on ``Shard(1)`` (sequence) and the residual stream stays
  sharded; attention and MLP inputs are all-gathered first (Korthikanti et al., 2022).

Pipeline parallelism cuts the decoder layers evenly; :class:`LlamaStage` runs one stage.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.distributed.device_mesh import DeviceMesh

from optica.autoconfig.shapes import LanguageShape, ModelShape
from optica.models.language.llama.model import LlamaConfig, LlamaModel
from optica.models.modules.masks import build_attention_mask
from optica.models.modules.parallel import (
    ParallelConfig,
    ParallelPlan,
    apply_activation_checkpointing,
    apply_context_parallel,
    apply_data_parallel,
    compile_layers,
    gate_up_colwise_parallel,
    vocab_parallel_embedding,
)


def llama_shape(config: LlamaConfig) -> ModelShape:
    """The numbers ``optica.autoconfig.layout`` checks a layout against."""
    language = LanguageShape(
        hidden_size=config.hidden_size,
        ffn_hidden_size=config.ffn_hidden_size,
        num_layers=config.num_layers,
        num_attention_heads=config.num_attention_heads,
        num_query_groups=config.num_query_groups,
        kv_channels=config.kv_channels,
        bias=config.attention_bias or config.mlp_bias,
        vocab_size=config.vocab_size,
        seq_length=config.seq_length,
        tied_embeddings=config.share_embeddings_and_output_weights,
    )
    return ModelShape(name=type(config).__name__, language=language)


def llama_problems(config: LlamaConfig, sizes: dict[str, int]) -> list[str]:
    """What the generic layout check cannot know about this family."""
    found = []
    tied = config.share_embeddings_and_output_weights
    if tied and (sizes["tp"] > 1 or sizes["pp"] > 1):
        found.append("share_embeddings_and_output_weights needs TP = PP = 1 (not implemented)")
    if config.padded_vocab_size % sizes["tp"]:
        found.append(
            f"padded vocabulary {config.padded_vocab_size} is not divisible by TP={sizes['tp']} "
            "(raise make_vocab_size_divisible_by)"
        )
    return found


class LlamaStage(nn.Module):
    """One pipeline stage: the embedding (first stage), a run of decoder layers, and the final
    norm and output layer (last stage). It shares its modules with the (pruned) model, whose
    state dict keeps the original parameter names.

    Padding and packing are not pipelined: positions are ``0..T-1`` and the mask is causal (with
    the family's sliding window).
    """

    def __init__(self, model: LlamaModel, layers: list[nn.Module], first: bool, last: bool):
        super().__init__()
        self.config = model.config
        self.embedding = model.embedding if first else None
        self.rotary_pos_emb = model.rotary_pos_emb
        self.layers = nn.ModuleList(layers)
        self.final_layernorm = model.decoder.final_layernorm if last else None
        self.output_layer = model.output_layer if last else None
        self.sequence_mesh: DeviceMesh | None = None  # set under sequence parallelism

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Token ids [B, T] (first stage) or hidden states [B, T(/TP), h] → the next stage's
        hidden states, or logits [B, T, vocab_size] (last stage)."""
        hidden = self._input(x)
        batch, seq_len = hidden.shape[:2]
        positions = torch.arange(seq_len, device=x.device).expand(batch, seq_len)
        rope = self.rotary_pos_emb(positions, hidden.dtype)
        mask = build_attention_mask(
            q_len=seq_len, k_len=seq_len, device=x.device, sliding_window=self.config.sliding_window
        )
        for layer in self.layers:
            hidden = layer(hidden, rope=rope, mask=mask)
        if self.output_layer is None:  # under sequence parallelism: send the local shard
            return hidden.to_local() if hasattr(hidden, "to_local") else hidden
        logits = self.output_layer(self.final_layernorm(hidden))
        return logits[..., : self.config.vocab_size]

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        if self.embedding is not None:
            return self.embedding(x)
        if self.sequence_mesh is not None:  # the previous stage sent its local sequence shard
            from torch.distributed.tensor import DTensor, Shard

            return DTensor.from_local(x, self.sequence_mesh, [Shard(1)], run_check=False)
        return x


def llama_pipeline_stages(
    model: LlamaModel, stage_ids: Sequence[int], num_stages: int
) -> list[LlamaStage]:
    """Splits the decoder layers evenly into ``num_stages`` and keeps, in ``model``, only what the
    stages ``stage_ids`` run (the layers stay under their names ``decoder.layers.<i>``)."""
    layers = list(model.decoder.layers)
    per_stage = len(layers) // num_stages
    owned = {s: range(s * per_stage, (s + 1) * per_stage) for s in stage_ids}
    stages = [
        LlamaStage(model, [layers[i] for i in owned[s]], s == 0, s == num_stages - 1)
        for s in stage_ids
    ]
    kept = sorted(i for ids in owned.values() for i in ids)
    model.decoder.layers = nn.ModuleDict({str(i): layers[i] for i in kept})
    if 0 not in stage_ids:
        model.embedding = None
    if num_stages - 1 not in stage_ids:
        model.decoder.final_layernorm = None
        model.output_layer = None
    return stages


def parallelize_llama(part: nn.Module, mesh: DeviceMesh, config: ParallelConfig) -> None:
    """Applies the plan to a ``LlamaModel`` or one ``LlamaStage``, in this order (NOTE: each step
    wraps what the previous produced): TP/SP → CP → activation checkpointing → compile → FSDP or
    DDP over the data × context ranks."""
    layers = llama_layers(part)
    if mesh["tp"].size() > 1:
        apply_llama_tensor_parallel(part, mesh["tp"], config.sequence_parallel)
    if mesh["cp"].size() > 1:
        attentions = [layer.self_attention for layer in layers]
        apply_context_parallel(attentions, mesh["cp"], part.config.sliding_window)
    apply_activation_checkpointing(layers, config)
    if config.compile:
        compile_layers(layers)
    apply_data_parallel(part, layers, mesh["dp_cp"], config)


def llama_layers(part: nn.Module) -> list[nn.Module]:
    """The decoder layers of a ``LlamaModel`` (pruned or not) or of one ``LlamaStage``."""
    return _pieces(part)[1]


def apply_llama_tensor_parallel(part: nn.Module, tp: DeviceMesh, sequence_parallel: bool) -> None:
    """Megatron's tensor-parallel layout (see the module docstring) on a model or stage."""
    from torch.distributed.tensor import Replicate, Shard
    from torch.distributed.tensor.parallel import (
        ColwiseParallel,
        SequenceParallel,
        parallelize_module,
    )

    embedding, layers, final_norm, output = _pieces(part)
    sequence = Shard(1) if sequence_parallel else Replicate()
    if embedding is not None:
        style = vocab_parallel_embedding(sequence, use_local_output=not sequence_parallel)
        parallelize_module(embedding.word_embeddings, tp, style)
    for layer in layers:
        parallelize_module(layer, tp, _layer_plan(sequence_parallel))
    if final_norm is not None and sequence_parallel:
        parallelize_module(final_norm, tp, SequenceParallel())
    if output is not None:
        style = ColwiseParallel(input_layouts=sequence, output_layouts=Replicate())
        parallelize_module(output, tp, style)
    if isinstance(part, LlamaStage) and sequence_parallel:
        part.sequence_mesh = tp


def _layer_plan(sequence_parallel: bool) -> dict[str, object]:
    from torch.distributed.tensor import Replicate, Shard
    from torch.distributed.tensor.parallel import (
        ColwiseParallel,
        PrepareModuleInput,
        RowwiseParallel,
        SequenceParallel,
    )

    out = Shard(1) if sequence_parallel else Replicate()
    plan: dict[str, object] = {
        "self_attention.linear_qkv": ColwiseParallel(),
        "self_attention.linear_proj": RowwiseParallel(
            output_layouts=out, use_local_output=not sequence_parallel
        ),
        "mlp.linear_fc1": gate_up_colwise_parallel(),
        "mlp.linear_fc2": RowwiseParallel(
            output_layouts=out, use_local_output=not sequence_parallel
        ),
    }
    if sequence_parallel:
        gather = PrepareModuleInput(input_layouts=(Shard(1),), desired_input_layouts=(Replicate(),))
        plan.update(
            input_layernorm=SequenceParallel(),
            pre_mlp_layernorm=SequenceParallel(),
            self_attention=gather,
            mlp=gather,
        )
    return plan


def _pieces(
    part: nn.Module,
) -> tuple[nn.Module | None, list[nn.Module], nn.Module | None, nn.Module | None]:
    """(token embedding, decoder layers, final norm, output layer) of a model or stage."""
    if isinstance(part, LlamaStage):
        return part.embedding, list(part.layers), part.final_layernorm, part.output_layer
    layers = part.decoder.layers
    layers = list(layers.values() if isinstance(layers, nn.ModuleDict) else layers)
    return part.embedding, layers, part.decoder.final_layernorm, part.output_layer


PLAN = ParallelPlan(
    shape=llama_shape,
    parallelize=parallelize_llama,
    pipeline_stages=llama_pipeline_stages,
    context_parallel=True,
    problems=llama_problems,
)
