"""Image preprocessing: pad / square / crop pixel checks, normalisation, HF settings, geometry."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from optica.data import ImageProcessor, VisionGeometry, clip_processor, siglip_processor
from optica.data.config import resolve_image_token_len
from optica.data.errors import DataConfigError
from optica.data.images import (
    CLIP_MEAN,
    CLIP_STD,
    HALF,
    check_image_size,
    expand_to_square,
)
from optica.data.resize import planar_bands

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def normalised(rgb, mean=CLIP_MEAN, std=CLIP_STD) -> torch.Tensor:
    return (torch.tensor(rgb, dtype=torch.float32) / 255 - torch.tensor(mean)) / torch.tensor(std)


def processor(aspect, size=(4, 4)):
    return ImageProcessor(size, CLIP_MEAN, CLIP_STD, Image.Resampling.NEAREST, aspect)


def test_pad_fills_with_the_mean_colour_like_llava():
    image = Image.new("RGB", (4, 2), RED)  # wide: pad above and below
    out = processor("pad")(image)
    assert out.shape == (3, 4, 4)
    fill = normalised(tuple(int(m * 255) for m in CLIP_MEAN))
    assert fill.abs().max() < 0.02  # the mean colour normalises to ~0
    for row in (0, 3):
        assert torch.allclose(out[:, row, :], fill[:, None].expand(3, 4), atol=1e-6)
    for row in (1, 2):
        assert torch.allclose(out[:, row, :], normalised(RED)[:, None].expand(3, 4), atol=1e-6)


def test_expand_to_square_centres_the_image():
    image = Image.new("RGB", (2, 6), BLUE)
    square = expand_to_square(image, (1, 2, 3))
    assert square.size == (6, 6)
    pixels = np.asarray(square)
    assert (pixels[:, 2:4] == BLUE).all() and (pixels[:, :2] == (1, 2, 3)).all()


def test_square_resizes_ignoring_aspect():
    image = Image.new("RGB", (2, 4), RED)
    image.paste(BLUE, (0, 2, 2, 4))  # top half red, bottom half blue
    out = processor("square")(image)
    assert out.shape == (3, 4, 4)
    assert torch.allclose(out[:, :2], normalised(RED)[:, None, None].expand(3, 2, 4))
    assert torch.allclose(out[:, 2:], normalised(BLUE)[:, None, None].expand(3, 2, 4))


def test_crop_keeps_the_centre():
    image = Image.new("RGB", (8, 4), RED)
    image.paste(GREEN, (2, 0, 6, 4))
    image.paste(BLUE, (6, 0, 8, 4))
    out = processor("crop")(image)
    assert torch.allclose(out, normalised(GREEN)[:, None, None].expand(3, 4, 4))


def test_crop_scales_the_shortest_side_first():
    image = Image.new("RGB", (16, 8), GREEN)
    assert processor("crop", (4, 4)).pixels(image).shape == (3, 4, 4)


def test_normalisation_and_layout():
    out = siglip_processor(8)(Image.new("RGB", (8, 8), (255, 0, 128)))
    assert out.dtype == torch.float32 and out.shape == (3, 8, 8)
    assert torch.allclose(out[:, 0, 0], normalised((255, 0, 128), HALF, HALF))


@pytest.mark.parametrize(
    "proc",
    [clip_processor(4), siglip_processor(4), ImageProcessor((4, 4), rescale_factor=1 / 127.5)],
)
def test_normalise_is_the_float32_formula_bit_for_bit(proc):
    pixels = np.random.default_rng(0).integers(0, 256, size=(37, 53, 3), dtype=np.uint8)
    values = np.arange(256, dtype=np.float32)[None, :] * np.float32(proc.rescale_factor)
    table = (values - np.float32(proc.mean)[:, None]) / np.float32(proc.std)[:, None]
    expected = np.stack([table[c][pixels[..., c]] for c in range(3)])  # per-value table
    planar = planar_bands(Image.fromarray(pixels))
    assert np.array_equal(planar, pixels.transpose(2, 0, 1))
    out = proc.normalise(planar)
    assert out.dtype == np.float32 and out.shape == (3, 37, 53)
    assert np.array_equal(out.view(np.int32), expected.view(np.int32))


def test_grey_and_rgba_inputs_become_rgb():
    assert clip_processor(4)(Image.new("L", (4, 4), 7)).shape == (3, 4, 4)
    assert clip_processor(4)(Image.new("RGBA", (4, 4))).shape == (3, 4, 4)


@pytest.mark.parametrize(
    ("settings", "size", "mean"),
    [
        (  # CLIP: shortest edge then centre crop
            {
                "crop_size": {"height": 336, "width": 336},
                "do_center_crop": True,
                "image_mean": list(CLIP_MEAN),
                "image_std": list(CLIP_STD),
                "resample": 3,
                "size": {"shortest_edge": 336},
            },
            (336, 336),
            CLIP_MEAN,
        ),
        (  # SigLIP
            {
                "image_mean": [0.5] * 3,
                "image_std": [0.5] * 3,
                "resample": 3,
                "size": {"height": 384, "width": 384},
                "rescale_factor": 1 / 255,
            },
            (384, 384),
            HALF,
        ),
        ({"size": 224, "image_mean": [0.5] * 3, "image_std": [0.5] * 3}, (224, 224), HALF),
    ],
)
def test_settings_from_preprocessor_config(tmp_path, settings, size, mean):
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(settings))
    loaded = ImageProcessor.from_pretrained(tmp_path, aspect_ratio="pad")
    assert loaded.size == size and loaded.mean == pytest.approx(mean)
    assert loaded.aspect_ratio == "pad"


def test_unreadable_settings_are_one_line(tmp_path):
    with pytest.raises(DataConfigError, match="cannot read image processor settings"):
        ImageProcessor.from_pretrained(tmp_path)


def test_image_token_len_from_geometry():
    assert VisionGeometry(336, 14).image_token_len == 576  # CLIP, CLS dropped (LLaVA-1.5)
    assert VisionGeometry(336, 14, drop_class_token=False).image_token_len == 577
    assert VisionGeometry(384, 14, class_token=False).image_token_len == 729  # SigLIP
    assert VisionGeometry(32, 4, class_token=False).image_token_len == 64  # tiny demo


def test_image_token_len_is_checked():
    assert resolve_image_token_len(None, VisionGeometry(336, 14)) == 576
    assert resolve_image_token_len(576, VisionGeometry(336, 14)) == 576
    with pytest.raises(DataConfigError, match="image_token_len=256 but the vision encoder gives"):
        resolve_image_token_len(256, VisionGeometry(336, 14))


def test_processor_size_must_match_encoder():
    check_image_size(clip_processor(336), 336)
    with pytest.raises(DataConfigError, match="makes 224x224 images but the vision encoder"):
        check_image_size(clip_processor(224), 336)


def test_bad_aspect_ratio():
    with pytest.raises(DataConfigError, match="image_aspect_ratio='wide'"):
        clip_processor(4, "wide")
