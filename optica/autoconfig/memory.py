"""Peak memory per GPU: weights, gradients, optimizer states and activations.

States without the distributed optimizer (Megatron-LM's accounting, mixed-precision Adam): a
trained parameter costs 2 bytes of bf16 weight, 4 of fp32 gradient and 12 of optimizer state (fp32
master weight, Adam m and v) = 18 bytes; in fp32 4 + 4 + 8. A frozen parameter costs its weight
only; LoRA adapters are trained parameters. The distributed optimizer is what optica's trainer
runs, FSDP2 (ZeRO-3): every state sharded over the DP×CP ranks, 16/d bytes per trained parameter,
plus the parameters it gathers for compute and its reduction buffers
(:mod:`optica.autoconfig.data_parallel`).

The peak falls on one of three moments of a step (:class:`MemoryEstimate`), traced on CPU with
the profiler's allocation events (``tests/integration/autoconfig/test_calibration.py``):

* the end of the forward pass: the last step's gradients (Lightning zeroes them, to None, only
  between the forward and the backward pass), every activation, the logits and the log-softmax;
* the start of the backward pass: the gradients are gone unless earlier micro-batches of the
  step (accumulation, a pipeline) made them; the loss's backward holds 12·T·V;
* the end of the backward pass: every gradient, and FSDP2's root buffers.

Activations follow Korthikanti et al. 2022, "Reducing Activation Recomputation in Large
Transformer Models", generalised from their GPT layer (h, MHA, MLP of 4h, dropout) to GQA, any
MLP width, gated MLPs, MoE top-k and no dropout, and then matched to what optica's layers really
save for the backward pass (summed with ``torch.autograd.graph.saved_tensors_hooks`` in
``tests/unit/autoconfig/test_saved_activations.py``). Per layer and micro-batch of T tokens,
with b bytes per activation (2 in bf16, 4 in fp32):

* kept whole on each TP rank unless sequence parallel — the paper's 10·T·h: each norm with the
  linear after it (:func:`norm_bytes`: LayerNorm 2·b·T·h plus fp32 statistics; optica's fp32
  RMSNorm 4·T·h + 2·b·T·h), the two dropout masks (2·T·h, one byte each);
* split over TP — the paper's 24·T·h: Q, K, V and the projection input, plus RoPE's rotated q
  and k (:func:`attention_bytes`), the MLP internals (:func:`mlp_bytes`: 2·f, or 4·f for SwiGLU,
  whose silu output is saved too; times top-k for MoE);
* the attention core (:func:`core_attention_bytes`): the paper's 5·a·s·T on the math path; a
  flash kernel (GPUs, and torch's CPU SDPA without dropout) keeps a 4-byte log-sum-exp per head
  and token; selective recompute keeps nothing. These are the GPU kernels' 16-bit tensors: on a
  CPU optica attends 16-bit inputs in fp32 (``optica.models.modules.attention.attend``), which
  keeps the same 16-bit Q, K, V but an fp32 output (CPU calibrations train in fp32).

Full recompute keeps only each recomputed layer's input (2·T·h, split by SP). With the block
method a layer is recomputed only after the backward pass has freed every layer above it, so the
peak stays at the end of the forward pass; the uniform method rebuilds a whole group of layers
at once, which adds whatever that group holds beyond its micro-batch's checkpoints. Context
parallelism divides T by CP. A stage keeps as many
micro-batches as the schedule has in flight (:mod:`optica.autoconfig.pipeline`); the peak is the
heaviest stage.

The last stage's loss is optica's (``optica.train.module.token_loss``), not Megatron's fused
vocab-parallel cross entropy (4·T·V/TP): the output layer's logits are gathered to the whole
vocabulary and cast to fp32; cross entropy saves their fp32 log-softmax (4·T·V; the logits
themselves are not saved, whatever their dtype), and its backward pass writes the fp32 gradient
of that log-softmax (4·T·V, from ``nll_loss``) and then of the logits (4·T·V) while it is still
held: 12·T·V at the start of the backward pass, on top of every layer's activations, once per
stage, since each micro-batch's loss is taken and back-propagated before the next one's. With
gradient accumulation the output layer's new weight gradient can outweigh that moment
(:func:`accumulation_bytes`).
"""

