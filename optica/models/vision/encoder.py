"""The Vision Transformer encoder (Dosovitskiy et al., 2021, "An Image is Worth 16x16 Words") that
CLIP (Radford et al., 2021), SigLIP (Zhai et al., 2023), InternViT and the ViT classifier share.

They differ only in small switches — a class token, CLIP's norm before the first layer, where the
final norm applies, the MLP activation — so one module with a config covers all of them and each
family is a config subclass plus a Hugging Face key map. Field names follow NeMo/Megatron-Core
(``patch_dim``, ``img_h``, ``img_w``, ``add_class_token``); parameter names are Megatron's
(``decoder.layers.N.self_attention.linear_qkv`` ...), the same as on the language side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from optica.models.base import OpticaModel, init_parameters
from optica.models.modules.attention import SelfAttention
from optica.models.modules.mlp import ACTIVATIONS, MLP
from optica.models.modules.patch_embed import PatchEmbedding
from optica.models.modules.pos_embed import PositionEmbedding
from optica.models.modules.transformer import TransformerBlock, TransformerLayer
from optica.run.errors import ConfigError, did_you_mean

POST_LAYERNORMS = ("sequence", "pooled", "none")


@dataclass
class VisionTransformerConfig:
    """Architecture of a ViT-style image encoder.

    Args:
        hidden_size: Token width.
        ffn_hidden_size: MLP inner width.
        num_layers: Encoder layers.
        num_attention_heads: Attention heads.
        patch_dim: Side of a square patch.
        img_h: Image height the position table is learned for.
        img_w: Image width the position table is learned for.
        num_channels: Input channels.
        add_class_token: Prepend a learned class token (CLIP, ViT, InternViT; not SigLIP).
        activation: MLP activation, a key of ``ACTIVATIONS``.
        layernorm_epsilon: LayerNorm epsilon.
        pre_layernorm: A norm on the embeddings before the first layer (CLIP's ``ln_pre``).
        post_layernorm: Where the final norm applies: ``"sequence"`` (every output token: SigLIP,
            ViT), ``"pooled"`` (only the pooled class token: CLIP), or ``"none"`` (InternViT).
        patch_bias: Whether the patch projection has a bias (CLIP's has none).
        qkv_bias: Whether q, k and v have biases.
        hidden_dropout: Dropout on the embeddings and each branch output (training only).
        attention_dropout: Dropout on attention probabilities (training only).
        init_method_std: Std of the normal init.
    """

    hidden_size: int = 768
    ffn_hidden_size: int = 3072
    num_layers: int = 12
    num_attention_heads: int = 12
    patch_dim: int = 16
    img_h: int = 224
    img_w: int = 224
    num_channels: int = 3
    add_class_token: bool = True
    activation: str = "gelu"
    layernorm_epsilon: float = 1e-6
    pre_layernorm: bool = False
    post_layernorm: str = "sequence"
    patch_bias: bool = True
    qkv_bias: bool = True
    hidden_dropout: float = 0.0
    attention_dropout: float = 0.0
    init_method_std: float = 0.02

    def __post_init__(self) -> None:
        name = type(self).__name__
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"{name}: hidden_size={self.hidden_size} is not divisible by "
                f"num_attention_heads={self.num_attention_heads}"
            )
        if min(self.img_h, self.img_w) < self.patch_dim:
            raise ConfigError(
                f"{name}: image {self.img_h}x{self.img_w} is smaller than "
                f"patch_dim={self.patch_dim}"
            )
        _check_choice(name, "activation", self.activation, ACTIVATIONS)
        _check_choice(name, "post_layernorm", self.post_layernorm, POST_LAYERNORMS)

    @property
    def grid_size(self) -> tuple[int, int]:
        """Patch rows and columns; pixels past the last whole patch are ignored (a VALID
        convolution, as SigLIP-so400m's 27 patches of 14 px over 384 px)."""
        return self.img_h // self.patch_dim, self.img_w // self.patch_dim

    @property
    def num_patches(self) -> int:
        """Patch tokens per image."""
        return math.prod(self.grid_size)

    @property
    def class_token_len(self) -> int:
        """Prefix tokens before the patches (0 or 1)."""
        return int(self.add_class_token)

    @property
    def seq_length(self) -> int:
        """Tokens per image inside the encoder."""
        return self.num_patches + self.class_token_len


def _check_choice(name: str, field: str, value: str, choices) -> None:
    if value not in choices:
        hint = did_you_mean(value, choices)
        raise ConfigError(f"{name}: {field}={value!r} is not one of {', '.join(choices)}{hint}")


def feature_layer_depth(index: int, num_layers: int) -> int:
    """Layers to run for hidden state ``index`` in Hugging Face's ``hidden_states`` numbering
    (0 = embeddings, ``num_layers`` or -1 = the last layer's output, -2 = the one before)."""
    if not -(num_layers + 1) <= index <= num_layers:
        raise ConfigError(
            f"vision_feature_layer={index} is out of range for an encoder of {num_layers} layers "
            f"(expected {-(num_layers + 1)}..{num_layers})"
        )
    return index if index >= 0 else num_layers + 1 + index


class VisionTransformer(OpticaModel):
    """Image [B, C, img_h, img_w] → tokens [B, seq_length, hidden_size].

    Built on the meta device (no memory); call ``init_weights`` or ``load_weights``.

    Args:
        config: The architecture.
    """

    def __init__(self, config: VisionTransformerConfig) -> None:
        super().__init__(config)
        hidden, eps = config.hidden_size, config.layernorm_epsilon
        with torch.device("meta"):
            self.patch_embed = PatchEmbedding(
                config.num_channels,
                hidden,
                config.patch_dim,
                bias=config.patch_bias,
                allow_remainder=True,
            )
            token = nn.Parameter(torch.empty(1, 1, hidden)) if config.add_class_token else None
            self.register_parameter("class_token", token)
            self.position_embeddings = PositionEmbedding(config.seq_length, hidden)
            self.embedding_dropout = nn.Dropout(config.hidden_dropout)
            self.ln_pre = nn.LayerNorm(hidden, eps=eps) if config.pre_layernorm else None
            final = nn.LayerNorm(hidden, eps=eps) if config.post_layernorm == "sequence" else None
            layers = [self._layer(index) for index in range(config.num_layers)]
            self.decoder = TransformerBlock(layers, final)
            pooled = config.post_layernorm == "pooled"
            self.ln_post = nn.LayerNorm(hidden, eps=eps) if pooled else None

    def _layer(self, index: int) -> TransformerLayer:
        """One pre-norm encoder layer; families with a different residual override this."""
        dropout = self.config.hidden_dropout
        return TransformerLayer(**self._layer_parts(index), hidden_dropout=dropout)

    def _layer_parts(self, index: int) -> dict[str, nn.Module]:
        """Attention, MLP and the two norms of layer ``index``."""
        c = self.config
        attention = SelfAttention(
            c.hidden_size,
            c.num_attention_heads,
            c.num_attention_heads,
            c.hidden_size // c.num_attention_heads,
            qkv_bias=c.qkv_bias,
            proj_bias=True,
            causal=False,
            dropout=c.attention_dropout,
            layer_idx=index,
        )
        width, eps = c.hidden_size, c.layernorm_epsilon
        return {
            "self_attention": attention,
            "mlp": MLP(width, c.ffn_hidden_size, activation=c.activation, gated=False, bias=True),
            "input_layernorm": nn.LayerNorm(width, eps=eps),
            "pre_mlp_layernorm": nn.LayerNorm(width, eps=eps),
        }

    def forward(
        self,
        images: torch.Tensor,
        *,
        feature_layer: int | None = None,
        first_tokens: int | None = None,
    ) -> torch.Tensor:
        """Encodes ``images`` [B, C, img_h, img_w] → [B, seq_length, hidden_size].

        Args:
            images: Normalised pixels at the configured size.
            feature_layer: Return Hugging Face's ``hidden_states[feature_layer]`` instead of the
                final output (no final norm), running only the layers it needs.
            first_tokens: The caller reads only the first this many output tokens (a class
                token): the last layer computes queries, projection and MLP for them alone and
                ``[B, first_tokens, hidden]`` may be returned. Every token is returned when a hook
                rewrites the layer stack's input or output (context parallelism splits the
                sequence over ranks there).
        """
        x = self.embed(images)
        if feature_layer is None:
            hooked = self.decoder._forward_pre_hooks or self.decoder._forward_hooks
            last = None if hooked or first_tokens is None else slice(0, first_tokens)
            return self.decoder(x, last_queries=last)
        return self.decoder(x, stop_at=feature_layer_depth(feature_layer, self.config.num_layers))

    def hidden_states(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The embeddings and every layer's output (``num_layers + 1`` tensors, no final norm)."""
        return self.decoder.hidden_states(self.embed(images))

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Patches, class token and positions → [B, seq_length, hidden] (CLIP: then ln_pre)."""
        c = self.config
        if tuple(images.shape[-3:]) != (c.num_channels, c.img_h, c.img_w):
            raise ValueError(
                f"{type(self).__name__} expects images [B, {c.num_channels}, {c.img_h}, "
                f"{c.img_w}], got {list(images.shape)}; resize them, or resample the position "
                "embeddings (optica.models.modules.resample_abs_pos_embed) and set img_h/img_w"
            )
        x = self.patch_embed(images.to(self.patch_embed.proj.weight.dtype))
        if self.class_token is not None:
            x = torch.cat((self.class_token.to(x.dtype).expand(x.shape[0], -1, -1), x), dim=1)
        x = self.embedding_dropout(self.position_embeddings(x))
        return x if self.ln_pre is None else self.ln_pre(x)

    def pool(self, hidden: torch.Tensor) -> torch.Tensor:
        """The image embedding [B, hidden]: the class token of the last hidden state [B, N, hidden]
        (through CLIP's ``ln_post``), else the mean over tokens."""
        pooled = hidden[:, 0] if self.class_token is not None else hidden.mean(dim=1)
        return pooled if self.ln_post is None else self.ln_post(pooled)

    def _init_parameters(self, generator: torch.Generator) -> None:
        std = self.config.init_method_std
        init_parameters(self, generator, std=std, output_std=std)
