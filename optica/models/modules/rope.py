"""Rotary position embeddings (Su et al., 2021, "RoFormer"), with Llama-3.1's frequency-dependent
scaling (Meta, "The Llama 3 Herd of Models", 2024; the ``llama3`` rope type in transformers).

Uses the "rotate half" convention of Hugging Face checkpoints (the two halves of each head are the
real and imaginary parts), which is what imported q/k weights expect. The module holds no buffers:
frequencies are a few dozen numbers recomputed per call, so a model built on the meta device
needs nothing re-initialised after its weights are assigned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class RopeScaling:
    """Llama-3.1 ``rope_scaling``: long wavelengths are slowed by ``factor``, short ones kept,
    those in between interpolated smoothly.

    Args:
        factor: Slow-down of the low frequencies (8 for Llama 3.1).
        low_freq_factor: ``original_max_position_embeddings / low_freq_factor`` is the wavelength
            above which frequencies are fully scaled.
        high_freq_factor: ``original_max_position_embeddings / high_freq_factor`` is the wavelength
            below which frequencies are kept.
        original_max_position_embeddings: Context length of pre-training before the extension.
    """

    factor: float = 8.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int = 8192


def rope_inv_freq(
    head_dim: int,
    base: float,
    scaling: RopeScaling | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Returns the inverse frequencies [head_dim // 2] in float32."""
    exponents = torch.arange(0, head_dim, 2, dtype=torch.int64, device=device).float() / head_dim
    inv_freq = 1.0 / (base**exponents)
    return inv_freq if scaling is None else _llama3_scale(inv_freq, scaling)


def _llama3_scale(inv_freq: torch.Tensor, s: RopeScaling) -> torch.Tensor:
    old_len = s.original_max_position_embeddings
    low_freq_wavelen = old_len / s.low_freq_factor
    high_freq_wavelen = old_len / s.high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_freq_wavelen, inv_freq / s.factor, inv_freq)
    smooth = (old_len / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor)
    smoothed = (1 - smooth) * scaled / s.factor + smooth * scaled
    medium = (wavelen >= high_freq_wavelen) & (wavelen <= low_freq_wavelen)
    return torch.where(medium, smoothed, scaled)


class RotaryEmbedding(nn.Module):
    """Computes ``(cos, sin)`` tables for given positions.

    Args:
        head_dim: Per-head width rotated (the whole head).
        base: ``rope_theta``.
        scaling: Optional Llama-3.1 scaling.
    """

    def __init__(self, head_dim: int, base: float = 10000.0, scaling: RopeScaling | None = None):
        super().__init__()
        self.head_dim = head_dim
        self.base = base
        self.scaling = scaling

    def forward(
        self, position_ids: torch.Tensor, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Maps ``position_ids`` [B, T] to ``(cos, sin)``, each [B, T, head_dim] in ``dtype``.

        Angles are formed in float32 (positions up to 128k lose precision in bf16).
        """
        inv_freq = rope_inv_freq(self.head_dim, self.base, self.scaling, position_ids.device)
        freqs = position_ids[..., None].float() * inv_freq
        angles = torch.cat((freqs, freqs), dim=-1)
        return angles.cos().to(dtype), angles.sin().to(dtype)

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, base={self.base}, scaling={self.scaling}"


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotates ``x`` [B, T, heads, head_dim] by the tables ``cos``/``sin`` [B, T, head_dim]."""
    cos, sin = cos.unsqueeze(2), sin.unsqueeze(2)
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin
