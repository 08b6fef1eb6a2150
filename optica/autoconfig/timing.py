"""Predicted step time: a roofline per layer plus an α–β model of every collective.

Per micro-batch and pipeline stage:

* each layer's forward takes max(FLOPs / (peak · compute efficiency), bytes / (HBM · hbm
  efficiency)) + a fixed launch overhead; bytes are the layer's weights plus its stored
  activations written and read back. Backward costs 2 forwards (1 for input gradients only, see
  :mod:`optica.autoconfig.flops`); a recomputed layer runs its forward again;
* TP: 2 all-reduces (or reduce-scatter + all-gather under SP, the same volume) of the layer's
  T·h activations forward and 2 backward, each α + 2·(t − 1)/t · bytes / bandwidth, unhidden;
* CP: the ring passes K and V (backward also dK, dV) around the CP ranks; only the part longer
  than the attention it overlaps is exposed;
* EP: 2 all-to-alls forward and 2 backward of each token's top-k copies per MoE layer;
* PP: one activation send forward and one gradient send backward per model chunk.

The step is the slowest stage's micro-batch time × (m + (p − 1)/v) — m micro-batches plus the
1F1B bubble (Narayanan et al. 2021) — plus the data-parallel traffic not hidden behind compute
(:func:`_dp_time`), plus the optimizer step (memory-bound: ~30 bytes per local
trained parameter). Bandwidth is NVLink for a group that fits in a node, else InfiniBand, with
ranks ordered TP → CP → DP → PP.
"""

from __future__ import annotations

from dataclasses import dataclass

from optica.autoconfig import flops as F
from optica.autoconfig import params as P
from optica.autoconfig.data_parallel import (
    REDUCE_BYTES,
    data_parallel_degree,
    fully_sharded,
    group_parameters,
)
from optica.autoconfig.hardware import Cluster, Efficiency
from optica.autoconfig.layout import Layout
from optica.autoconfig.memory import layer_activation_bytes, trained_parameters
from optica.autoconfig.pipeline import Stage, stage_params, stages
from optica.autoconfig.shapes import ModelShape
from optica.autoconfig.training import Training


@dataclass(frozen=True)
class StepTime:
    """Seconds per optimizer step, and where they go."""

    pipeline: float
    bubble: float
    data_parallel: float
    optimizer: float

    @property
    def total(self) -> float:
        return self.pipeline + self.data_parallel + self.optimizer


@dataclass(frozen=True)
class _Context:
    model: ModelShape
    layout: Layout
    cluster: Cluster
    training: Training
    eff: Efficiency

    def roofline(self, flop: float, byte: float) -> float:
        gpu = self.cluster.gpu
        compute = flop / (gpu.peak_tflops * 1e12 * self.eff.compute)
        return max(compute, byte / (gpu.hbm_gbs * 1e9 * self.eff.hbm))

    def transfer(self, byte: float, span: int) -> float:
        """α + bytes/β for one collective over a group spanning ``span`` ranks."""
        bandwidth = self.cluster.bandwidth(span) * self.eff.network
        return self.eff.collective_latency_s + byte / bandwidth


def predict_step_time(
    model: ModelShape,
    layout: Layout,
    cluster: Cluster,
    *,
    training: Training | None = None,
    efficiency: Efficiency | None = None,
) -> StepTime:
    """Predicted seconds per step of ``model`` with ``layout`` on ``cluster`` (see the module)."""
    ctx = _Context(model, layout, cluster, training or Training(), efficiency or Efficiency())
    per_stage = {stage.index: _microbatch_time(ctx, stage) for stage in stages(model, layout)}
    slowest = max(per_stage.values())
    m, p, v = layout.num_microbatches, layout.pp, layout.vp
    bubble = slowest * (p - 1) / v
    pipeline = slowest * m + bubble
    stage = max(stages(model, layout), key=lambda s: per_stage[s.index])
    # FSDP2 gathers and reduce-scatters every micro-batch, hidden behind its whole compute; DDP
    # all-reduces once a step, behind the last micro-batch's backward.
    sharded = fully_sharded(layout)
    hidden = (slowest if sharded else slowest * 2 / 3) * ctx.eff.overlap
    data_parallel = (m if sharded else 1) * max(_dp_time(ctx, stage) - hidden, 0.0)
    return StepTime(pipeline, bubble, data_parallel, _optimizer_time(ctx, stage))


def _microbatch_time(ctx: _Context, stage: Stage) -> float:
    """Forward + backward (+ recompute) seconds of one micro-batch on ``stage``."""
    model, layout = ctx.model, ctx.layout
    backward = F.backward_factor(model, ctx.training)
    recomputed = layout.recomputed_layers(model) * layout.vp
    forward = _layer_forward_time(ctx)
    compute = forward * (stage.layers * (1 + backward) + recomputed)
    comm_forward, comm_backward = _layer_comm_time(ctx)
    comm = comm_forward * (stage.layers + recomputed)
    comm += comm_backward * stage.layers * (backward > 0)
    return compute + comm + _ends_time(ctx, stage) + _pp_time(ctx)


