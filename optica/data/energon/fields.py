"""Field values of shard samples → Python text and PIL images, with bad values named by sample.

optica's task encoders set ``decoder = None``: energon hands over the raw bytes of each part, and
images are opened by :func:`optica.data.llava.open_image`, the very function the JSON path uses,
so both paths see the same pixels and report a broken image the same way. Samples that were
decoded elsewhere (a PIL image, or energon's ``torchrgb`` tensor) are accepted too.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from optica.data.errors import bad_sample
from optica.data.llava import open_image


def sample_key(sample) -> str:
    """The sample's ``__key__`` (energon's name for it inside its shard)."""
    key = sample.get("__key__") if isinstance(sample, dict) else getattr(sample, "__key__", None)
    return str(key) if key is not None else "?"


def sample_where(sample) -> str:
    """``shard.tar[key]``: where a shard sample comes from, for messages."""
    sources = (
        sample.get("__sources__")
        if isinstance(sample, dict)
        else getattr(sample, "__sources__", None)
    )
    shard = getattr(sources[0], "shard_name", None) if sources else None
    key = sample_key(sample)
    return f"{shard}[{key}]" if shard else f"[{key}]"


def as_text(value, *, field: str, sample: str, where: str) -> str:
    """A text part: ``str`` as is, ``bytes`` as UTF-8."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError as err:
            raise bad_sample("bad_text", sample, where, f"{field} is not UTF-8 ({err})") from None
    raise bad_sample("bad_text", sample, where, f"{field} is {type(value).__name__}, not text")


def _tensor_to_image(value: torch.Tensor) -> Image.Image:
    """energon's ``torchrgb`` decoding (float [3, H, W] in [0, 1]) back to 8-bit RGB."""
    pixels = value.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8)
    return Image.fromarray(np.ascontiguousarray(pixels.permute(1, 2, 0).numpy()), "RGB")


def as_image(value, *, sample: str, where: str) -> Image.Image:
    """An image part: encoded bytes (decoded like the JSON path), a PIL image or a tensor."""
    if isinstance(value, (bytes, bytearray)):
        return open_image(io.BytesIO(value), sample, where)
    if isinstance(value, Image.Image):
        return value.convert("RGB")
    if isinstance(value, torch.Tensor) and value.ndim == 3 and value.shape[0] == 3:
        return _tensor_to_image(value)
    message = f"image is {type(value).__name__}, not encoded image bytes"
    raise bad_sample("corrupt_image", sample, where, message)
