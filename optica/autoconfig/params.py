"""Parameter counts from a :class:`~optica.autoconfig.shapes.ModelShape`.

Counts are exact for the architectures described (they reproduce Hugging Face's numbers:
Llama-2-7B 6,738,415,616; Llama-3-8B 8,030,261,248; Gemma-7B 8,537,680,896; LLaVA-1.5-7B with
a 32,000-token vocabulary 7,062,902,784). Each count is split the way a parallel layout shards it
(Megatron-LM, Shoeybi et al. 2019; expert parallelism as in Megatron-Core), because the memory
model needs the split, not only the total:

* ``sharded``: split over tensor-parallel ranks (linear weights and their biases, the
  vocabulary-parallel embedding and output layer);
* ``replicated``: whole on every tensor-parallel rank (norms, position tables, class token,
  router);
* ``expert``: MoE expert weights, split over tensor- and expert-parallel ranks.
"""

from __future__ import annotations

from dataclasses import dataclass

from optica.autoconfig.shapes import (
    LanguageShape,
    ModelShape,
    ProjectorShape,
    TransformerShape,
    VisionShape,
)


@dataclass(frozen=True)
class ParamCount:
    """Parameters by how a layout shards them (see the module docstring)."""

    sharded: float = 0.0
    replicated: float = 0.0
    expert: float = 0.0

    @property
    def total(self) -> float:
        return self.sharded + self.replicated + self.expert

    def __add__(self, other: ParamCount) -> ParamCount:
        return ParamCount(
            self.sharded + other.sharded,
            self.replicated + other.replicated,
            self.expert + other.expert,
        )

    def __mul__(self, factor: float) -> ParamCount:
        return ParamCount(self.sharded * factor, self.replicated * factor, self.expert * factor)

    __rmul__ = __mul__

    def per_rank(self, *, tp: int, ep: int = 1) -> float:
        """Parameters on one rank under tensor parallelism ``tp`` and expert parallelism ``ep``."""
        return self.sharded / tp + self.replicated + self.expert / (tp * ep)


def norm_params(t: TransformerShape) -> int:
    """One norm: a weight (RMSNorm) or a weight and a bias (LayerNorm)."""
    return t.hidden_size * (2 if t.norm == "layernorm" else 1)


def mlp_params(t: TransformerShape) -> int:
    """One MLP (one expert): fc1 of width f (2f when gated: gate and up), fc2 back to h."""
    h, f = t.hidden_size, t.ffn_hidden_size
    fc1_out = f * (2 if t.gated_mlp else 1)
    weights = h * fc1_out + f * h
    return weights + (fc1_out + h if t.bias else 0)


def attention_params(t: TransformerShape) -> int:
    """Fused QKV (a query heads, g key/value heads of width d) plus the output projection."""
    h, d = t.hidden_size, t.head_dim
    qkv_out = (t.num_attention_heads + 2 * t.kv_heads) * d
    weights = h * qkv_out + t.num_attention_heads * d * h
    return weights + (qkv_out + h if t.bias else 0)


def layer_params(t: TransformerShape) -> ParamCount:
    """One transformer layer: attention, MLP (or experts and a router) and two norms."""
    norms = 2 * norm_params(t)
    if not t.is_moe:
        return ParamCount(sharded=attention_params(t) + mlp_params(t), replicated=norms)
    router = t.hidden_size * t.num_experts
    experts = t.num_experts * mlp_params(t)
    return ParamCount(sharded=attention_params(t), replicated=norms + router, expert=experts)


def stack_params(t: TransformerShape) -> ParamCount:
    return layer_params(t) * t.num_layers


def embedding_params(lm: LanguageShape) -> ParamCount:
    """Token embedding (vocabulary-parallel) and, for GPT-3, the learned position table."""
    positions = lm.seq_length * lm.hidden_size if lm.learned_positions else 0
    return ParamCount(sharded=lm.vocab_size * lm.hidden_size, replicated=positions)


def head_params(lm: LanguageShape) -> ParamCount:
    """Final norm and, unless tied to the embedding, the output layer."""
    output = 0 if lm.tied_embeddings else lm.vocab_size * lm.hidden_size
    return ParamCount(sharded=output, replicated=norm_params(lm))


def vision_embedding_params(v: VisionShape) -> ParamCount:
    """Patch projection (a conv of kernel = stride = patch), class token, positions, pre-norm."""
    h = v.hidden_size
    patch = v.num_channels * v.patch_size**2 * h + (h if v.patch_bias else 0)
    extra = int(v.class_token) * h + v.seq_length * h + (norm_params(v) if v.pre_norm else 0)
    return ParamCount(sharded=patch, replicated=extra)


def vision_params(v: VisionShape) -> ParamCount:
    """The whole encoder, final norm included."""
    final_norm = ParamCount(replicated=norm_params(v))
    return vision_embedding_params(v) + stack_params(v) + final_norm


def projector_params(p: ProjectorShape) -> ParamCount:
    """``linear``: in→out; ``mlp2x_gelu``: in→out→out (LLaVA-1.5), both with biases."""
    first = p.input_size * p.output_size + p.output_size
    second = p.output_size * p.output_size + p.output_size if p.kind == "mlp2x_gelu" else 0
    return ParamCount(sharded=first + second)


def classifier_params(model: ModelShape) -> ParamCount:
    """ViT classification head: width → classes, with a bias."""
    if not model.num_classes or model.vision is None:
        return ParamCount()
    return ParamCount(sharded=(model.vision.hidden_size + 1) * model.num_classes)


def language_params(lm: LanguageShape) -> ParamCount:
    return embedding_params(lm) + stack_params(lm) + head_params(lm)


def model_params(model: ModelShape) -> ParamCount:
    """Every parameter of the model, split by sharding class."""
    total = ParamCount()
    if model.language is not None:
        total = total + language_params(model.language)
    if model.vision is not None:
        total = total + vision_params(model.vision)
    if model.projector is not None:
        total = total + projector_params(model.projector)
    return total + classifier_params(model)


def largest_matrices(model: ModelShape) -> dict[str, int]:
    """The largest single weight of each part (elements), as optica's models hold them: the
    fused ``linear_qkv`` and ``[gate; up]`` ``linear_fc1`` are one parameter each."""
    largest = {}
    if model.language is not None:
        lm = model.language
        largest["language"] = max(lm.vocab_size * lm.hidden_size, _largest_linear(lm))
    if model.vision is not None:
        v = model.vision
        patch = v.num_channels * v.patch_size**2 * v.hidden_size
        largest["vision"] = max(patch, v.seq_length * v.hidden_size, _largest_linear(v))
    if model.projector is not None:
        p = model.projector
        largest["projector"] = max(p.input_size, p.output_size) * p.output_size
    if model.num_classes and model.vision is not None:
        largest["classifier"] = model.vision.hidden_size * model.num_classes
    return largest


def _largest_linear(t: TransformerShape) -> int:
    h, d, f = t.hidden_size, t.head_dim, t.ffn_hidden_size
    qkv = h * (t.num_attention_heads + 2 * t.kv_heads) * d
    return max(qkv, h * f * (2 if t.gated_mlp else 1))


def count_parameters(model: ModelShape) -> int:
    """Total parameters (all experts counted), e.g. 6,738,415,616 for Llama-2-7B."""
    return round(model_params(model).total)
