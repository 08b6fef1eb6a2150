"""Published model sizes, and base-config generation for a target size (seed 004).

Each family registers its sizes here (name → shape factory, with the table it comes from); the
analytic models never name a family. :func:`generate_base_config` answers the seed's "base config
generation": for a target size (or one :func:`~optica.autoconfig.recommend_model_size` gave) it
returns the family's published size nearest to it — by parameter count on a log scale, since
"twice too big" and "half too small" are equally wrong.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from optica.autoconfig.params import count_parameters
from optica.autoconfig.shapes import ModelShape
from optica.run.errors import ConfigError, did_you_mean


@dataclass(frozen=True)
class Preset:
    """One published size: ``make()`` returns a fresh shape; ``source`` says where it is from."""

    name: str
    family: str
    make: Callable[[], ModelShape]
    source: str


_PRESETS: dict[str, Preset] = {}


def register(preset: Preset) -> Preset:
    """Adds a size (also for families outside optica); a name can be registered once."""
    if preset.name in _PRESETS and _PRESETS[preset.name] != preset:
        raise ConfigError(f"model size {preset.name!r} is already registered")
    _PRESETS[preset.name] = preset
    return preset


def families() -> list[str]:
    _load_builtin()
    return sorted({p.family for p in _PRESETS.values()})


def preset_names(family: str | None = None) -> list[str]:
    """Registered size names, optionally of one family."""
    _load_builtin()
    return sorted(n for n, p in _PRESETS.items() if family in (None, p.family))


def model_shape(name: str) -> ModelShape:
    """The shape of a registered size, e.g. ``model_shape("llama2_7b")``."""
    _load_builtin()
    if name not in _PRESETS:
        hint = did_you_mean(name, _PRESETS) or f" (known: {', '.join(sorted(_PRESETS))})"
        raise ConfigError(f"unknown model {name!r}{hint}")
    return _PRESETS[name].make()


def generate_base_config(family: str, *, model_size_in_b: float) -> ModelShape:
    """The family's published size nearest to ``model_size_in_b`` billion parameters.

    Example: ``generate_base_config("gpt3", model_size_in_b=4.03)`` is GPT-3 5B, the size the seed
    recommends for 20 DGX nodes and 5 days.
    """
    if model_size_in_b <= 0:
        raise ConfigError(f"model_size_in_b must be positive, got {model_size_in_b}")
    names = preset_names(family)
    if not names:
        raise ConfigError(f"unknown model family {family!r}{did_you_mean(family, families())}")
    target = math.log(model_size_in_b * 1e9)
    shapes = [model_shape(n) for n in names]
    return min(shapes, key=lambda s: abs(math.log(count_parameters(s)) - target))


def _load_builtin() -> None:
    # NOTE: imported lazily: the preset modules import this one to register.
    from optica.autoconfig.catalog import language, tiny, vision  # noqa: F401


__all__ = [
    "Preset",
    "families",
    "generate_base_config",
    "model_shape",
    "preset_names",
    "register",
]
