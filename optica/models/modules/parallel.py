"""Building blocks of parallel plans, applied to a model from outside it.

A family's plan (``optica/models/<kind>/<family>/parallelize.py``) composes these in the order
torchtitan's ``parallelize_llama`` uses (and documents), each step wrapping what the previous one
produced:

1. tensor parallelism (+ sequence parallelism): DTensor ``parallelize_module`` styles
   (Shoeybi et al., 2019, "Megatron-LM"; Korthikanti et al., 2022, "Reducing Activation
   Recomputation in Large Transformer Models");
2. context parallelism: each rank keeps a slice of the sequence, keys/values are all-gathered;
3. activation checkpointing: ``selective`` recomputes the attention core (Megatron's selective
   recompute), ``full`` whole layers;
4. ``torch.compile`` per layer (one graph, re-used by every identical layer);
5. data parallelism: FSDP2 ``fully_shard`` (ZeRO-3, the "distributed optimizer") or FSDP2's
   ``replicate`` (DDP), per layer then at the root, over the flattened data × context mesh.

The strategy (``optica.train.strategy``) builds the mesh and calls the family's plan; nothing here
names a family. DTensor and FSDP are imported where they are used: importing them costs half a
second, which ``import optica.models`` should not pay.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.distributed._composable import checkpoint as checkpoint_module
from torch.distributed._functional_collectives import all_gather_tensor_autograd
from torch.distributed.device_mesh import DeviceMesh
from torch.utils.checkpoint import checkpoint

from optica.models.modules.attention import SelfAttention

AC_MODES = ("none", "selective", "full")
DP_SHARDINGS = ("ddp", "fsdp")


@dataclass(frozen=True)
class ParallelConfig:
    """What a plan needs besides the mesh (the strategy fills it in).

    Args:
        sequence_parallel: Shard norms and residuals over the TP ranks along the sequence.
        activation_checkpointing: ``none``, ``selective`` (attention core) or ``full`` (layers).
        activation_checkpointing_layers: With ``full``: checkpoint the first this many layers of
            each model chunk (Megatron's ``recompute_method="block"``); None means all.
        compile: ``torch.compile`` each layer.
        data_parallel_sharding: ``fsdp`` (shard parameters, gradients and optimizer states) or
            ``ddp`` (replicate them).
        param_dtype: Compute dtype of data-parallel parameters (bf16 under ``bf16-mixed``).
        reduce_dtype: Gradient reduction dtype.
    """

    sequence_parallel: bool = False
    activation_checkpointing: str = "none"
    activation_checkpointing_layers: int | None = None
    compile: bool = False
    data_parallel_sharding: str = "fsdp"
    param_dtype: torch.dtype | None = None
    reduce_dtype: torch.dtype | None = None


@dataclass(frozen=True)
class ParallelPlan:
    """A family's parallel plan; registered on its ``Family`` as ``parallel_plan``.

    Args:
        shape: ``config -> ModelShape``: the numbers ``optica.autoconfig.layout`` validates.
        parallelize: ``(part, mesh, config)``: applies TP/SP → CP → activation checkpointing →
            compile → data parallelism to ``part`` (the model, or one pipeline stage of it) over
            a mesh with dims ``pp, dp, cp, tp`` and the flattened ``dp_cp``.
        pipeline_stages: ``(model, stage_ids, num_stages) -> [stage modules]``: prunes ``model``
            to the stages this rank runs (parameter names kept) and returns one module per
            stage; None when the family cannot be pipelined.
        context_parallel: Whether ``parallelize`` handles a ``cp`` mesh of size > 1.
        problems: ``(config, sizes) -> [reason, ...]``: family-specific reasons a layout cannot
            run (``sizes`` maps ``tp``, ``pp``, ``cp``, ``dp`` to degrees, ``sp`` to 0 or 1).
        pads_for_context_parallel: The plan pads sequences itself, so their length need not be a
            multiple of CP (image-token sequences).
        split_batch: ``(batch, model, cp_rank, cp_size) -> batch``: this context-parallel rank's
            share of a batch; None for token batches (``input_ids`` and ``labels`` split along
            the sequence by the strategy).
        pipeline_input: The batch key the first pipeline stage reads.
        pipeline_batch: ``(batch, model) -> (first stage's inputs, last stage's target)``, for
            batches that are more than ``pipeline_input`` and ``labels`` (LLaVA's); None: those.
    """

    shape: Callable[[Any], Any]
    parallelize: Callable[[nn.Module, DeviceMesh, ParallelConfig], None]
    pipeline_stages: Callable[[nn.Module, Sequence[int], int], list[nn.Module]] | None = None
    context_parallel: bool = False
    problems: Callable[[Any, dict[str, int]], list[str]] | None = None
    pads_for_context_parallel: bool = False
    split_batch: Callable[[dict[str, Any], nn.Module, int, int], dict[str, Any]] | None = None
    pipeline_input: str = "input_ids"
    pipeline_batch: Callable[[dict[str, Any], nn.Module], tuple[tuple, Any]] | None = None


def gate_up_colwise_parallel() -> Any:
    """Column parallelism for a fused ``[gate; up]`` linear (SwiGLU's ``linear_fc1``): each half
    is split on its own, so rank r holds ``[gate_r; up_r]`` and ``act(gate_r) * up_r`` needs no
    communication — Megatron-Core's SwiGLU layout.

    The weight is a ``_StridedShard(0, split_factor=2)`` DTensor: its global value stays the true
    ``[gate; up]`` (what ``full_tensor()``, checkpoints and exports see); the local output is
    returned as is, never redistributed.
    """
    return _gate_up_style()()


@functools.cache
def _gate_up_style() -> type:
    from torch.distributed.tensor import distribute_tensor
    from torch.distributed.tensor.parallel import ColwiseParallel
    from torch.distributed.tensor.placement_types import _StridedShard

    class GateUpColwiseParallel(ColwiseParallel):
        def _partition_linear_fn(self, name, module, device_mesh):
            placement = [_StridedShard(0, split_factor=2)]
            for param_name, param in module.named_parameters(recurse=False):
                sharded = distribute_tensor(param, device_mesh, placement)
                module.register_parameter(
                    param_name, nn.Parameter(sharded, requires_grad=param.requires_grad)
                )

        @staticmethod
        def _prepare_output_fn(output_layouts, use_local_output, mod, outputs, device_mesh):
            return outputs.to_local()

    return GateUpColwiseParallel


def vocab_parallel_embedding(output_layouts: Any, use_local_output: bool) -> Any:
    """Row (vocabulary) parallelism for an ``nn.Embedding``, computed on the local shard —
    Megatron-Core's ``VocabParallelEmbedding``.

    The weight is a ``Shard(0)`` DTensor as with ``RowwiseParallel`` (checkpoints, exports and
    FSDP see the same parameter), but the lookup runs on local tensors: ids outside this rank's
    rows read row 0 and are zeroed, and the partial sums are reduced to ``output_layouts``.
    DTensor's own embedding backward has no vocabulary-sharded rule: it builds the whole
    [vocab, hidden] gradient on every rank and reduce-scatters it; here each rank's gradient is
    its own rows, with no communication.
    """
    from torch.distributed.tensor import Replicate

    return _vocab_style()(
        input_layouts=Replicate(), output_layouts=output_layouts, use_local_output=use_local_output
    )


@functools.cache
def _vocab_style() -> type:
    import types

    from torch.distributed.tensor.parallel import RowwiseParallel

    class VocabParallelEmbedding(RowwiseParallel):
        def _apply(self, module: nn.Module, device_mesh: DeviceMesh) -> nn.Module:
            if not isinstance(module, nn.Embedding) or module.padding_idx is not None:
                raise TypeError(
                    "vocab_parallel_embedding takes an nn.Embedding without padding_idx"
                )
            module = super()._apply(module, device_mesh)
            module.forward = types.MethodType(_lookup_local_rows, module)
            return module

    return VocabParallelEmbedding


def _lookup_local_rows(self: nn.Embedding, ids: torch.Tensor) -> torch.Tensor:
    from torch.distributed.tensor import DTensor, Partial
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    weight = self.weight
    local = weight.to_local()
    _, (start, _) = compute_local_shape_and_global_offset(
        weight.shape, weight.device_mesh, weight.placements
    )
    ids = ids.to_local() if isinstance(ids, DTensor) else ids
    inside = (ids >= start) & (ids < start + local.shape[0])
    rows = nn.functional.embedding(torch.where(inside, ids - start, 0), local)
    rows = rows.masked_fill(~inside.unsqueeze(-1), 0.0)
    return DTensor.from_local(rows, weight.device_mesh, [Partial()], run_check=False)


def is_strided(tensor: torch.Tensor) -> bool:
    """Whether ``tensor`` is a DTensor with a strided (``[gate; up]``-style) placement."""
    placements = getattr(tensor, "placements", ())
    return any(type(p).__name__ == "_StridedShard" for p in placements)


def load_balanced_positions(
    seq_len: int, rank: int, size: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """Global positions of the tokens context-parallel rank ``rank`` of ``size`` holds.

    The sequence is cut into ``2·size`` chunks and rank r takes chunks r and ``2·size-1-r``, so
    every rank does the same causal-attention work (Megatron-Core's load balancing).

    Returns:
        Positions [seq_len // size], ascending.
    """
    if seq_len % (2 * size):
        raise ValueError(f"sequence length {seq_len} is not divisible by 2×CP = {2 * size}")
    chunk = seq_len // (2 * size)
    first = torch.arange(rank * chunk, (rank + 1) * chunk, device=device)
    second = torch.arange((2 * size - 1 - rank) * chunk, (2 * size - rank) * chunk, device=device)
    return torch.cat([first, second])


class ContextParallelAttention:
    """An attention core for context parallelism: keys and values are all-gathered over the
    ``cp`` mesh (differentiable: the backward reduce-scatters their gradients), and the causal
    mask is built from the global positions of the local queries and of the gathered keys.

    The incoming mask is ignored: batches are split along the sequence by the strategy, which
    refuses padded and packed batches; a sliding window is applied here.

    Args:
        mesh: The 1-D context-parallel mesh.
        core: The attention core to run on the gathered keys/values.
        sliding_window: Each query sees at most this many latest keys (Mistral), or None.
    """

    def __init__(
        self, mesh: DeviceMesh, core: Callable[..., torch.Tensor], sliding_window: int | None
    ) -> None:
        self.mesh, self.core, self.sliding_window = mesh, core, sliding_window

    def __call__(self, q, k, v, *, mask, causal, dropout):
        """q [B, H, T/cp, d], k and v [B, G, T/cp, d] → [B, H, T/cp, d]."""
        k = all_gather_tensor_autograd(k.contiguous(), gather_dim=2, group=self.mesh)
        v = all_gather_tensor_autograd(v.contiguous(), gather_dim=2, group=self.mesh)
        return self.core(
            q, k, v, mask=self._mask(q.shape[2], q.device), causal=causal, dropout=dropout
        )

    def _mask(self, local_len: int, device: torch.device) -> torch.Tensor:
        size, rank = self.mesh.size(), self.mesh.get_local_rank()
        seq_len = local_len * size
        q_pos = load_balanced_positions(seq_len, rank, size, device)
        k_pos = torch.cat([load_balanced_positions(seq_len, r, size, device) for r in range(size)])
        allowed = k_pos[None, :] <= q_pos[:, None]
        if self.sliding_window is not None:
            allowed &= k_pos[None, :] > q_pos[:, None] - self.sliding_window
        return allowed[None, None]


def apply_context_parallel(
    attentions: Sequence[SelfAttention], mesh: DeviceMesh, sliding_window: int | None
) -> None:
    """Gives each attention a :class:`ContextParallelAttention` core over ``mesh``."""
    for attention in attentions:
        attention.core_attention = ContextParallelAttention(
            mesh, attention.core_attention, sliding_window
        )


def apply_activation_checkpointing(layers: Sequence[nn.Module], config: ParallelConfig) -> None:
    """``selective``: recompute each attention core in the backward pass (its scores are the
    activations that grow with T²); ``full``: recompute the first N layers (all by default).

    NOTE: the composable ``checkpoint`` keeps parameter names unchanged (no wrapper module), so
    checkpoints and optimizer states do not depend on the activation-checkpointing setting.
    """
    if config.activation_checkpointing == "selective":
        for layer in layers:
            for attention in _attentions(layer):
                attention.core_attention = _recomputed(attention.core_attention)
    elif config.activation_checkpointing == "full":
        count = config.activation_checkpointing_layers
        for layer in layers[: len(layers) if count is None else count]:
            checkpoint_module(layer)


def _recomputed(core: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    def run(q, k, v, **kwargs):
        return checkpoint(core, q, k, v, use_reentrant=False, **kwargs)

    return run


def compile_layers(layers: Sequence[nn.Module]) -> None:
    """Compiles each layer in place (``nn.Module.compile``: parameter names unchanged)."""
    for layer in layers:
        layer.compile()


def apply_data_parallel(
    root: nn.Module, layers: Sequence[nn.Module], mesh: DeviceMesh, config: ParallelConfig
) -> None:
    """FSDP2 (``fsdp``) or FSDP2's ``replicate`` (``ddp``) over ``mesh``: each layer is its own
    communication group (its all-gather / reduce overlaps the neighbours' compute), the root
    takes what is left (embeddings, final norm, output layer).

    Tensor-parallel ``[gate; up]`` weights are sharded along their input dimension, so the
    combined placement stays exact (``_StridedShard`` on the TP dim composes with a plain
    ``Shard(1)`` on the data-parallel dim, not with FSDP's default ``Shard(0)``).
    """
    from torch.distributed._composable.replicate_with_fsdp import replicate
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    if mesh.size() == 1:
        return
    policy = MixedPrecisionPolicy(param_dtype=config.param_dtype, reduce_dtype=config.reduce_dtype)
    if config.data_parallel_sharding == "fsdp":
        wrap = functools.partial(fully_shard, shard_placement_fn=_fsdp_placement)
    else:
        wrap = replicate
    for layer in layers:
        wrap(layer, mesh=mesh, mp_policy=policy)
    wrap(root, mesh=mesh, mp_policy=policy)


def _fsdp_placement(param: nn.Parameter) -> Any:
    from torch.distributed.tensor import Shard

    return Shard(1) if is_strided(param) else None


def _attentions(module: nn.Module) -> list[SelfAttention]:
    return [m for m in module.modules() if isinstance(m, SelfAttention)]
