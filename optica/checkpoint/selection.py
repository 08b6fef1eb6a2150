"""Which model an import builds: the family (from the ``model`` argument or config.json) and the
config (from config.json).

Policy when the given config disagrees with the checkpoint: **the checkpoint wins**. Every field
config.json expresses is taken from config.json, and a :class:`ConfigMismatchWarning` names each
one that differs from the given config (the weights only fit the checkpoint's dimensions, so
anything else would fail or lie). Fields config.json cannot express (such as
``make_vocab_size_divisible_by``) keep the given config's values. A given size preset is kept as
the stored config's class when nothing differs (``Llama2Config7B`` stays ``Llama2Config7B``).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import fiddle as fdl
from torch import nn

from optica import run
from optica.checkpoint.errors import CheckpointError, ConfigMismatchWarning, UnsupportedModelError
from optica.models import Family, families, family_for_config, family_for_hf_config, get_family
from optica.models.hf import HFAdapter
from optica.run.errors import OpticaError, did_you_mean

_SHOWN_DIFFERENCES = 6


@dataclass(frozen=True)
class ModelChoice:
    """What the ``model`` argument asks for: a family, and a config to compare with the file."""

    family: Family | None = None
    config: Any = None


def choose_model(model: Any) -> ModelChoice:
    """Interprets ``model``: an optica model or config (or a ``run.Config`` of one), a config
    class, a family, a family or size-preset name (``"llama"``, ``"llama2_7b"``,
    ``"mistral:tiny"``), or None (detect the family from config.json)."""
    if model is None:
        return ModelChoice()
    if isinstance(model, Family):
        return ModelChoice(model)
    if isinstance(model, str):
        return _from_name(model)
    if isinstance(model, fdl.Buildable):
        model = run.build(model)
    if isinstance(model, type) and dataclasses.is_dataclass(model):
        model = model()
    config = model.config if isinstance(model, nn.Module) else model
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise UnsupportedModelError(
            f"model={model!r} is not an optica model, config or family name"
        )
    return ModelChoice(family_for_config(config), config)


def checkpoint_family(choice: ModelChoice, hf_config: Mapping[str, Any], where: str) -> Family:
    """The family that imports ``hf_config``: the chosen one, checked against config.json's
    architecture, or the one registered for it."""
    try:
        detected = family_for_hf_config(hf_config)
    except UnsupportedModelError:
        detected = None
    if choice.family is None:
        if detected is None:
            raise _unsupported(hf_config, where)
        return detected
    if detected is not None and detected.name != choice.family.name:
        raise UnsupportedModelError(
            f"{where} holds a {_architecture(hf_config)} ({detected.name!r} family), but the "
            f"model given is a {choice.family.name!r} model; pass a {detected.name} model or "
            f"config, or model={detected.name!r}"
        )
    return choice.family


def checkpoint_config(family: Family, hf_config: Mapping[str, Any], given: Any, where: str) -> Any:
    """The config of the model in the checkpoint (see the module docstring for the policy)."""
    adapter = adapter_of(family)
    imported = _config_from_hf(adapter, hf_config, where)
    if given is None:
        return imported
    differ: list[str] = []
    config = _merge(imported, given, _round_trip(adapter, given), differ)
    if differ:
        _warn_differences(type(given).__name__, differ, where)
    return config


def _merge(imported: Any, given: Any, round_trip: Any, differ: list[str], path: str = "") -> Any:
    """``imported`` with the fields config.json cannot express taken from ``given``, recursing
    into nested configs; appends each expressed field where ``given`` differs to ``differ``."""
    values, before = {}, len(differ)
    for field in (f for f in dataclasses.fields(imported) if f.init):
        name, mine = field.name, getattr(imported, field.name)
        theirs = getattr(given, name, None)
        back = getattr(round_trip, name, None) if round_trip is not None else theirs
        if _same_kind_of_config(mine, theirs):
            values[name] = _merge(mine, theirs, back, differ, f"{path}{name}.")
        elif back != theirs:  # config.json has no say in this field: keep the given value
            values[name] = theirs
        else:
            values[name] = mine
            if theirs != mine:
                differ.append(f"{path}{name} (given {theirs!r}, checkpoint {mine!r})")
    keep_class = len(differ) == before and isinstance(given, type(imported))
    return (type(given) if keep_class else type(imported))(**values)


def _same_kind_of_config(a: Any, b: Any) -> bool:
    return dataclasses.is_dataclass(a) and not isinstance(a, type) and isinstance(b, type(a))


def adapter_of(family: Family) -> HFAdapter:
    """The family's Hugging Face adapter."""
    if family.hf_adapter is None:
        raise UnsupportedModelError(f"model family {family.name!r} has no Hugging Face adapter")
    return family.hf_adapter


