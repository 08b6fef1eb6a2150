"""The model-family registry: each family registers itself here, and the checkpoint, training and
autoconfig code look families up by name, config, model or Hugging Face config — never by naming
one. Families outside optica register through the ``optica.model_families`` entry-point group
(each entry point is a module to import; importing it registers its families).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from torch import nn

from optica.models.errors import UnsupportedModelError
from optica.run.errors import did_you_mean

if TYPE_CHECKING:
    from optica.models.hf.adapter import HFAdapter
    from optica.models.modules.parallel import ParallelPlan

ENTRY_POINT_GROUP = "optica.model_families"


@dataclass(frozen=True)
class Family:
    """What optica knows about one model family.

    Args:
        name: Registry key, e.g. ``"llama"``.
        config_class: The family's config dataclass; size presets subclass it.
        model_class: Builds the model from a config (lazily, on the meta device).
        hf_adapter: Converts configs and weights to and from Hugging Face, or None.
        hf_model_types: ``model_type`` values in config.json this family imports.
        hf_architectures: ``architectures`` entries in config.json this family imports.
        sizes: Named size presets (``"7b"``, ``"tiny"``, ...) → config factory.
        parallel_plan: How the strategy splits this family's models over a device mesh (tensor,
            sequence, context, pipeline and data parallelism), or None (data parallel only).
    """

    name: str
    config_class: type
    model_class: type[nn.Module]
    hf_adapter: HFAdapter | None = None
    hf_model_types: tuple[str, ...] = ()
    hf_architectures: tuple[str, ...] = ()
    sizes: Mapping[str, Callable[[], Any]] = field(default_factory=dict)
    parallel_plan: ParallelPlan | None = None

    def build(self, config: Any) -> nn.Module:
        """Constructs the (lazy) model for ``config``."""
        return self.model_class(config)

    def size(self, name: str) -> Any:
        """Returns a fresh config of the size preset ``name``."""
        if name not in self.sizes:
            hint = did_you_mean(name, self.sizes)
            raise UnsupportedModelError(f"family {self.name!r} has no size {name!r}{hint}")
        return self.sizes[name]()


_FAMILIES: dict[str, Family] = {}


def register_family(family: Family) -> Family:
    """Adds ``family``; registering the same name or HF architecture twice is an error."""
    if family.name in _FAMILIES and _FAMILIES[family.name] != family:
        raise ValueError(f"model family {family.name!r} is already registered")
    for other in _FAMILIES.values():
        clash = set(other.hf_architectures) & set(family.hf_architectures)
        if other.name != family.name and clash:
            raise ValueError(f"families {other.name!r} and {family.name!r} both import {clash}")
    _FAMILIES[family.name] = family
    return family


def families() -> list[Family]:
    """Every registered family, in registration order."""
    _load_plugins()
    return list(_FAMILIES.values())


def get_family(name: str) -> Family:
    """The family registered as ``name``."""
    _load_plugins()
    if name not in _FAMILIES:
        hint = did_you_mean(name, _FAMILIES)
        raise UnsupportedModelError(f"unknown model family {name!r}{hint}")
    return _FAMILIES[name]


def family_for_config(config: Any) -> Family:
    """The family whose config class is closest in ``type(config)``'s MRO (so a size preset that
    subclasses a family's config finds that family, and a sub-family beats its parent)."""
    _load_plugins()
    by_class = {family.config_class: family for family in _FAMILIES.values()}
    for cls in type(config).__mro__:
        if cls in by_class:
            return by_class[cls]
    raise UnsupportedModelError(f"no model family is registered for {type(config).__name__}")


def family_for_model(model: nn.Module) -> Family:
    """The family of a model built by a registered family (looked up through ``model.config``)."""
    config = getattr(model, "config", None)
    if config is None:
        raise UnsupportedModelError(f"{type(model).__name__} has no .config; not an optica model")
    return family_for_config(config)


def family_for_hf_config(hf_config: Mapping[str, Any]) -> Family:
    """The family that imports a Hugging Face config.json: by ``architectures``, then
    ``model_type``."""
    _load_plugins()
    architectures = hf_config.get("architectures") or []
    model_type = hf_config.get("model_type")
    for family in _FAMILIES.values():
        if set(architectures) & set(family.hf_architectures):
            return family
    for family in _FAMILIES.values():
        if model_type in family.hf_model_types:
            return family
    known = sorted(a for f in _FAMILIES.values() for a in f.hf_architectures)
    raise UnsupportedModelError(
        f"unsupported Hugging Face model (architectures={architectures}, "
        f"model_type={model_type!r}); supported architectures: {', '.join(known)}"
    )


@functools.cache
def _load_plugins() -> None:
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        entry.load()