from __future__ import annotations

from dataclasses import dataclass

from optica.autoconfig import params as P
from optica.autoconfig.data_parallel import fully_sharded, gathered_bytes, sharded_state_bytes
from optica.autoconfig.layout import Layout
from optica.autoconfig.pipeline import (
    Stage,
    StageParams,
    lora_target_shapes,
    stage_params,
    stages,
)
from optica.autoconfig.shapes import (
    LanguageShape,
    ModelShape,
    ProjectorShape,
    TransformerShape,
    VisionShape,
)
from optica.autoconfig.training import Training

GIB = 2**30


@dataclass(frozen=True)
class MemoryEstimate:
    """Predicted peak bytes on one GPU of the heaviest pipeline stage ``stage``.

    Weights and optimizer states live through the whole step; ``moments`` are the bytes alive
    beyond them at each moment the peak can fall on (module docstring), and the peak is the
    largest. ``activations`` is the most the activations and the loss hold at once;
    ``gathered`` what FSDP2 gathers through the passes. Without ``moments`` everything is
    counted alive together.
    """

    weights: float
    gradients: float
    optimizer: float
    activations: float
    gathered: float = 0.0
    moments: tuple[tuple[str, float], ...] = ()
    stage: int = 0

    @property
    def peak_at(self) -> str:
        """The moment of the peak (``"end of forward"``, ``"start of backward"``, ...)."""
        return max(self.moments, key=lambda m: m[1])[0] if self.moments else "all at once"

    @property
    def total(self) -> float:
        if not self.moments:
            return self.weights + self.gradients + self.optimizer + self.activations + self.gathered
        return self.weights + self.optimizer + max(bytes_ for _, bytes_ in self.moments)

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
    """(weights, gradients, optimizer) bytes on one rank for a stage's parameters: FSDP2's
    shards under the distributed optimizer (:mod:`optica.autoconfig.data_parallel`), else whole
    states (Megatron's accounting, module docstring)."""
    trained, experts = _trained_split(params, layout)
    frozen = params.frozen.per_rank(tp=layout.tp, ep=layout.ep)
    if fully_sharded(layout):
        return sharded_state_bytes(trained, experts, frozen, layout)
    weight, grad, optim = (2, 4, 12) if training.precision == "bf16-mixed" else (4, 4, 8)
    weights = (trained + experts + frozen) * weight
    return weights, (trained + experts) * grad, (trained + experts) * optim


def trained_parameters(params: StageParams, layout: Layout) -> float:
    """Trained parameters on one rank before data-parallel sharding (TP and EP split them)."""
    return sum(_trained_split(params, layout))


def _trained_split(params: StageParams, layout: Layout) -> tuple[float, float]:
    """(dense trained parameters with LoRA adapters, expert parameters) on one rank."""
    trainable, tp = params.trainable, layout.tp
    dense = trainable.sharded / tp + trainable.replicated + params.adapters
    return dense, trainable.expert / (tp * layout.ep)


def layer_activation_bytes(
    t: TransformerShape,
    *,
    tokens: float,
    span: float,
    tp: int,
    sp: bool,
    flash: bool = True,
    value_bytes: int = 2,
    core_recomputed: bool = False,
) -> float:
    """Bytes one layer stores for ``tokens`` tokens attending over ``span`` keys, activations of
    ``value_bytes`` each (module docstring: the paper's terms, then what optica's layer adds).

    For the paper's GPT layer (LayerNorm, GELU, no RoPE) in 16-bit this is T·h·(34 + 5·a·s/h)
    without parallelism, T·h·(10 + 24/t + 5·a·s/(h·t)) under TP = t and T·h·(34 + 5·a·s/h)/t
    with sequence parallelism, plus the norms' fp32 statistics (16·T). Selective recompute
    (``core_recomputed``) stores nothing of the attention core: it is rebuilt from Q, K and V.
    """
    b, h, k = value_bytes, t.hidden_size, t.experts_per_token
    masks = 2 * tokens * h if t.dropout else 0.0  # one byte each, after attention and after MLP
    dispatched = (k - 1) * b * tokens * h  # MoE: each extra expert's copy of its fc1 input
    whole = 2 * norm_bytes(t, tokens=tokens, value_bytes=b) + dispatched + masks
    split = attention_bytes(t, tokens=tokens, value_bytes=b) + mlp_bytes(t, tokens, b)
    if not core_recomputed:
        split += core_attention_bytes(t, tokens=tokens, span=span, flash=flash, value_bytes=b)
    return whole / (tp if sp else 1) + split / tp


