"""The device mesh every parallel plan works on.

Dims, outermost first: ``pp``, ``dp``, ``cp``, ``tp`` — Megatron-Core's rank order (TP innermost,
so tensor-parallel peers are neighbours, on one node; PP outermost), the order
``optica.autoconfig.layout`` describes. ``dp_cp`` flattens data and context parallelism: both
average gradients over it (context-parallel ranks hold different tokens of the same samples).
"""

from __future__ import annotations

from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

MESH_DIMS = ("pp", "dp", "cp", "tp")


def build_mesh(*, dp: int, pp: int, cp: int, tp: int, device_type: str) -> DeviceMesh:
    """A mesh of ``pp × dp × cp × tp`` ranks with the flattened ``dp_cp`` dim."""
    mesh = init_device_mesh(device_type, (pp, dp, cp, tp), mesh_dim_names=MESH_DIMS)
    mesh["dp", "cp"]._flatten("dp_cp")
    return mesh
