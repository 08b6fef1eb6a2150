"""Reads and writes rotary-embedding settings in both spellings of Hugging Face's config.json:
transformers 5.x's ``rope_parameters`` (theta and scaling together) and 4.x's top-level
``rope_theta`` with ``rope_scaling`` (whose type key is ``rope_type``, or ``type`` in older files).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from optica.models.errors import UnsupportedModelError
from optica.models.modules.rope import RopeScaling

DEFAULT_THETA = 10000.0


def rope_from_hf(hf_config: Mapping[str, Any]) -> tuple[float, RopeScaling | None]:
    """Returns ``(theta, scaling)`` from a config.json, whichever spelling it uses.

    Raises:
        UnsupportedModelError: For rope types other than ``default`` and ``llama3``.
    """
    params = dict(hf_config.get("rope_scaling") or {})
    params.update(hf_config.get("rope_parameters") or {})
    theta = float(params.get("rope_theta", hf_config.get("rope_theta", DEFAULT_THETA)))
    rope_type = params.get("rope_type", params.get("type", "default"))
    if rope_type == "default":
        return theta, None
    if rope_type == "llama3":
        fields = RopeScaling.__dataclass_fields__
        return theta, RopeScaling(**{k: v for k, v in params.items() if k in fields})
    raise UnsupportedModelError(
        f"rope type {rope_type!r} in config.json is not supported (supported: default, llama3)"
    )


def rope_to_hf(theta: float, scaling: RopeScaling | None) -> dict[str, Any]:
    """Config.json entries for ``(theta, scaling)`` in both spellings, so transformers 4.x readers
    (which ignore ``rope_parameters``) do not silently fall back to the default theta."""
    if scaling is None:
        default = {"rope_type": "default", "rope_theta": theta}
        return {"rope_parameters": default, "rope_theta": theta, "rope_scaling": None}
    scaled = {"rope_type": "llama3", **asdict(scaling)}
    return {
        "rope_parameters": {**scaled, "rope_theta": theta},
        "rope_theta": theta,
        "rope_scaling": scaled,
    }