def norm_bytes(t: TransformerShape, *, tokens: float, value_bytes: int) -> float:
    """One norm and the linear after it: what optica's norms save for their backward pass.

    RMSNorm (``optica.models.modules.norms``) computes in fp32: an fp32 copy of its input (the
    input itself in fp32), the fp32 ``rsqrt`` per token, the normalised values cast back (for
    the scale's gradient) and its output (the next linear's input). LayerNorm keeps its input,
    fp32 mean and reciprocal std per token, and its output — the paper's 4·T·h in 16-bit.
    """
    th, b = tokens * t.hidden_size, value_bytes
    if t.norm == "rmsnorm":
        return 4 * th + 4 * tokens + 2 * b * th
    return 2 * b * th + 8 * tokens


def attention_bytes(t: TransformerShape, *, tokens: float, value_bytes: int) -> float:
    """Q, K, V and the output projection's input on one TP rank's heads (times TP).

    The paper's 2·T·(2a + 2g)·d in 16-bit. RoPE adds the rotated q and k (T·(a + g)·d): the
    attention core saves them, and it saves v, a view of the fused QKV output, which keeps that
    whole output (q and k unrotated included) alive.
    """
    a, g, d = t.num_attention_heads, t.kv_heads, t.head_dim
    per_token = (2 * a + 2 * g) * d + ((a + g) * d if _rotary(t) else 0)
    return value_bytes * tokens * per_token


def mlp_bytes(t: TransformerShape, tokens: float, value_bytes: int) -> float:
    """The MLP's internals per expert a token visits (times TP).

    GELU: fc1's output (the activation's input) and fc2's input, 2·f (the paper's 16·T·h at
    f = 4h). SwiGLU: fc1's fused [gate; up] output (2·f: silu saves the gate, the product the
    up half), silu's output (the product's other factor) and fc2's input (the product): 4·f.
    """
    f = t.ffn_hidden_size * t.experts_per_token
    return value_bytes * tokens * (4 if t.gated_mlp else 2) * f


def core_attention_bytes(
    t: TransformerShape, *, tokens: float, span: float, flash: bool, value_bytes: int
) -> float:
    """The attention core: a flash kernel (cuDNN/FlashAttention on GPUs, and torch's CPU
    ``_scaled_dot_product_flash_attention_for_cpu`` whenever dropout is off) keeps a 4-byte
    log-sum-exp per head and token; the math path keeps the scores (the paper's 5·a·s·T in
    16-bit with dropout: softmax, mask, dropout output; 2·a·s·T without)."""
    a = t.num_attention_heads
    if flash:
        return 4.0 * a * tokens
    return (5 if t.dropout else 2) * a * tokens * span * value_bytes / 2


def _rotary(t: TransformerShape) -> bool:
    """Optica's language models apply RoPE (GPT-3's learned positions aside); encoders do not."""
    return isinstance(t, LanguageShape) and not t.learned_positions


def layer_input_bytes(
    t: TransformerShape, *, tokens: float, tp: int, sp: bool, value_bytes: int = 2
) -> float:
    """What a fully recomputed layer keeps: its input (split by sequence parallelism)."""
    return value_bytes * tokens * t.hidden_size / (tp if sp else 1)


