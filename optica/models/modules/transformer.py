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
        queries: slice | None = None,
    ) -> torch.Tensor:
        """Maps ``x`` [B, T, hidden] to [B, T, hidden] (``[B, len(queries), hidden]`` with
        ``queries``: those tokens' outputs alone); arguments as in ``SelfAttention``."""
        extra = {} if queries is None else {"queries": queries}
        normed = self.input_layernorm(x)
        attn = self.self_attention(normed, rope=rope, mask=mask, kv_cache=kv_cache, **extra)
        x = x if queries is None else x[:, queries]
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
        stop_at: int | None = None,
        last_queries: slice | None = None,
    ) -> torch.Tensor:
        """Runs every layer, then the final norm; shapes as in ``TransformerLayer``.

        Args:
            stop_at: Run only the first ``stop_at`` layers and skip the final norm: the hidden state
                a feature extractor takes from inside the stack (LLaVA's ``vision_feature_layer``),
                without paying for the layers after it.
            last_queries: Return only these tokens' states, computing the last layer's queries,
                projection and MLP for them alone: a classifier reads its class token
                (``slice(0, 1)``), a decoder's training loss nothing before its first learned
                label (``slice(start, None)``).
        """
        layers = self.layers if stop_at is None else self.layers[:stop_at]
        for index, layer in enumerate(layers):
            last = index == len(layers) - 1 and last_queries is not None
            extra = {"queries": last_queries} if last else {}
            x = layer(x, rope=rope, mask=mask, kv_cache=kv_cache, **extra)
        if stop_at is not None or self.final_layernorm is None:
            return x
        return self.final_layernorm(x)

    def hidden_states(
        self,
        x: torch.Tensor,
        *,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        mask: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        """The input and every layer's output, ``len(layers) + 1`` tensors [B, T, hidden], final
        norm not applied: Hugging Face's ``hidden_states`` convention for vision towers, so index
        ``-2`` means the same thing in both."""
        states = [x]
        for layer in self.layers:
            states.append(layer(states[-1], rope=rope, mask=mask))
        return states
