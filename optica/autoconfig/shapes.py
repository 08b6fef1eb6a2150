"""Model shapes: the few numbers that decide parameters, FLOPs and memory.

A shape is independent of optica's model classes, so the auto-configurator can size models that
do not exist as code yet (a 340B Nemotron, a Mixtral) and the analytic models stay plain
arithmetic. Three kinds of model are described by one :class:`ModelShape`:

* a GPT-family language model: ``ModelShape(language=...)``;
* a LLaVA-style VLM: vision encoder → projector → language model (``language``, ``vision``,
  ``projector``); the language model is the pipelined backbone, the vision encoder and projector
  live on the first pipeline stage, as in NeMo's NeVA;
* a ViT classifier: ``ModelShape(vision=..., num_classes=...)``; the encoder is the backbone.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from optica.run.errors import ConfigError

NORMS = ("rmsnorm", "layernorm")
ACTIVATIONS = ("silu", "gelu", "gelu_tanh", "squared_relu")
PROJECTORS = ("mlp2x_gelu", "linear")


@dataclass(frozen=True)
class TransformerShape:
    """One stack of identical transformer layers.

    Args:
        hidden_size: Model width h.
        ffn_hidden_size: MLP width f (per expert for MoE).
        num_layers: Number of layers L.
        num_attention_heads: Query heads a.
        num_query_groups: Key/value heads g (GQA); None means g = a (multi-head attention).
        kv_channels: Head dimension d; None means h / a (Gemma sets it apart from h / a).
        gated_mlp: SwiGLU/GeGLU (three matrices, fc1 fused as gate+up) instead of GELU/ReLU².
        bias: Whether linear layers have biases (GPT-3, ViT, CLIP) or not (Llama).
        norm: ``"rmsnorm"`` (weight only) or ``"layernorm"`` (weight and bias).
        dropout: Whether dropout is on; it stores one byte of mask per element (Korthikanti).
        num_experts: Experts per MoE layer; None for a dense MLP.
        moe_router_topk: Experts each token is routed to.
    """

    hidden_size: int
    ffn_hidden_size: int
    num_layers: int
    num_attention_heads: int
    num_query_groups: int | None = None
    kv_channels: int | None = None
    gated_mlp: bool = True
    bias: bool = False
    norm: str = "rmsnorm"
    dropout: bool = False
    num_experts: int | None = None
    moe_router_topk: int = 2

    def __post_init__(self) -> None:
        _check_positive(self, ("hidden_size", "ffn_hidden_size", "num_layers"))
        _check_positive(self, ("num_attention_heads", "num_query_groups", "kv_channels"))
        _check_positive(self, ("num_experts", "moe_router_topk"))
        if self.norm not in NORMS:
            raise ConfigError(f"norm must be one of {NORMS}, got {self.norm!r}")
        if self.num_attention_heads % self.kv_heads:
            raise ConfigError(
                f"num_attention_heads={self.num_attention_heads} is not a multiple of "
                f"num_query_groups={self.kv_heads}"
            )
        if self.kv_channels is None and self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"hidden_size={self.hidden_size} is not divisible by num_attention_heads="
                f"{self.num_attention_heads}; set kv_channels"
            )

    @property
    def kv_heads(self) -> int:
        return self.num_query_groups or self.num_attention_heads

    @property
    def head_dim(self) -> int:
        return self.kv_channels or self.hidden_size // self.num_attention_heads

    @property
    def is_moe(self) -> bool:
        return self.num_experts is not None

    @property
    def experts_per_token(self) -> int:
        """MLPs each token passes through: top-k for MoE, 1 for a dense MLP."""
        return self.moe_router_topk if self.is_moe else 1


@dataclass(frozen=True)
class LanguageShape(TransformerShape):
    """A decoder-only language model: token embedding, causal layers, final norm, output layer.

    Args:
        vocab_size: Vocabulary size V.
        seq_length: Training sequence length s (tokens per sample, image tokens included).
        tied_embeddings: Output layer shares the embedding matrix (GPT-3, Gemma, Llama 3.2 1B).
        learned_positions: A learned position table of ``seq_length`` rows (GPT-3) instead of RoPE.
        activation: The MLP's activation: ``"silu"`` (Llama, Mistral), ``"gelu"`` (GPT-3),
            ``"gelu_tanh"`` (Gemma's GeGLU), ``"squared_relu"`` (Nemotron). The analytic models
            do not depend on it; the runner launches what optica's Llama computes (SiLU).
    """

    vocab_size: int = 32000
    seq_length: int = 4096
    tied_embeddings: bool = False
    learned_positions: bool = False
    activation: str = "silu"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_positive(self, ("vocab_size", "seq_length"))
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")


@dataclass(frozen=True)
class VisionShape(TransformerShape):
    """A ViT encoder: patch embedding, optional class token, bidirectional layers.

    Args:
        image_size: Square image side in pixels.
        patch_size: Square patch side in pixels.
        num_channels: Image channels.
        class_token: Whether a learned class token is prepended (ViT, CLIP).
        patch_bias: Whether the patch projection has a bias (ViT yes, CLIP no).
        pre_norm: A norm after the embeddings, before the layers (CLIP's ``pre_layrnorm``).
    """

    gated_mlp: bool = False
    bias: bool = True
    norm: str = "layernorm"
    image_size: int = 224
    patch_size: int = 16
    num_channels: int = 3
    class_token: bool = True
    patch_bias: bool = True
    pre_norm: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_positive(self, ("image_size", "patch_size", "num_channels"))
        if self.image_size % self.patch_size:
            raise ConfigError(
                f"image_size={self.image_size} is not a multiple of patch_size={self.patch_size}"
            )

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @property
    def seq_length(self) -> int:
        """Tokens the encoder layers see per image: patches plus the class token."""
        return self.num_patches + int(self.class_token)


@dataclass(frozen=True)
class ProjectorShape:
    """Vision features → language embeddings: ``mlp2x_gelu`` (Linear-GELU-Linear) or ``linear``.

    Args:
        input_size: Vision encoder width.
        output_size: Language model width (also the MLP's hidden width, as in LLaVA-1.5).
        kind: ``"mlp2x_gelu"`` or ``"linear"``.
    """

    input_size: int
    output_size: int
    kind: str = "mlp2x_gelu"

    def __post_init__(self) -> None:
        _check_positive(self, ("input_size", "output_size"))
        if self.kind not in PROJECTORS:
            raise ConfigError(f"projector kind must be one of {PROJECTORS}, got {self.kind!r}")


@dataclass(frozen=True)
class ModelShape:
    """A whole model: a language model, a VLM or a ViT classifier (see the module docstring).

    Args:
        name: Display name, e.g. ``"llama2_7b"``.
        language: The language model, if any.
        vision: The vision encoder, if any.
        projector: Vision → language projector (VLMs only).
        num_classes: Classification head size (ViT classifiers only).
        images_per_sample: Images in each VLM sample.
        drop_class_token: VLMs drop the encoder's class token before the projector (LLaVA).
    """

    name: str
    language: LanguageShape | None = None
    vision: VisionShape | None = None
    projector: ProjectorShape | None = None
    num_classes: int | None = None
    images_per_sample: int = 1
    drop_class_token: bool = True

    def __post_init__(self) -> None:
        if self.language is None and self.vision is None:
            raise ConfigError(
                f"model {self.name!r}: give a language model, a vision encoder, or both"
            )
        if self.language and self.vision and self.projector is None:
            raise ConfigError(f"model {self.name!r}: a VLM needs a projector")
        if self.language is None and not self.num_classes:
            raise ConfigError(f"model {self.name!r}: a ViT classifier needs num_classes")

    @property
    def kind(self) -> str:
        """``"gpt"``, ``"vlm"`` or ``"vit"``."""
        if self.language is None:
            return "vit"
        return "vlm" if self.vision is not None else "gpt"

    @property
    def backbone(self) -> TransformerShape:
        """The stack that pipeline parallelism splits: the language model, else the encoder."""
        return self.language if self.language is not None else self.vision  # type: ignore[return-value]

    @property
    def stacks(self) -> tuple[TransformerShape, ...]:
        """Every transformer stack; tensor parallelism splits all of them."""
        return tuple(s for s in (self.language, self.vision) if s is not None)

    @property
    def seq_length(self) -> int:
        """Tokens per sample through the backbone."""
        return self.backbone.seq_length  # type: ignore[attr-defined]

    @property
    def image_tokens(self) -> int:
        """Language-model tokens each image becomes (LLaVA-1.5 at 336 px, patch 14: 576)."""
        if self.vision is None or self.language is None:
            return 0
        return self.vision.seq_length - int(self.vision.class_token and self.drop_class_token)

    def with_seq_length(self, seq_length: int) -> ModelShape:
        """The same model trained at another sequence length (language models only)."""
        if self.language is None:
            raise ConfigError(
                f"model {self.name!r} is a ViT classifier: its sequence length is set by "
                "image_size and patch_size, not --seq-length"
            )
        return dataclasses.replace(
            self, language=dataclasses.replace(self.language, seq_length=seq_length)
        )


def _check_positive(shape: object, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(shape, name)
        if value is not None and (not isinstance(value, int) or value < 1):
            where = f"{type(shape).__name__}.{name}"
            raise ConfigError(f"{where} must be a positive integer, got {value!r}")