def _from_name(name: str) -> ModelChoice:
    family_name, _, size = name.partition(":")
    if size:
        family = get_family(family_name)
        return ModelChoice(family, family.size(size))
    by_family = {family.name: family for family in families()}
    if name in by_family:
        return ModelChoice(by_family[name])
    presets = _presets()
    matches = presets.get(name, {})
    if not matches:
        hint = did_you_mean(name, [*by_family, *presets])
        raise UnsupportedModelError(
            f"unknown model {name!r}{hint}; give a family ({', '.join(by_family)}), a size "
            "preset (e.g. llama2_7b) or family:size"
        )
    if len(matches) > 1:
        options = ", ".join(f"{family.name}:{name}" for family, _ in matches)
        raise UnsupportedModelError(f"size {name!r} exists in several families; use {options}")
    ((family, factory),) = matches
    return ModelChoice(family, factory())


def _presets() -> dict[str, list[tuple[Family, Any]]]:
    """Size name and preset class name → the (family, factory) pairs it names."""
    found: dict[str, dict[tuple[str, int], tuple[Family, Any]]] = {}
    for family in families():
        for size, factory in family.sizes.items():
            for key in {size, getattr(factory, "__name__", size)}:
                found.setdefault(key, {})[(family.name, id(factory))] = (family, factory)
    return {key: list(pairs.values()) for key, pairs in found.items()}


def _config_from_hf(adapter: HFAdapter, hf_config: Mapping[str, Any], where: str) -> Any:
    try:
        return adapter.config_from_hf(hf_config)
    except OpticaError as err:
        raise type(err)(f"{where}: {err}") from None
    except KeyError as err:
        raise CheckpointError(f"{where}/config.json has no {err.args[0]!r}") from None
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{where}/config.json: {err}") from None


def _round_trip(adapter: HFAdapter, given: Any) -> Any:
    """``given`` written to config.json and read back: the fields that change are those
    config.json cannot express. None when ``given`` cannot be written at all."""
    try:
        return adapter.config_from_hf(adapter.config_to_hf(given))
    except (OpticaError, KeyError, TypeError, ValueError):
        return None


def _warn_differences(given: str, differ: list[str], where: str) -> None:
    more = len(differ) - _SHOWN_DIFFERENCES
    text = ", ".join(differ[:_SHOWN_DIFFERENCES]) + (f" and {more} more" if more > 0 else "")
    warnings.warn(
        f"{where}: config.json differs from the given {given} in {text}; "
        "importing with the checkpoint's values",
        ConfigMismatchWarning,
        stacklevel=5,  # the caller of import_ckpt
    )


def _architecture(hf_config: Mapping[str, Any]) -> str:
    architectures = hf_config.get("architectures") or []
    return "/".join(architectures) or f"model_type={hf_config.get('model_type')!r}"


def _unsupported(hf_config: Mapping[str, Any], where: str) -> UnsupportedModelError:
    known = {a: f for f in families() for a in (*f.hf_architectures, *f.hf_model_types, f.name)}
    asked = [*(hf_config.get("architectures") or []), str(hf_config.get("model_type"))]
    hint = next((h for h in (did_you_mean(a, known) for a in asked) if h), "")
    supported = ", ".join(a for f in families() for a in f.hf_architectures)
    return UnsupportedModelError(
        f"{where}: unsupported architecture {_architecture(hf_config)}{hint}; "
        f"optica imports {supported}"
    )
