"""Feed-forward blocks with Megatron names: ``linear_fc1`` (hidden → ffn, or → 2·ffn when gated)
and ``linear_fc2`` (ffn → hidden).

SwiGLU (Shazeer, 2020, "GLU Variants Improve Transformer") fuses gate and up projections into one
``linear_fc1`` laid out ``[gate; up]`` along the output dimension, as Megatron-Core does, so one
GEMM serves both and LoRA patterns such as ``*.mlp.linear_fc1`` apply verbatim.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    """OpenAI CLIP's sigmoid approximation of GELU."""
    return x * torch.sigmoid(1.702 * x)


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "silu": F.silu,
    "gelu": F.gelu,
    "gelu_tanh": _gelu_tanh,
    "quick_gelu": quick_gelu,
}


class MLP(nn.Module):
    """Two-layer MLP, optionally gated (``gated=True`` with ``silu`` is SwiGLU).

    Args:
        hidden_size: Model width.
        ffn_hidden_size: Inner width (per half when gated).
        activation: A key of ``ACTIVATIONS``.
        gated: Whether ``linear_fc1`` produces ``[gate; up]`` and the output is ``act(gate) * up``.
        bias: Whether both linears carry a bias.
    """

    def __init__(
        self,
        hidden_size: int,
        ffn_hidden_size: int,
        *,
        activation: str,
        gated: bool,
        bias: bool = False,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            known = ", ".join(ACTIVATIONS)
            raise ValueError(f"unknown activation {activation!r}; expected one of {known}")
        self.activation = activation
        self.gated = gated
        fc1_out = 2 * ffn_hidden_size if gated else ffn_hidden_size
        self.linear_fc1 = nn.Linear(hidden_size, fc1_out, bias=bias)
        self.linear_fc2 = nn.Linear(ffn_hidden_size, hidden_size, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps ``x`` [..., hidden] to [..., hidden]."""
        act = ACTIVATIONS[self.activation]
        h = self.linear_fc1(x)
        if self.gated:
            gate, up = h.chunk(2, dim=-1)
            h = act(gate) * up
        else:
            h = act(h)
        return self.linear_fc2(h)
