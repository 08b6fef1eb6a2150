"""Gradient-norm clipping for parallel layouts (torchtitan's ``clip_grad_norm_``).

``torch.nn.utils.clip_grad_norm_`` needs every gradient to be a plain tensor, or every one a
DTensor on one mesh; a parallel model mixes plain tensors (replicated norms), TP DTensors and
FSDP DTensors, and under pipeline parallelism each rank holds only its stages' gradients. Here the
norm is taken per group of like gradients, made global (DTensor reductions; a sum of squares over
the pipeline ranks), and every gradient is scaled by the same factor.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.tensor import DTensor


def clip_grad_norm_(
    parameters: Iterable[nn.Parameter],
    max_norm: float,
    pipeline_group: dist.ProcessGroup | None = None,
) -> torch.Tensor:
    """Scales gradients in place so their global L2 norm is at most ``max_norm``.

    Returns:
        The global norm before clipping (a plain scalar tensor).
    """
    grads = [p.grad for p in parameters if p.grad is not None]
    squares = torch.zeros((), dtype=torch.float32, device=_device(grads))
    for group in _groups(grads):
        norm = torch.nn.utils.get_total_norm(group)
        norm = norm.full_tensor() if isinstance(norm, DTensor) else norm
        squares += norm.float() ** 2
    if pipeline_group is not None:
        dist.all_reduce(squares, group=pipeline_group)
    total = squares.sqrt()
    scale = float(torch.clamp(max_norm / (total + 1e-6), max=1.0))
    if scale < 1.0:
        for grad in grads:
            grad.mul_(scale)
    return total


def _groups(grads: list[torch.Tensor]) -> list[list[torch.Tensor]]:
    """Gradients that one ``get_total_norm`` call can take: plain ones, and DTensors per mesh."""
    found: dict[object, list[torch.Tensor]] = {}
    for grad in grads:
        key = (grad.device_mesh, grad.placements) if isinstance(grad, DTensor) else None
        found.setdefault(key, []).append(grad)
    return list(found.values())


def _device(grads: list[torch.Tensor]) -> torch.device:
    if not grads:
        return torch.device("cpu")
    grad = grads[0]
    return grad.to_local().device if isinstance(grad, DTensor) else grad.device
