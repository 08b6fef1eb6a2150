"""Pre-norm transformer layer and layer stack, assembled from injected parts.

A family builds its attention, MLP and norms and hands them in (torchtune-style composition), so
the Llama decoder, CLIP/SigLIP encoders and the ViT classifier share one residual block. The
attribute names (``self_attention``, ``mlp``, ``input_layernorm``, ``pre_mlp_layernorm``,
``layers``, ``final_layernorm``) are Megatron-Core's, which the seed's LoRA patterns target.
"""

from __future__ import annotations

import torch
from torch import nn

from optica.models.modules.attention import SelfAttention
from optica.models.modules.kv_cache import KVCache


class TransformerLayer(nn.Module):
    """``x + attn(norm(x))`` then ``x + mlp(norm(x))``.

    Args:
        self_attention: The attention module.
        mlp: The feed-forward module.
        input_layernorm: Norm before attention.
        pre_mlp_layernorm: Norm before the MLP.
        hidden_dropout: Dropout on each branch's output before the residual add (training only).
    """

    def __init__(
        self,
        *,
        self_attention: SelfAttention,
        mlp: nn.Module,
        input_layernorm: nn.Module,
        pre_mlp_layernorm: nn.Module,
        hidden_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.input_layernorm = input_layernorm
        self.self_attention = self_attention
        self.pre_mlp_layernorm = pre_mlp_layernorm
        self.mlp = mlp
        self.hidden_dropout = nn.Dropout(hidden_dropout)

    def forward(
        self,
        x: torch.Tensor,
        *,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        mask: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
    ) -> torch.Tensor:
        """Maps ``x`` [B, T, hidden] to [B, T, hidden]; arguments as in ``SelfAttention``."""
        attn = self.self_attention(self.input_layernorm(x), rope=rope, mask=mask, kv_cache=kv_cache)
        x = x + self.hidden_dropout(attn)
        return x + self.hidden_dropout(self.mlp(self.pre_mlp_layernorm(x)))


class TransformerBlock(nn.Module):
    """A stack of layers with an optional final norm.

    Args:
        layers: The layers, applied in order.
        final_layernorm: Norm after the last layer, or None (encoders that norm elsewhere).
    """

    def __init__(
        self, layers: list[TransformerLayer], final_layernorm: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.final_layernorm = final_layernorm

    def forward(
        self,
        x: torch.Tensor,
        *,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        mask: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
    ) -> torch.Tensor:
        """Runs every layer, then the final norm; shapes as in ``TransformerLayer``."""
        for layer in self.layers:
            x = layer(x, rope=rope, mask=mask, kv_cache=kv_cache)
        return x if self.final_layernorm is None else self.final_layernorm(x)
