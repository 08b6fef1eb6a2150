"""What is trained, and in which precision: the parts of a job that change memory and FLOPs but
are not the model's shape nor its parallel layout."""

from __future__ import annotations

from dataclasses import dataclass

from optica.run.errors import ConfigError

PRECISIONS = ("bf16-mixed", "32")
LORA_TARGETS = ("linear_qkv", "linear_proj", "linear_fc1", "linear_fc2")


@dataclass(frozen=True)
class Lora:
    """LoRA adapters on the language model (Hu et al. 2021): each targeted linear layer W (in →
    out) gains A (in → dim) and B (dim → out); W stays frozen.

    Args:
        dim: The adapters' rank (NeMo's default: 32).
        target_modules: Which linear layers get adapters (Megatron names, seed 001).
    """

    dim: int = 32
    target_modules: tuple[str, ...] = LORA_TARGETS

    def __post_init__(self) -> None:
        if not isinstance(self.dim, int) or self.dim < 1:
            raise ConfigError(f"LoRA dim must be a positive integer, got {self.dim!r}")
        unknown = sorted(set(self.target_modules) - set(LORA_TARGETS))
        if unknown:
            known = ", ".join(LORA_TARGETS)
            raise ConfigError(f"unknown LoRA target {unknown[0]!r} (known: {known})")


@dataclass(frozen=True)
class Training:
    """Precision and which parts learn.

    Args:
        precision: ``"bf16-mixed"`` (bf16 weights and activations, fp32 gradients, master weights
            and Adam moments, as Megatron) or ``"32"``.
        lora: LoRA on the language model (its base frozen), or None for full training.
        freeze_vision: Keep the vision encoder frozen; None means frozen in a VLM (LLaVA-1.5 never
            trains its CLIP tower) and trained in a ViT classifier.
        freeze_language: Keep the language model frozen (LLaVA stage 1: only the projector learns).
        step_in_backward: The optimizer steps each parameter as soon as its gradient is complete
            and frees it (``optim.step_in_backward``): one gradient alive at a time instead of
            all of them. One GPU only, without gradient accumulation.
    """

    precision: str = "bf16-mixed"
    lora: Lora | None = None
    freeze_vision: bool | None = None
    freeze_language: bool = False
    step_in_backward: bool = False

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")

    @property
    def activation_bytes(self) -> int:
        """Bytes per stored activation element (masks aside)."""
        return 2 if self.precision == "bf16-mixed" else 4

    def vision_frozen(self, kind: str) -> bool:
        """Whether the vision encoder is frozen in a model of ``kind`` (``"vlm"``/``"vit"``)."""
        return self.freeze_vision if self.freeze_vision is not None else kind == "vlm"

    def language_trained(self) -> bool:
        """Whether the language model's own weights get gradients (not under LoRA or freezing)."""
        return self.lora is None and not self.freeze_language

    def layout_problems(self, *, num_microbatches: int) -> list[str]:
        """Why a layout cannot train this way (empty if it can). One GPU is the search's
        precondition for ``step_in_backward`` (``optica.autoconfig.search``)."""
        if self.step_in_backward and num_microbatches > 1:
            return [
                f"step_in_backward needs every gradient of a step from one micro-batch "
                f"(this layout accumulates {num_microbatches})"
            ]
        return []