def _stage_memory(
    model: ModelShape, layout: Layout, stage: Stage, training: Training, flash: bool
) -> MemoryEstimate:
    params = stage_params(model, stage, training, layout.pp)
    weights, grads, optimizer = state_bytes(params, layout, training)
    per_microbatch, transient = _stage_activations(model, layout, stage, training, flash)
    layers = per_microbatch * stage.in_flight + transient
    backward_loss = loss_bytes(model, layout, stage, training)
    if training.step_in_backward:
        states = (weights, optimizer)
        return _stepped_in_backward(model, layout, stage, training, states, layers, backward_loss)
    during, end, root_shard = gathered_bytes(model, layout, stage, params, training)
    held = grads if gradients_held(layout) else 0.0
    moments = (
        (
            "end of forward",
            grads + during + layers + forward_loss_bytes(model, layout, stage, training),
        ),
        ("start of backward", held + during + layers + backward_loss),
        ("end of backward", grads - root_shard + end),
    )
    return MemoryEstimate(
        weights, grads, optimizer, layers + backward_loss, gathered=during, moments=moments,
        stage=stage.index,
    )  # fmt: skip


def _stepped_in_backward(
    model: ModelShape,
    layout: Layout,
    stage: Stage,
    training: Training,
    states: tuple[float, float],
    layers: float,
    backward_loss: float,
) -> MemoryEstimate:
    """One process without accumulation, the optimizer stepping each parameter in the backward
    pass (``Training.step_in_backward``): every gradient is freed as soon as its parameter is
    updated, so none is left from the last step at the end of the forward pass and one at a
    time is alive during the backward pass — at most the largest, which for a language model is
    the output layer's, made next to the logits' fp32 gradient (4·T·V) after the loss's 12·T·V
    moment."""
    gradient = largest_trained_gradient(model, training)
    logits = 0.0
    if stage.last and model.language is not None:
        logits = 4 * logit_tokens(model, layout) * model.language.vocab_size
    backward = max(backward_loss, logits + gradient)
    moments = (
        ("end of forward", layers + forward_loss_bytes(model, layout, stage, training)),
        ("start of backward", layers + backward),
        ("end of backward", gradient),
    )
    weights, optimizer = states
    return MemoryEstimate(
        weights, gradient, optimizer, layers + backward, moments=moments, stage=stage.index
    )


def largest_trained_gradient(model: ModelShape, training: Training) -> float:
    """fp32 bytes of the largest trained parameter's gradient (``params.largest_matrices``;
    a LoRA adapter's when the language model is adapted)."""
    largest = P.largest_matrices(model)
    trained = [largest.get("projector", 0), largest.get("classifier", 0)]
    if training.language_trained():
        trained.append(largest.get("language", 0))
    elif training.lora is not None and model.language is not None:
        shapes = lora_target_shapes(model.language)
        trained += [training.lora.dim * max(shapes[m][:2]) for m in training.lora.target_modules]
    if model.vision is not None and not training.vision_frozen(model.kind):
        trained.append(largest["vision"])
    return 4.0 * max(trained)


def gradients_held(layout: Layout) -> bool:
    """Whether gradients are alive when the backward pass starts. The trainer sets them to None
    (``optimizer.zero_grad()``) between a step's forward pass and its backward pass (Lightning's
    order), so the last step's gradients sit next to the forward pass's activations, and are gone
    when the loss's backward begins; with accumulation or a pipeline schedule the earlier
    micro-batches' gradients are there too."""
    return layout.num_microbatches > 1


def _stage_activations(
    model: ModelShape, layout: Layout, stage: Stage, training: Training, flash: bool
) -> tuple[float, float]:
    """(bytes per in-flight micro-batch, extra bytes held once while a group is recomputed)."""
    t, tp, sp, b = model.backbone, layout.tp, layout.sequence_parallel, training.activation_bytes
    tokens = layout.micro_batch_size * model.seq_length / layout.cp
    span = model.seq_length / layout.cp
    selective = layout.recompute_granularity == "selective"
    full = layer_activation_bytes(
        t, tokens=tokens, span=span, tp=tp, sp=sp, flash=flash, value_bytes=b,
        core_recomputed=selective,
    )  # fmt: skip
    kept = layer_input_bytes(t, tokens=tokens, tp=tp, sp=sp, value_bytes=b)
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
    """Activations outside the repeated layers: pixels, vision encoder/projector, the RoPE
    tables every layer shares (cos and sin, T·d each), the final norm (its output is the output
    layer's input)."""
    tp, sp, b = layout.tp, layout.sequence_parallel, training.activation_bytes
    total = 0.0
    if stage.first and model.vision is not None:
        images = layout.micro_batch_size * model.images_per_sample
        v = model.vision
        total += b * images * v.num_channels * v.image_size**2  # the input pixels
        if model.projector is not None:
            trained = not training.vision_frozen(model.kind)
            total += _vlm_vision_activations(model, v, model.projector, layout, images, trained, b)
    language = model.language
    if language is not None and _rotary(language):
        total += 2 * b * tokens * language.head_dim
    if stage.last and language is not None:
        total += norm_bytes(language, tokens=tokens, value_bytes=b) / (tp if sp else 1)
    return total


