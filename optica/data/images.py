"""Image preprocessing without torchvision: resize / pad / crop, then normalise.

Pillow decodes; the resize and crop are Pillow's pixels bit for bit, made for the kept pixels only
(:func:`~optica.data.resize.resize_planes`).

Settings come from a Hugging Face ``preprocessor_config.json`` (CLIP, SigLIP, ViT) or a preset.
``pad`` is LLaVA-1.5's ``expand2square``: the image is centred on a square canvas filled with the
processor's mean colour (``int(mean * 255)``), which normalises to ~0, then resized.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from optica.data.errors import DataConfigError, check_policy
from optica.data.resize import resize_planes

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
HALF = (0.5, 0.5, 0.5)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ImageProcessor:
    """Turns a PIL image into a normalised float tensor [3, H, W].

    Attributes:
        size: Output (height, width).
        mean, std: Per-channel normalisation, on the [0, 1] scale.
        resample: PIL resampling filter (``Image.Resampling`` value; CLIP/SigLIP use bicubic).
        aspect_ratio: ``square`` (resize to ``size``), ``pad`` (mean-colour square, then resize),
            ``crop`` (scale to cover ``size``, then centre crop).
        rescale_factor: Pixel scale before normalising (1/255).
    """

    size: tuple[int, int] = (336, 336)
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
    resample: int = Image.Resampling.BICUBIC
    aspect_ratio: str = "square"
    rescale_factor: float = 1 / 255

    def __post_init__(self) -> None:
        check_policy(self.aspect_ratio, "image_aspect_ratio", ("square", "pad", "crop"))

    def with_aspect_ratio(self, aspect_ratio: str) -> ImageProcessor:
        return ImageProcessor(
            self.size, self.mean, self.std, self.resample, aspect_ratio, self.rescale_factor
        )

    def fill_colour(self) -> tuple[int, int, int]:
        """LLaVA's pad colour: the mean as 8-bit RGB."""
        return tuple(int(m * 255) for m in self.mean)

    def pixels(self, image: Image.Image) -> np.ndarray:
        """uint8 [3, H, W] of ``image`` resized / padded / cropped to ``size``: Pillow's pixels
        bit for bit, made by :func:`~optica.data.resize.resize_planes`."""
        height, width = self.size
        rgb = image if image.mode == "RGB" else image.convert("RGB")  # convert copies even RGB
        if self.aspect_ratio == "pad":
            rgb = expand_to_square(rgb, self.fill_colour())
        scaled, box = (width, height), (0, 0, width, height)
        if self.aspect_ratio == "crop":
            scaled = cover_size(rgb.size, (width, height))
            left, top = (scaled[0] - width) // 2, (scaled[1] - height) // 2
            box = (left, top, left + width, top + height)
        return resize_planes(rgb, scaled, box, self.resample)

    def __call__(self, image: Image.Image, out: torch.Tensor | None = None) -> torch.Tensor:
        """Float32 [3, H, W]; written into ``out`` (a contiguous CPU tensor) when given."""
        planar = self.pixels(image)
        if out is None:
            return torch.from_numpy(self.normalise(planar))
        self.normalise(planar, out.numpy())
        return out

    def normalise(self, planar: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """uint8 [3, H, W] → float32 [3, H, W] (``out`` when given),
        ``(v * rescale_factor - mean) / std`` in float32.

        Three in-place ufuncs: each is the same IEEE float32 operation a per-value lookup table
        would hold, so the values are the same bit for bit, and on a 336x336 image it measured
        0.22 ms against 0.41 ms for three table lookups (``np.take`` first widens the uint8
        indices to int64)."""
        out = np.multiply(planar, np.float32(self.rescale_factor), out=out, dtype=np.float32)
        out -= np.asarray(self.mean, dtype=np.float32)[:, None, None]
        out /= np.asarray(self.std, dtype=np.float32)[:, None, None]
        return out

    @classmethod
    def from_hf(cls, settings: dict, *, aspect_ratio: str = "square") -> ImageProcessor:
        """From a ``preprocessor_config.json`` dict (or an HF image processor's ``to_dict()``)."""
        size = _output_size(settings)
        mean = tuple(settings.get("image_mean") or IMAGENET_MEAN)
        std = tuple(settings.get("image_std") or IMAGENET_STD)
        resample = int(settings.get("resample", Image.Resampling.BICUBIC))
        rescale = float(settings.get("rescale_factor", 1 / 255))
        return cls(size, mean, std, resample, aspect_ratio, rescale)

    @classmethod
    def from_pretrained(cls, path: str | Path, *, aspect_ratio: str = "square") -> ImageProcessor:
        """Reads ``preprocessor_config.json`` from a checkpoint folder (or the file itself)."""
        path = Path(path)
        file = path / "preprocessor_config.json" if path.is_dir() else path
        try:
            settings = json.loads(file.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise DataConfigError(f"{file}: cannot read image processor settings ({err})") from None
        return cls.from_hf(settings, aspect_ratio=aspect_ratio)


def _edge(value, key: str) -> tuple[int, int] | None:
    if isinstance(value, int):
        return value, value
    if isinstance(value, dict) and "height" in value:
        return int(value["height"]), int(value["width"])
    if isinstance(value, dict) and key in value:
        return int(value[key]), int(value[key])
    return None


def _output_size(settings: dict) -> tuple[int, int]:
    """The final size: the crop when the processor centre-crops, else the resize target."""
    if settings.get("do_center_crop") and settings.get("crop_size") is not None:
        return _edge(settings["crop_size"], "height")
    size = _edge(settings.get("size"), "shortest_edge")
    if size is None:
        raise DataConfigError(f"image processor settings have no usable size: {settings}")
    return size


def cover_size(size: tuple[int, int], target: tuple[int, int]) -> tuple[int, int]:
    """(width, height) of ``size`` scaled to cover ``target``, truncated like Hugging Face's
    ``shortest_edge`` resize (``int(edge * long / short)``), so crops match CLIP's processor."""
    (width, height), (target_width, target_height) = size, target
    if target_height * width >= target_width * height:  # the height decides the scale
        return max(target_width, int(target_height * width / height)), target_height
    return target_width, max(target_height, int(target_width * height / width))


def expand_to_square(image: Image.Image, fill: tuple[int, int, int]) -> Image.Image:
    """Centres ``image`` on a square canvas of colour ``fill`` (LLaVA's ``expand2square``)."""
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    canvas = Image.new(image.mode, (side, side), fill)
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas


def clip_processor(size: int = 336, aspect_ratio: str = "square") -> ImageProcessor:
    """OpenAI CLIP (LLaVA-1.5's ViT-L/14-336)."""
    return ImageProcessor((size, size), CLIP_MEAN, CLIP_STD, Image.Resampling.BICUBIC, aspect_ratio)


def siglip_processor(size: int = 384, aspect_ratio: str = "square") -> ImageProcessor:
    """SigLIP (so400m/14-384): mean and std 0.5."""
    return ImageProcessor((size, size), HALF, HALF, Image.Resampling.BICUBIC, aspect_ratio)


def vit_processor(size: int = 224, aspect_ratio: str = "square") -> ImageProcessor:
    """google/vit-*: mean and std 0.5, bilinear."""
    return ImageProcessor((size, size), HALF, HALF, Image.Resampling.BILINEAR, aspect_ratio)


def check_image_size(processor: ImageProcessor, image_size: int | None) -> None:
    """The processor must produce what the vision encoder expects."""
    if image_size is not None and processor.size != (image_size, image_size):
        raise DataConfigError(
            f"the image processor makes {processor.size[0]}x{processor.size[1]} images but the "
            f"vision encoder expects {image_size}x{image_size}"
        )
