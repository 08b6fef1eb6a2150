"""InternViT (Chen et al., 2024, "InternVL: Scaling up Vision Foundation Models"; the 300M tower
is distilled from InternViT-6B, "How Far Are We to GPT-4V?"): a ViT with a class token whose
residual branches are scaled per channel (layer scale, Touvron et al., 2021, "Going deeper with
Image Transformers", ``ls1``/``ls2``) and dropped per sample in training (stochastic depth).

The published definition is OpenGVLab's ``modeling_intern_vit.py`` (InternViT-300M-448px); the
300M tower uses LayerNorm and no q/k normalisation, so both are the shared encoder's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from optica.models.modules.kv_cache import KVCache
from optica.models.modules.transformer import TransformerLayer
from optica.models.vision.encoder import VisionTransformer, VisionTransformerConfig


@dataclass
class InternViTConfig(VisionTransformerConfig):
    """InternViT's architecture (shared encoder fields, plus):

    Args:
        layer_scale_init: Initial value of ``ls1``/``ls2`` (InternViT's ``initializer_factor``).
        drop_path_rate: Stochastic-depth rate of the last layer; rates rise linearly from 0.
    """

    activation: str = "gelu"
    layernorm_epsilon: float = 1e-6
    add_class_token: bool = True
    pre_layernorm: bool = False
    post_layernorm: str = "none"
    patch_bias: bool = True
    layer_scale_init: float = 0.1
    drop_path_rate: float = 0.0


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth (Huang et al., 2016): zeroes a residual branch for a random subset of
    samples and rescales the rest, so the expected output is unchanged."""
    if rate == 0.0 or not training:
        return x
    keep = 1.0 - rate
    mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
    return x * mask / keep


class LayerScaleTransformerLayer(TransformerLayer):
    """``x + drop_path(attn(norm(x)) * ls1)`` then ``x + drop_path(mlp(norm(x)) * ls2)``.

    Args:
        drop_path_rate: This layer's stochastic-depth rate.
        **parts: ``TransformerLayer``'s arguments.
    """

    def __init__(self, *, drop_path_rate: float = 0.0, **parts: nn.Module | float) -> None:
        super().__init__(**parts)
        hidden = self.input_layernorm.normalized_shape[0]
        self.ls1 = nn.Parameter(torch.empty(hidden))
        self.ls2 = nn.Parameter(torch.empty(hidden))
        self.drop_path_rate = drop_path_rate

    def forward(
        self,
        x: torch.Tensor,
        *,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        mask: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
    ) -> torch.Tensor:
        """Maps ``x`` [B, T, hidden] to [B, T, hidden]."""
        attn = self.self_attention(self.input_layernorm(x), rope=rope, mask=mask, kv_cache=kv_cache)
        x = x + self._branch(attn * self.ls1)
        return x + self._branch(self.mlp(self.pre_mlp_layernorm(x)) * self.ls2)

    def _branch(self, out: torch.Tensor) -> torch.Tensor:
        return drop_path(self.hidden_dropout(out), self.drop_path_rate, self.training)


class InternViTModel(VisionTransformer):
    """The shared encoder with layer-scaled residuals; same call as ``VisionTransformer``."""

    def _layer(self, index: int) -> LayerScaleTransformerLayer:
        c = self.config
        rate = c.drop_path_rate * index / max(c.num_layers - 1, 1)  # torch.linspace(0, rate, n)
        return LayerScaleTransformerLayer(
            **self._layer_parts(index), hidden_dropout=c.hidden_dropout, drop_path_rate=rate
        )

    def _init_parameters(self, generator: torch.Generator) -> None:
        super()._init_parameters(generator)
        for layer in self.decoder.layers:
            nn.init.constant_(layer.ls1, self.config.layer_scale_init)
            nn.init.constant_(layer.ls2, self.config.layer_scale_init)
