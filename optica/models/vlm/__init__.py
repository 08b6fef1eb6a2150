"""Vision-language model families; importing this package registers them."""

from optica.models.vlm import llava

__all__ = ["llava"]
