"""A parallel layout, and whether it is valid for a model on a world of GPUs.

:class:`Layout` is the one source of truth for what a layout is: the auto-configurator searches
over it and the trainer's strategy validates its own settings with the same
:meth:`Layout.validate`. Field names are Megatron/NeMo's (``tensor_model_parallel_size``, ...), so
a layout maps 1:1 onto a ``MegatronStrategy``-style strategy.

Ranks are ordered TP (innermost) → CP → DP → PP, as Megatron-Core does; expert parallelism reuses
the data-parallel ranks (EP divides DP), so the world is DP × TP × PP × CP. Like NeMo 2.0's
auto-configurator we count the model-parallel size as TP × PP × CP × EP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from optica.autoconfig.shapes import ModelShape
from optica.run.errors import ConfigError

RECOMPUTE_GRANULARITIES = (None, "selective", "full")
RECOMPUTE_METHODS = ("block", "uniform")
_SIZES = (
    "tensor_model_parallel_size", "pipeline_model_parallel_size", "context_parallel_size",
    "expert_model_parallel_size", "data_parallel_size", "micro_batch_size", "global_batch_size",
)  # fmt: skip


class LayoutError(ConfigError):
    """A layout that cannot run this model on this many GPUs."""


@dataclass(frozen=True)
class Layout:
    """How one training job is split over GPUs.

    Args:
        tensor_model_parallel_size: TP: each layer's matrices split over this many GPUs.
        pipeline_model_parallel_size: PP: the backbone's layers split into this many stages.
        virtual_pipeline_model_parallel_size: VP: model chunks per stage (interleaved 1F1B);
            None for the plain schedule.
        context_parallel_size: CP: each sequence split over this many GPUs (ring attention).
        expert_model_parallel_size: EP: MoE experts split over this many data-parallel ranks.
        data_parallel_size: DP: model replicas.
        micro_batch_size: Samples per forward/backward on one replica.
        global_batch_size: Samples per optimizer step over all replicas.
        recompute_granularity: None, ``"selective"`` (attention core only) or ``"full"``.
        recompute_method: With ``"full"``: ``"block"`` recomputes the first
            ``recompute_num_layers`` layers of each model chunk; ``"uniform"`` checkpoints every
            ``recompute_num_layers``-th layer's input and recomputes all.
        recompute_num_layers: See ``recompute_method`` (NeMo's "activation checkpoint layers").
        sequence_parallel: Split norms and dropout over the TP ranks too (needs TP > 1).
        use_distributed_optimizer: Shard parameters, gradients and Adam moments over DP × CP
            (optica's trainer: FSDP2, ZeRO-3); False: whole states on every rank (DDP).
    """

    tensor_model_parallel_size: int = 1
    pipeline_model_parallel_size: int = 1
    virtual_pipeline_model_parallel_size: int | None = None
    context_parallel_size: int = 1
    expert_model_parallel_size: int = 1
    data_parallel_size: int = 1
    micro_batch_size: int = 1
    global_batch_size: int = 1
    recompute_granularity: str | None = None
    recompute_method: str = "block"
    recompute_num_layers: int = 0
    sequence_parallel: bool = False
    use_distributed_optimizer: bool = True

    @classmethod
    def for_world_size(cls, world_size: int, **fields: Any) -> Layout:
        """A layout whose data-parallel size fills ``world_size`` GPUs (DP = world / TP·PP·CP)."""
        layout = cls(**fields)
        split = layout.tp * layout.pp * layout.cp
        if world_size % split:
            raise LayoutError(
                f"world size {world_size} is not divisible by TP×PP×CP = {split} "
                f"({layout.tp}×{layout.pp}×{layout.cp})"
            )
        return cls(**{**fields, "data_parallel_size": world_size // split})

    # Short names for formulas.
    tp = property(lambda self: self.tensor_model_parallel_size)
    pp = property(lambda self: self.pipeline_model_parallel_size)
    vp = property(lambda self: self.virtual_pipeline_model_parallel_size or 1)
    cp = property(lambda self: self.context_parallel_size)
    ep = property(lambda self: self.expert_model_parallel_size)
    dp = property(lambda self: self.data_parallel_size)

    @property
    def world_size(self) -> int:
        return self.dp * self.tp * self.pp * self.cp

    @property
    def model_parallel_size(self) -> int:
        return self.tp * self.pp * self.cp * self.ep

    @property
    def num_microbatches(self) -> int:
        """Micro-batches each replica runs per step (gradient accumulation steps)."""
        return max(self.global_batch_size // (self.micro_batch_size * self.dp), 1)

    def layers_per_chunk(self, model: ModelShape) -> int:
        """Backbone layers in one model chunk (a stage holds VP chunks)."""
        return max(model.backbone.num_layers // (self.pp * self.vp), 1)

    def recomputed_layers(self, model: ModelShape) -> int:
        """Layers per chunk whose activations are fully recomputed in the backward pass."""
        if self.recompute_granularity != "full":
            return 0
        if self.recompute_method == "uniform":
            return self.layers_per_chunk(model)
        return min(self.recompute_num_layers, self.layers_per_chunk(model))

    def validate(
        self,
        model: ModelShape,
        world_size: int,
        *,
        min_model_parallel_size: int = 1,
        max_model_parallel_size: int | None = None,
    ) -> Layout:
        """Returns ``self`` if the layout can run ``model`` on ``world_size`` GPUs.

        Raises:
            LayoutError: One line naming every problem (see :func:`layout_problems`).
        """
        found = layout_problems(
            self, model, world_size, min_model_parallel_size, max_model_parallel_size
        )
        if found:
            raise LayoutError(f"invalid layout for {model.name}: " + "; ".join(found))
        return self


def layout_problems(
    layout: Layout,
    model: ModelShape,
    world_size: int,
    min_model_parallel_size: int = 1,
    max_model_parallel_size: int | None = None,
) -> list[str]:
    """Every reason ``layout`` cannot run ``model`` on ``world_size`` GPUs (empty if valid)."""
    found = _type_problems(layout)
    if found:
        return found
    for check in (_world_problems, _tensor_problems, _pipeline_problems):
        found += check(layout, model, world_size)
    for check in (_batch_problems, _context_expert_problems, _recompute_problems):
        found += check(layout, model, world_size)
    mp, high = layout.model_parallel_size, max_model_parallel_size or world_size
    if not min_model_parallel_size <= mp <= high:
        found.append(
            f"model-parallel size TP×PP×CP×EP = {mp} is outside [{min_model_parallel_size}, {high}]"
        )
    return found


def _type_problems(layout: Layout) -> list[str]:
    found = [
        f"{name} must be a positive integer, got {getattr(layout, name)!r}"
        for name in _SIZES
        if not _positive_int(getattr(layout, name))
    ]
    vp = layout.virtual_pipeline_model_parallel_size
    if vp is not None and not _positive_int(vp):
        found.append(f"virtual_pipeline_model_parallel_size must be None or >= 1, got {vp!r}")
    if layout.recompute_granularity not in RECOMPUTE_GRANULARITIES:
        found.append(f"recompute_granularity must be one of {RECOMPUTE_GRANULARITIES}")
    if layout.recompute_method not in RECOMPUTE_METHODS:
        found.append(f"recompute_method must be one of {RECOMPUTE_METHODS}")
    if not isinstance(layout.recompute_num_layers, int) or layout.recompute_num_layers < 0:
        found.append("recompute_num_layers must be a non-negative integer")
    return found


def _world_problems(layout: Layout, model: ModelShape, world_size: int) -> list[str]:
    if layout.world_size == world_size:
        return []
    return [
        f"DP×TP×PP×CP = {layout.dp}×{layout.tp}×{layout.pp}×{layout.cp} = {layout.world_size} "
        f"but the world size is {world_size}"
    ]


def _tensor_problems(layout: Layout, model: ModelShape, world_size: int) -> list[str]:
    tp, found = layout.tp, []
    for stack in model.stacks:
        where = "vision " if stack is model.vision and model.language is not None else ""
        for what, value in (
            ("num_attention_heads", stack.num_attention_heads),
            ("num_query_groups (KV heads)", stack.kv_heads),
            ("ffn_hidden_size", stack.ffn_hidden_size),
        ):
            if value % tp:
                found.append(f"{where}{what}={value} is not divisible by TP={tp}")
    tokens = model.seq_length // layout.cp
    if layout.sequence_parallel and tp == 1:
        found.append("sequence_parallel needs TP > 1")
    elif layout.sequence_parallel and tokens % tp:
        found.append(f"sequence_parallel: tokens per rank {tokens} not divisible by TP={tp}")
    return found


def _pipeline_problems(layout: Layout, model: ModelShape, world_size: int) -> list[str]:
    layers, pp, vp = model.backbone.num_layers, layout.pp, layout.vp
    if layers % pp:
        return [f"num_layers={layers} is not divisible by PP={pp}"]
    if layout.virtual_pipeline_model_parallel_size is None:
        return []
    found = [] if pp > 1 else ["virtual pipeline (VP) needs PP > 1"]
    if layers % (pp * vp):
        found.append(f"num_layers={layers} is not divisible by PP×VP = {pp}×{vp}")
    if layout.num_microbatches % pp:
        found.append(
            f"the interleaved schedule needs micro-batches ({layout.num_microbatches}) "
            f"divisible by PP={pp}"
        )
    return found


def _batch_problems(layout: Layout, model: ModelShape, world_size: int) -> list[str]:
    per_step = layout.micro_batch_size * layout.dp
    if layout.global_batch_size % per_step == 0:
        return []
    return [
        f"global_batch_size={layout.global_batch_size} is not divisible by "
        f"micro_batch_size×DP = {layout.micro_batch_size}×{layout.dp}"
    ]


def _context_expert_problems(layout: Layout, model: ModelShape, world_size: int) -> list[str]:
    found, cp, ep = [], layout.cp, layout.ep
    if cp > 1 and ep > 1:
        found.append(f"CP={cp} and EP={ep} cannot both be > 1")
    # Causal CP splits each sequence into 2·CP chunks to balance the attention work.
    chunks = 2 * cp if model.language is not None else cp
    if cp > 1 and model.seq_length % chunks:
        found.append(f"sequence length {model.seq_length} is not divisible by {chunks} (CP={cp})")
    experts = model.backbone.num_experts
    if ep > 1 and experts is None:
        found.append(f"EP={ep} needs a mixture-of-experts model")
    elif ep > 1 and (experts % ep or layout.dp % ep):
        found.append(f"EP={ep} must divide num_experts={experts} and DP={layout.dp}")
    return found


def _recompute_problems(layout: Layout, model: ModelShape, world_size: int) -> list[str]:
    granularity, n = layout.recompute_granularity, layout.recompute_num_layers
    chunk = layout.layers_per_chunk(model)
    if granularity != "full":
        return [] if n == 0 else ["recompute_num_layers needs recompute_granularity='full'"]
    if layout.recompute_method == "uniform" and n < 1:
        return ["uniform recompute needs recompute_num_layers >= 1"]
    if n > chunk:
        return [f"recompute_num_layers={n} exceeds the {chunk} layers per model chunk"]
    return []


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1
