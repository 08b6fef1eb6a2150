"""LoRA (Hu et al. 2021, arXiv:2106.09685) and freezing, configured like NeMo's ``vlm.LoRA``.

    peft = LoRA(target_modules=["*.language_model.*.linear_qkv"], dim=8, alpha=16)
    peft.apply(model)            # freezes the base, adds adapters; returns the adapted names
    merge_lora(model)            # folds B·A·alpha/dim into the base weights, removes adapters

Adapted layers keep their own parameter names (``...linear_qkv.weight``) and gain
``...linear_qkv.lora_a.weight`` / ``lora_b.weight``: checkpoints of the base model, HF export key
maps and tensor-parallel plans see the same names with or without LoRA.

``target_modules`` patterns: a bare name (``linear_qkv``) matches the last component of a module
name; a pattern with wildcards matches the whole dotted name with ``fnmatch``, where the root
counts as an empty first component — so NeMo's ``"*.language_model.*.linear_qkv"`` matches
``language_model.decoder.layers.0.self_attention.linear_qkv`` verbatim.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from optica.run.errors import ConfigError

LANGUAGE_LINEARS = ("linear_qkv", "linear_proj", "linear_fc1", "linear_fc2")
FREEZABLE = ("language_model", "vision_model", "vision_projection")


class LoRALinear(nn.Linear):
    """An ``nn.Linear`` plus a low-rank update: ``y = x Wᵀ + b + s · B(A(dropout(x)))``.

    It shares the wrapped layer's weight and bias tensors (no copy), so swapping it in place of
    the original keeps every parameter name and value.
    """

    def __init__(
        self, base: nn.Linear, *, dim: int, alpha: float, dropout: float, dropout_position: str
    ) -> None:
        nn.Module.__init__(self)
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight, self.bias = base.weight, base.bias
        factory = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_a = nn.Linear(self.in_features, dim, bias=False, **factory)
        self.lora_b = nn.Linear(dim, self.out_features, bias=False, **factory)
        self.scale = alpha / dim
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.dropout_position = dropout_position
        self.reset_lora_parameters()

    def reset_lora_parameters(self) -> None:
        """A as ``nn.Linear``'s default (Kaiming-uniform, a=√5), B zero: training starts at the
        base model's outputs exactly (the paper's init)."""
        nn.init.kaiming_uniform_(self.lora_a.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_b.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = nn.functional.linear(x, self.weight, self.bias)
        update_input = self.dropout(x) if self.dropout_position == "pre" else x
        update = self.lora_b(self.lora_a(update_input)) * self.scale
        if self.dropout_position == "post":
            update = self.dropout(update)
        return base + update

    def merged(self) -> nn.Linear:
        """A plain ``nn.Linear`` holding ``W + s·B·A`` (same weight/bias objects, updated)."""
        with torch.no_grad():
            delta = (self.lora_b.weight.float() @ self.lora_a.weight.float()) * self.scale
            self.weight.add_(delta.to(self.weight.dtype))
        linear = nn.Linear(
            self.in_features, self.out_features, bias=self.bias is not None, device="meta"
        )
        linear.weight, linear.bias = self.weight, self.bias
        return linear


@dataclass
class LoRA:
    """Args:
    target_modules: Patterns of the linear layers to adapt (see the module docstring); the
        default is every linear layer of the language model, as NeMo's LLaVA recipes do.
    dim: Rank r of the update. alpha: Scale numerator (update scale = alpha / dim).
    dropout: Dropout on the adapter path; dropout_position ``pre`` (on its input) or ``post``.
    freeze_language_model: Freeze the base weights of the language model (LoRA's premise).
    freeze_vision_model: Freeze the vision encoder (NeMo's default keeps it trainable).
    freeze_vision_projection: Freeze the projector.
    """

    target_modules: list[str] = field(
        default_factory=lambda: [f"*.language_model.*.{n}" for n in LANGUAGE_LINEARS]
    )
    dim: int = 32
    alpha: float = 32
    dropout: float = 0.0
    dropout_position: Literal["pre", "post"] = "pre"
    freeze_language_model: bool = True
    freeze_vision_model: bool = False
    freeze_vision_projection: bool = False

    def __post_init__(self) -> None:
        if self.dim < 1:
            raise ConfigError(f"peft.dim must be >= 1, not {self.dim}")
        if self.dropout_position not in ("pre", "post"):
            raise ConfigError(
                f"peft.dropout_position must be 'pre' or 'post', not '{self.dropout_position}'"
            )

    def apply(self, model: nn.Module) -> list[str]:
        """Freezes what the config says, then adds adapters; returns the adapted module names."""
        freeze(
            model,
            language_model=self.freeze_language_model,
            vision_model=self.freeze_vision_model,
            vision_projection=self.freeze_vision_projection,
            whole_model_if_absent=True,
        )
        names = matching_linears(model, self.target_modules)
        if not names:
            raise ConfigError(
                f"peft.target_modules {self.target_modules} match no linear layer"
                f" (e.g. {_example_linear(model)})"
            )
        for name in names:
            base = model.get_submodule(name)
            base.requires_grad_(False)
            _replace(
                model,
                name,
                LoRALinear(
                    base,
                    dim=self.dim,
                    alpha=self.alpha,
                    dropout=self.dropout,
                    dropout_position=self.dropout_position,
                ),
            )
        return names


@dataclass
class Freeze:
    """Freezing without adapters (``peft=freeze``): e.g. LLaVA's stage 1 trains only the projector
    (``Freeze(language_model=True, vision_model=True)``), LLaVA-1.5's full fine-tune keeps the
    vision tower frozen (``Freeze(vision_model=True)``)."""

    language_model: bool = False
    vision_model: bool = False
    vision_projection: bool = False

    def apply(self, model: nn.Module) -> list[str]:
        """Freezes the named parts; returns no adapted names (there are none)."""
        freeze(
            model,
            language_model=self.language_model,
            vision_model=self.vision_model,
            vision_projection=self.vision_projection,
        )
        return []


def matches(name: str, pattern: str) -> bool:
    if not any(c in pattern for c in "*?[") and "." not in pattern:
        return name.rsplit(".", 1)[-1] == pattern
    return fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase("." + name, pattern)


def matching_linears(model: nn.Module, patterns: list[str]) -> list[str]:
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear)
        and not isinstance(module, LoRALinear)
        and not name.endswith((".lora_a", ".lora_b"))
        and any(matches(name, p) for p in patterns)
    ]


def freeze(
    model: nn.Module,
    *,
    language_model: bool = False,
    vision_model: bool = False,
    vision_projection: bool = False,
    whole_model_if_absent: bool = False,
) -> None:
    """Sets ``requires_grad=False`` on the named parts; a missing part is an error unless the
    model has none of them (a plain LM under LoRA: the whole model is the language model)."""
    wanted = {
        "language_model": language_model,
        "vision_model": vision_model,
        "vision_projection": vision_projection,
    }
    present = {name: getattr(model, name, None) for name in FREEZABLE}
    if whole_model_if_absent and all(p is None for p in present.values()):
        model.requires_grad_(not language_model)
        return
    for name, on in wanted.items():
        if on and present[name] is None:
            raise ConfigError(f"peft.freeze_{name}: {type(model).__name__} has no '{name}'")
        if on:
            present[name].requires_grad_(False)


def merge_lora(model: nn.Module) -> nn.Module:
    """Folds every adapter into its base weight and restores plain ``nn.Linear`` layers."""
    for name, module in list(model.named_modules()):
        if isinstance(module, LoRALinear):
            _replace(model, name, module.merged())
    return model


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only what training changes: adapters and any unfrozen parameters."""
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    return {n: t for n, t in model.state_dict().items() if n in trainable}


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def _example_linear(model: nn.Module) -> str:
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    return names[0] if names else "no linear layers at all"
