"""Peak memory per GPU: weights, gradients, optimizer states and activations.

States (Megatron-LM's accounting, mixed-precision Adam): a trained parameter costs 2 bytes of bf16
weight, 4 of fp32 gradient and 12 of optimizer state (fp32 master weight, Adam m and v) = 18
bytes; the distributed optimizer shards the 12 over the DP×CP ranks (6 + 12/d). In fp32: 4 + 4 + 8.
A frozen parameter costs its weight only; LoRA adapters are trained parameters.

Activations follow Korthikanti et al. 2022, "Reducing Activation Recomputation in Large
Transformer Models", generalised from their GPT layer (h, MHA, MLP of 4h, dropout) to GQA, any
MLP width, gated MLPs, MoE top-k and no dropout. Per layer and micro-batch of T tokens, in bytes
of a 16-bit activation (x2 for fp32), the paper's 34·T·h + 5·a·s·T splits into

* kept whole on each TP rank unless sequence parallel: inputs of the two norms, of QKV and of
  fc1 (8·T·h) and the two dropout masks (2·T·h, one byte each) — the paper's 10·T·h;
* split over TP: Q, K, V and the projection input (2·T·(2a + 2g)·d), the MLP internals (2·T·2f,
  or 2·T·3f when gated; times top-k for MoE) — the paper's 24·T·h;
* the attention core, 5·a·s·T (softmax 2, its dropout mask 1, dropout output 2), which flash
  attention (our trainer's SDPA) and selective recompute never store: only a 4-byte
  log-sum-exp per head and token remains.

Full recompute keeps only each recomputed layer's input (2·T·h, split by SP). With the block
method a layer is recomputed only after the backward pass has freed every layer above it, so the
peak stays at the end of the forward pass; the uniform method rebuilds a whole group of layers
at once, which adds whatever that group holds beyond its micro-batch's checkpoints. Context
parallelism divides T by CP. A stage keeps as many
micro-batches as the schedule has in flight (:mod:`optica.autoconfig.pipeline`); the peak is the
heaviest stage.

The last stage's loss is optica's (``optica.train.module.token_loss``), not Megatron's fused
vocab-parallel cross entropy (4·T·V/TP): the output layer's logits are gathered to the whole
vocabulary (T·V in the activation dtype), cross entropy keeps their fp32 log-softmax (4·T·V) and
the backward pass adds its fp32 gradient (4·T·V) before the logits are freed — held once per
stage, since each micro-batch's loss is taken and back-propagated before the next one's.
"""

from __future__ import annotations

from dataclasses import dataclass

from optica.autoconfig.layout import Layout
from optica.autoconfig.pipeline import Stage, StageParams, stage_params, stages
from optica.autoconfig.shapes import ModelShape, ProjectorShape, TransformerShape, VisionShape
from optica.autoconfig.training import Training

GIB = 2**30


@dataclass(frozen=True)
class MemoryEstimate:
    """Predicted peak bytes on one GPU of the heaviest pipeline stage ``stage``."""

    weights: float
    gradients: float
    optimizer: float
    activations: float
    stage: int = 0

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.activations

    @property
    def total_gib(self) -> float:
        return self.total / GIB


def estimate_memory(
    model: ModelShape,
    layout: Layout,
    *,
    training: Training | None = None,
    flash_attention: bool = True,
) -> MemoryEstimate:
    """Peak memory per GPU for training ``model`` with ``layout`` (module docstring)."""
    training = training or Training()
    estimates = [
        _stage_memory(model, layout, stage, training, flash_attention)
        for stage in stages(model, layout)
    ]
    return max(estimates, key=lambda e: e.total)


