"""Normalization layers: RMSNorm (Zhang & Sennrich, 2019) for Llama-family decoders and
LayerNorm for CLIP/SigLIP/ViT encoders.
"""

from __future__ import annotations

import torch
from torch import nn


class RMSNorm(nn.Module):
    """Root-mean-square norm, computed in float32 and cast back before the scale.

    The order (normalise in fp32, cast to the input dtype, then multiply by ``weight``) is the
    one transformers' ``LlamaRMSNorm`` uses, so bf16 outputs agree bit-for-bit in spirit, not
    only within tolerance.
    """

    def __init__(self, hidden_size: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.empty(hidden_size))
        if not self.weight.is_meta:
            self.reset_parameters()

    def reset_parameters(self) -> None:
        """Sets the scale to one (the identity at initialisation)."""
        nn.init.ones_(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalises the last dimension of ``x`` [..., hidden]."""
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


def build_norm(kind: str, hidden_size: int, eps: float) -> nn.Module:
    """Returns the norm named ``kind`` (``"rmsnorm"`` or ``"layernorm"``).

    Families name their norm in their config, so a shared layer builder can stay generic.
    """
    if kind == "rmsnorm":
        return RMSNorm(hidden_size, eps=eps)
    if kind == "layernorm":
        return nn.LayerNorm(hidden_size, eps=eps)
    raise ValueError(f"unknown norm {kind!r}; expected 'rmsnorm' or 'layernorm'")