def loss_bytes(model: ModelShape, layout: Layout, stage: Stage, training: Training) -> float:
    """The logits and cross entropy of one micro-batch on the last stage (module docstring), or
    the output layer's accumulated gradient's moment when that is larger."""
    if not stage.last or model.language is None:
        return 0.0
    held = (4 + 4 + 4) * logit_tokens(model, layout) * model.language.vocab_size
    return max(held, accumulation_bytes(model, layout, training))


def forward_loss_bytes(
    model: ModelShape, layout: Layout, stage: Stage, training: Training
) -> float:
    """The loss at the end of the forward pass: the output layer's logits (and, in 16-bit, their
    fp32 copy) and the fp32 log-softmax cross entropy saves, 8·T·V in fp32, 10·T·V in bf16."""
    if not stage.last or model.language is None:
        return 0.0
    b = training.activation_bytes
    logits = 4 if b == 4 else b + 4  # the output layer's, and their fp32 copy when 16-bit
    return (logits + 4) * logit_tokens(model, layout) * model.language.vocab_size


def logit_tokens(model: ModelShape, layout: Layout) -> float:
    """Positions of one micro-batch whose logits a rank computes (T in the loss's terms).

    A language model learns every position in pretraining. Optica's LLaVA computes logits only
    where a label is learned (``LlavaModel``'s ``logits_at``), and the image tokens are never
    learned: a VLM counts its text tokens (its prompt is not learned either, but how long it is
    depends on the data, so it is counted: an upper bound).
    """
    per_sample = model.seq_length
    if model.kind == "vlm":
        per_sample = max(per_sample - model.image_tokens * model.images_per_sample, 1)
    return layout.micro_batch_size * per_sample / layout.cp


def accumulation_bytes(model: ModelShape, layout: Layout, training: Training) -> float:
    """The output layer's backward pass on a micro-batch after the first of a step.

    Autograd steals the first micro-batch's weight gradient into ``.grad`` (counted with the
    gradients); a later one is a new fp32 [V/TP, h] tensor that ``AccumulateGrad`` then adds in
    place, alive next to the logits' fp32 gradient (4·T·V) once the log-softmax and its own
    gradient are freed. Traced on CPU (calibration Llama, h = 768, V = 32000, T = 256, four
    micro-batches of one): the peak of the live tensors is this moment, 4·T·V + 4·V·h above the
    states and the layers' activations. Nothing of the kind without accumulation or with the
    output layer frozen (LoRA, a frozen language model).
    """
    language = model.language
    if language is None or layout.num_microbatches == 1 or not training.language_trained():
        return 0.0
    new_gradient = 4 * language.vocab_size * language.hidden_size / layout.tp
    return 4 * logit_tokens(model, layout) * language.vocab_size + new_gradient


def _vlm_vision_activations(
    model: ModelShape,
    v: VisionShape,
    projector: ProjectorShape,
    layout: Layout,
    images: int,
    trained: bool,
    value_bytes: int,
) -> float:
    """A VLM's encoder (stored only when it is trained) and projector, for one micro-batch."""
    encoder = 0.0
    if trained:
        tokens = images * v.seq_length
        per_layer = layer_activation_bytes(
            v, tokens=tokens, span=v.seq_length, tp=layout.tp, sp=layout.sequence_parallel,
            value_bytes=value_bytes,
        )  # fmt: skip
        encoder = per_layer * v.num_layers
    features = images * model.image_tokens  # projector input, GELU input, fc2 input
    return encoder + value_bytes * features * (projector.input_size + 2 * projector.output_size)
