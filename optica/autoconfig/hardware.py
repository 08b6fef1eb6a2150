"""GPUs, clusters and the efficiencies the time model assumes.

Presets are the SXM parts' datasheet numbers: dense bf16 tensor-core peak, HBM bandwidth,
NVLink bandwidth per GPU per direction (A100: 600 GB/s total → 300; H100/H200: 900 → 450) and
one InfiniBand NIC per GPU (A100 nodes: HDR 200 Gb/s = 25 GB/s; H100/H200: NDR 400 Gb/s =
50 GB/s). ``memory_gb`` is what the GPU is sold as; we treat it as GiB, as torch reports memory,
and keep :attr:`Efficiency.memory_headroom` free for the CUDA context, NCCL buffers and
allocator fragmentation.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from optica.run.errors import ConfigError, did_you_mean


@dataclass(frozen=True)
class GpuSpec:
    """One GPU model.

    Args:
        name: Display name.
        memory_gb: Memory per GPU (GiB).
        peak_tflops: Dense bf16 peak, TFLOP/s.
        hbm_gbs: Memory bandwidth, GB/s.
        nvlink_gbs: Intra-node bandwidth per GPU and direction, GB/s.
        ib_gbs: Inter-node bandwidth per GPU and direction, GB/s.
        flash_attention: The attention kernel never stores the score matrix (FlashAttention /
            cuDNN on GPUs; torch's CPU SDPA too, ``_scaled_dot_product_flash_attention_for_cpu``,
            unless attention dropout forces the math path, which keeps the softmax output).
    """

    name: str
    memory_gb: float
    peak_tflops: float
    hbm_gbs: float
    nvlink_gbs: float
    ib_gbs: float
    flash_attention: bool = True

    def __post_init__(self) -> None:
        for field in ("memory_gb", "peak_tflops", "hbm_gbs", "nvlink_gbs", "ib_gbs"):
            value = getattr(self, field)
            if not isinstance(value, (int, float)) or value <= 0:
                raise ConfigError(f"GPU {self.name!r}: {field} must be positive, got {value!r}")


GPUS = {
    "a100-40gb": GpuSpec("A100 40GB", 40, 312, 1555, 300, 25),
    "a100-80gb": GpuSpec("A100 80GB", 80, 312, 2039, 300, 25),
    "h100-80gb": GpuSpec("H100 80GB", 80, 989, 3350, 450, 50),
    "h200-141gb": GpuSpec("H200 141GB", 141, 989, 4800, 450, 50),
}


def gpu_preset(name: str, **overrides: float) -> GpuSpec:
    """A preset by name (``"h200-141gb"``, or a prefix such as ``"h200"``), with overrides."""
    key = name.lower()
    matches = [k for k in GPUS if k == key or k.startswith(key + "-")]
    if len(matches) != 1:
        hint = did_you_mean(key, GPUS) or f" (known: {', '.join(GPUS)})"
        raise ConfigError(f"unknown or ambiguous GPU {name!r}{hint}")
    given = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(GPUS[matches[0]], **given)


def gpu_for_memory(memory_gb: float) -> GpuSpec:
    """The newest preset with ``memory_gb``, or an H100-class GPU with that memory."""
    for spec in reversed(GPUS.values()):
        if spec.memory_gb == memory_gb:
            return spec
    return dataclasses.replace(GPUS["h100-80gb"], name=f"GPU {memory_gb:g}GB", memory_gb=memory_gb)


@dataclass(frozen=True)
class Cluster:
    """``num_nodes`` nodes of ``gpus_per_node`` GPUs of one kind."""

    num_nodes: int
    gpus_per_node: int
    gpu: GpuSpec

    def __post_init__(self) -> None:
        for field in ("num_nodes", "gpus_per_node"):
            value = getattr(self, field)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{field} must be a positive integer, got {value!r}")

    @property
    def world_size(self) -> int:
        return self.num_nodes * self.gpus_per_node

    def bandwidth(self, span: int) -> float:
        """Bytes/s per GPU for a group whose ranks span ``span`` consecutive ranks."""
        within_node = span <= self.gpus_per_node
        return (self.gpu.nvlink_gbs if within_node else self.gpu.ib_gbs) * 1e9


@dataclass(frozen=True)
class Efficiency:
    """Fractions of peak the time model assumes, and fixed latencies. Stated, not fitted.

    Args:
        compute: Sustained fraction of peak tensor FLOP/s (an MFU-like number; large-model
            training on H100 reaches 0.4–0.55).
        hbm: Sustained fraction of HBM bandwidth.
        network: Sustained fraction of link bandwidth for NCCL collectives.
        layer_overhead_s: Launch and synchronisation cost per layer and pass.
        collective_latency_s: Latency of each collective or point-to-point transfer.
        memory_headroom: Fraction of GPU memory kept free (context, NCCL, fragmentation).
        overlap: Fraction of the data-parallel traffic that can hide behind compute which it
            does hide (GPUs: NCCL runs on its own streams, 1.0; CPU processes with gloo share
            their cores with the compute, 0.0).
    """

    compute: float = 0.5
    hbm: float = 0.8
    network: float = 0.7
    layer_overhead_s: float = 30e-6
    collective_latency_s: float = 20e-6
    memory_headroom: float = 0.1
    overlap: float = 1.0