def _layer_forward_time(ctx: _Context) -> float:
    model, layout = ctx.model, ctx.layout
    tokens = layout.micro_batch_size * model.seq_length
    flop = F.backbone_layer_flops(model, tokens) / (layout.tp * layout.cp)
    weights = 2 * P.layer_params(model.backbone).per_rank(tp=layout.tp, ep=layout.ep)
    stored = layer_activation_bytes(
        model.backbone,
        tokens=tokens / layout.cp,
        span=model.seq_length / layout.cp,
        tp=layout.tp,
        sp=layout.sequence_parallel,
    )
    return ctx.roofline(flop, weights + 2 * stored) + ctx.eff.layer_overhead_s


def _layer_comm_time(ctx: _Context) -> tuple[float, float]:
    """Exposed TP + CP + EP communication of one layer: (forward pass, backward pass)."""
    model, layout = ctx.model, ctx.layout
    t, tp, cp, ep = model.backbone, layout.tp, layout.cp, layout.ep
    tokens = layout.micro_batch_size * model.seq_length / cp
    forward = backward = 0.0
    if tp > 1:
        volume = 2 * (tp - 1) / tp * tokens * t.hidden_size * 2
        forward += 2 * ctx.transfer(volume, tp)
        backward += 2 * ctx.transfer(volume, tp)
    if cp > 1:
        kv = (cp - 1) * tokens * 2 * t.kv_heads * t.head_dim * 2 / tp
        attention = F.layer_forward_flops(t, tokens=tokens, span=model.seq_length, causal=True)
        attention -= F.layer_forward_flops(t, tokens=tokens, span=0, causal=True)
        hidden = ctx.roofline(attention / tp, 0.0)  # the ring overlaps the attention it feeds
        forward += max(ctx.transfer(kv, tp * cp) - hidden, 0.0)
        backward += max(ctx.transfer(2 * kv, tp * cp) - 2 * hidden, 0.0)
    if ep > 1:
        volume = (ep - 1) / ep * tokens * t.experts_per_token * t.hidden_size * 2 / tp
        forward += 2 * ctx.transfer(volume, tp * cp * ep)
        backward += 2 * ctx.transfer(volume, tp * cp * ep)
    return forward, backward


def _ends_time(ctx: _Context, stage: Stage) -> float:
    """Vision encoder/projector on the first stage, logits or class head on the last."""
    model, layout, mbs = ctx.model, ctx.layout, ctx.layout.micro_batch_size
    total = 0.0
    if stage.first:  # a VLM's encoder is split by TP but not by CP (each CP rank runs it)
        total += ctx.roofline(mbs * F.first_stage_flops(model, ctx.training) / layout.tp, 0.0)
    if stage.last:
        last = F.last_stage_flops(model, ctx.training)
        total += ctx.roofline(mbs * last / (layout.tp * layout.cp), 0.0)
    return total


def _pp_time(ctx: _Context) -> float:
    """Activation and gradient sends of one micro-batch, one pair per model chunk."""
    layout, model = ctx.layout, ctx.model
    if layout.pp == 1:
        return 0.0
    tokens = layout.micro_batch_size * model.seq_length / layout.cp
    split = layout.tp if layout.sequence_parallel else 1
    volume = tokens * model.backbone.hidden_size * 2 / split
    span = 2 * layout.tp * layout.cp * layout.dp
    return 2 * layout.vp * ctx.transfer(volume, span)


def _dp_time(ctx: _Context, stage: Stage) -> float:
    """Data-parallel traffic: FSDP2's per micro-batch, DDP's per step.

    FSDP2 (the distributed optimizer, :mod:`optica.autoconfig.data_parallel`): each layer's
    parameters are all-gathered for the forward pass and again for the backward pass (resharded
    in between), the root's once, in the compute dtype, and the gradients reduce-scattered in
    fp32, every micro-batch. DDP: one all-reduce of the fp32 gradients a step (2 × 4 bytes per
    trained parameter; the trainer skips it on the micro-batches before the last).
    """
    layout = ctx.layout
    group = data_parallel_degree(layout)
    if group == 1:
        return 0.0
    params = stage_params(ctx.model, stage, ctx.training, layout.pp)
    trained = trained_parameters(params, layout)
    if fully_sharded(layout):
        layers, _, root = group_parameters(ctx.model, layout, stage, params, ctx.training)
        gathered = ctx.training.activation_bytes * (2 * layers + root)
        volume = (group - 1) / group * (gathered + REDUCE_BYTES * trained)
    else:
        volume = (group - 1) / group * trained * 2 * REDUCE_BYTES
    return ctx.transfer(volume, layout.tp * group)


def _optimizer_time(ctx: _Context, stage: Stage) -> float:
    """Adam reads and writes ~30 bytes per parameter it owns (master, m, v, grad, weight)."""
    layout = ctx.layout
    shard = data_parallel_degree(layout) if layout.use_distributed_optimizer else 1
    params = stage_params(ctx.model, stage, ctx.training, layout.pp)
    return ctx.roofline(0.0, trained_parameters(params, layout) * 30 / shard)