def state_bytes(params: StageParams, layout: Layout, training: Training) -> tuple[float, ...]:
    """(weights, gradients, optimizer) bytes on one rank for a stage's parameters."""
    tp, ep = layout.tp, layout.ep
    trained = params.trainable.sharded / tp + params.trainable.replicated + params.adapters
    experts = params.trainable.expert / (tp * ep)
    frozen = params.frozen.per_rank(tp=tp, ep=ep)
    weight, grad, optim = (2, 4, 12) if training.precision == "bf16-mixed" else (4, 4, 8)
    shard = layout.dp * layout.cp if layout.use_distributed_optimizer else 1
    expert_shard = max(shard // ep, 1)
    weights = (trained + experts + frozen) * weight
    optimizer = trained * optim / shard + experts * optim / expert_shard
    return weights, (trained + experts) * grad, optimizer


def layer_activation_bytes(
    t: TransformerShape, *, tokens: float, span: float, tp: int, sp: bool, flash: bool = True
) -> float:
    """Bytes one layer stores for ``tokens`` tokens attending over ``span`` keys (16-bit).

    For the paper's GPT layer this is T·h·(34 + 5·a·s/h) without parallelism, T·h·(10 + 24/t +
    5·a·s/(h·t)) under TP = t, and T·h·(34 + 5·a·s/h)/t with sequence parallelism.
    """
    h, d, a, g = t.hidden_size, t.head_dim, t.num_attention_heads, t.kv_heads
    k = t.experts_per_token
    masks = 2 * tokens * h if t.dropout else 0.0  # one byte each, after attention and after MLP
    whole = 2 * tokens * (3 * h + k * h) + masks  # norm1, QKV, norm2 inputs; fc1 input per expert
    mlp = (3 if t.gated_mlp else 2) * t.ffn_hidden_size * k
    split = 2 * tokens * ((2 * a + 2 * g) * d + mlp)
    core = 4.0 * a * tokens if flash else (5 if t.dropout else 2) * a * tokens * span
    return whole / (tp if sp else 1) + (split + core) / tp


def layer_input_bytes(t: TransformerShape, *, tokens: float, tp: int, sp: bool) -> float:
    """What a fully recomputed layer keeps: its 16-bit input (split by sequence parallelism)."""
    return 2 * tokens * t.hidden_size / (tp if sp else 1)


def _stage_memory(
    model: ModelShape, layout: Layout, stage: Stage, training: Training, flash: bool
) -> MemoryEstimate:
    weights, grads, optimizer = state_bytes(
        stage_params(model, stage, training, layout.pp), layout, training
    )
    per_microbatch, transient = _stage_activations(model, layout, stage, training, flash)
    scale = training.activation_bytes / 2
    activations = (per_microbatch * stage.in_flight + transient) * scale
    activations += loss_bytes(model, layout, stage, training)
    return MemoryEstimate(weights, grads, optimizer, activations, stage.index)


def _stage_activations(
    model: ModelShape, layout: Layout, stage: Stage, training: Training, flash: bool
) -> tuple[float, float]:
    """(bytes per in-flight micro-batch, extra bytes held once while a group is recomputed)."""
    t, tp, sp = model.backbone, layout.tp, layout.sequence_parallel
    tokens = layout.micro_batch_size * model.seq_length / layout.cp
    span = model.seq_length / layout.cp
    full = layer_activation_bytes(t, tokens=tokens, span=span, tp=tp, sp=sp, flash=flash)
    kept = layer_input_bytes(t, tokens=tokens, tp=tp, sp=sp)
    recomputed = layout.recomputed_layers(model) * layout.vp
    if layout.recompute_method == "uniform" and recomputed:
        group = max(layout.recompute_num_layers, 1)
        per_mb = kept * -(-stage.layers // group)
        transient = max(full * min(group, stage.layers) - per_mb, 0.0)
    else:
        per_mb = kept * recomputed + full * (stage.layers - recomputed)
        transient = 0.0
    per_mb += _ends_activations(model, layout, stage, training, tokens)
    return per_mb, transient


def _ends_activations(
    model: ModelShape, layout: Layout, stage: Stage, training: Training, tokens: float
) -> float:
    """Activations of the modules at the ends: pixels, vision encoder/projector, logits."""
    tp, sp = layout.tp, layout.sequence_parallel
    total = 0.0
    if stage.first and model.vision is not None:
        images = layout.micro_batch_size * model.images_per_sample
        v = model.vision
        total += 2 * images * v.num_channels * v.image_size**2  # the input pixels
        if model.projector is not None:
            trained = not training.vision_frozen(model.kind)
            total += _vlm_vision_activations(model, v, model.projector, layout, images, trained)
    if stage.last and model.language is not None:
        h = model.language.hidden_size
        total += 2 * 2 * tokens * h / (tp if sp else 1)  # the final norm's and output's inputs
    return total


def loss_bytes(model: ModelShape, layout: Layout, stage: Stage, training: Training) -> float:
    """The logits and cross entropy of one micro-batch on the last stage (module docstring)."""
    if not stage.last or model.language is None:
        return 0.0
    tokens = layout.micro_batch_size * model.seq_length / layout.cp
    return (training.activation_bytes + 4 + 4) * tokens * model.language.vocab_size


def _vlm_vision_activations(
    model: ModelShape,
    v: VisionShape,
    projector: ProjectorShape,
    layout: Layout,
    images: int,
    trained: bool,
) -> float:
    """A VLM's encoder (stored only when it is trained) and projector, for one micro-batch."""
    encoder = 0.0
    if trained:
        tokens = images * v.seq_length
        per_layer = layer_activation_bytes(
            v, tokens=tokens, span=v.seq_length, tp=layout.tp, sp=layout.sequence_parallel
        )
        encoder = per_layer * v.num_layers
    features = images * model.image_tokens  # projector input, GELU input, fc2 input
    return encoder + 2 * features * (projector.input_size + 2 * projector.output_size)
