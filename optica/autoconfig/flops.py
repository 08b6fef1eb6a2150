"""FLOPs of a training step, per family, counted from the shape (a multiply-add is 2 FLOPs).

Per layer and token, forward: QKV 2·h·(a + 2g)·d, attention scores and weighted sum
2·2·s·a·d·c, output projection 2·a·d·h, MLP 2·h·f·(3 if gated else 2)·k (k = top-k experts;
plus a 2·h·E router), where c is the causal discount: **c = 0.5 for causal (decoder) attention**
— flash attention skips the masked half — and 1 for bidirectional (ViT, CLIP) attention. The
language head adds 2·h·V per token; a ViT adds its patch projection and class head; a VLM its
vision encoder (per image) and projector (per image token).

With MHA, an MLP of 4h, no causal discount and no gating this reduces to Megatron's
72·B·s·L·h²·(1 + s/(6h) + V/(12·h·L)) per step (Narayanan et al. 2021). Model FLOPs count
forward + the backward that training needs: 2 × forward for a trained module (so 3 × forward in
all, NeMo's "model TFLOPS" convention), 1 × forward (input gradients only) through a frozen or
LoRA language model, none through a frozen encoder nothing upstream of it learns.
:func:`step_work_flops` adds what the hardware also runs: a forward per recomputed layer.
"""

from __future__ import annotations

from optica.autoconfig.layout import Layout
from optica.autoconfig.shapes import ModelShape, TransformerShape, VisionShape
from optica.autoconfig.training import Training

CAUSAL_DISCOUNT = 0.5


def layer_forward_flops(t: TransformerShape, *, tokens: float, span: float, causal: bool) -> float:
    """Forward FLOPs of one layer for ``tokens`` queries attending over ``span`` keys."""
    h, d, a, g = t.hidden_size, t.head_dim, t.num_attention_heads, t.kv_heads
    qkv = 2 * h * (a + 2 * g) * d
    attention = 2 * 2 * span * a * d * (CAUSAL_DISCOUNT if causal else 1.0)
    projection = 2 * a * d * h
    mlp = 2 * h * t.ffn_hidden_size * (3 if t.gated_mlp else 2) * t.experts_per_token
    router = 2 * h * t.num_experts if t.is_moe else 0
    return tokens * (qkv + attention + projection + mlp + router)


def vision_forward_flops(v: VisionShape) -> float:
    """Forward FLOPs of a vision encoder on one image: patch projection and layers."""
    layers = layer_forward_flops(v, tokens=v.seq_length, span=v.seq_length, causal=False)
    return patch_flops(v) + v.num_layers * layers


def patch_flops(v: VisionShape) -> float:
    """The patch projection of one image: a (C·p²) → h matmul per patch."""
    return 2 * v.num_patches * v.num_channels * v.patch_size**2 * v.hidden_size


def projector_flops(model: ModelShape) -> float:
    """A VLM projector's forward FLOPs per image."""
    p = model.projector
    if p is None:
        return 0.0
    per_token = p.input_size * p.output_size + (p.output_size**2 if p.kind == "mlp2x_gelu" else 0)
    return 2 * model.image_tokens * per_token


def backbone_layer_flops(model: ModelShape, tokens: float) -> float:
    """Forward FLOPs of one backbone layer on ``tokens`` tokens (whole sequences)."""
    causal = model.language is not None
    return layer_forward_flops(model.backbone, tokens=tokens, span=model.seq_length, causal=causal)


def backward_factor(model: ModelShape, training: Training) -> float:
    """Backward cost of the backbone in forwards: 2 when trained, 1 for input gradients only
    (a frozen or LoRA language model still passes gradients to the projector or adapters)."""
    if model.language is None:
        return 0.0 if training.vision_frozen(model.kind) else 2.0
    return 2.0 if training.language_trained() else 1.0


def first_stage_flops(model: ModelShape, training: Training) -> float:
    """Forward + backward FLOPs per sample of the modules before the backbone's layers."""
    v = model.vision
    if v is None:
        return 0.0
    vision_passes = 1 if training.vision_frozen(model.kind) else 3
    if model.language is None:
        return vision_passes * patch_flops(v)
    encoder = vision_passes * vision_forward_flops(v) + 3 * projector_flops(model)
    return model.images_per_sample * encoder


def last_stage_flops(model: ModelShape, training: Training) -> float:
    """Forward + backward FLOPs per sample of the output layer (LM) or class head (ViT)."""
    if model.language is not None:
        lm = model.language
        forward = 2 * lm.hidden_size * lm.vocab_size * lm.seq_length
        return forward * (1 + backward_factor(model, training))
    return 3 * 2 * model.backbone.hidden_size * (model.num_classes or 0)  # the head always learns


def model_flops_per_step(
    model: ModelShape, global_batch_size: int, training: Training | None = None
) -> float:
    """Model FLOPs of one optimizer step: forward + the backward training needs, no recompute.

    With full training this is 3 × forward, NeMo's "model FLOPs" convention.
    """
    training = training or Training()
    passes = 1 + backward_factor(model, training)
    layers = model.backbone.num_layers * backbone_layer_flops(model, model.seq_length) * passes
    ends = first_stage_flops(model, training) + last_stage_flops(model, training)
    return global_batch_size * (layers + ends)


def step_work_flops(model: ModelShape, layout: Layout, training: Training | None = None) -> float:
    """FLOPs the hardware runs in one step: model FLOPs plus recomputed forwards."""
    training = training or Training()
    recomputed = layout.recomputed_layers(model) * layout.vp * layout.pp
    recompute = recomputed * backbone_layer_flops(model, model.seq_length)
    return model_flops_per_step(model, layout.global_batch_size, training) + (
        layout.global_batch_size * recompute
    )
