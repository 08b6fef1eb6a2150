"""crop_resize against the plain Pillow path it replaces: the same pixels, bit for bit."""

import numpy as np
import pytest
from PIL import Image

from optica.data import resize
from optica.data.images import cover_size
from optica.data.resize import crop_resize, horizontal_first, source_rows

BICUBIC, BILINEAR = Image.Resampling.BICUBIC, Image.Resampling.BILINEAR


def random_image(rng, width: int, height: int, mode: str) -> Image.Image:
    pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels).convert(mode)


def centre_crop_case(image: Image.Image, target: tuple[int, int]):
    """The resize and box ImageProcessor's ``crop`` uses."""
    scaled = cover_size(image.size, target)
    left, top = (scaled[0] - target[0]) // 2, (scaled[1] - target[1]) // 2
    return scaled, (left, top, left + target[0], top + target[1])


def assert_as_plain_pillow(image, size, box, resample):
    expected = np.asarray(image.resize(size, resample=resample).crop(box))
    actual = np.asarray(crop_resize(image, size, box, resample))
    assert actual.shape == expected.shape
    assert np.array_equal(actual, expected), (image.size, image.mode, size, box, resample)


@pytest.mark.parametrize("seed", range(4))
def test_matches_resize_then_crop_on_random_sizes(seed):
    rng = np.random.default_rng(seed)
    for case in range(75):
        width, height = (int(v) for v in rng.integers(1, 900, size=2))
        side = int(rng.integers(32, 400))
        target = (side, side) if case % 3 else tuple(int(v) for v in rng.integers(32, 400, size=2))
        image = random_image(rng, width, height, "RGB" if case % 2 else "L")
        resample = BICUBIC if case % 4 < 2 else BILINEAR
        assert_as_plain_pillow(image, *centre_crop_case(image, target), resample)


@pytest.mark.parametrize(
    "source, target",
    [
        ((600, 400), (336, 336)),  # landscape, shrink
        ((400, 600), (336, 336)),  # portrait, shrink, horizontal pass first
        ((300, 900), (224, 224)),  # portrait, height shrinks most: vertical pass first on >= 13
        ((200, 120), (336, 336)),  # landscape, enlarge
        ((120, 200), (336, 336)),  # portrait, enlarge
        ((336, 500), (336, 336)),  # width already at size: no horizontal pass
        ((500, 336), (336, 336)),  # height already at size: no vertical pass
        ((400, 400), (336, 336)),  # square: nothing cropped
        ((1, 1), (32, 32)),
        ((1, 7), (5, 5)),
        ((7, 1), (5, 5)),
        ((3, 2), (1, 1)),  # a 1-pixel crop
        ((2, 3), (1, 1)),
    ],
)
@pytest.mark.parametrize("resample", [BICUBIC, BILINEAR, Image.Resampling.LANCZOS])
def test_edge_cases(source, target, resample):
    image = random_image(np.random.default_rng(0), *source, "RGB")
    assert_as_plain_pillow(image, *centre_crop_case(image, target), resample)


def test_uncovered_cases_take_the_plain_path():
    rng = np.random.default_rng(1)
    rgba = random_image(rng, 50, 80, "RGBA")
    assert_as_plain_pillow(rgba, (40, 64), (0, 12, 40, 52), BICUBIC)  # premultiplied by Pillow
    image = random_image(rng, 50, 80, "RGB")
    assert_as_plain_pillow(image, (40, 64), (3, 12, 37, 52), BICUBIC)  # both axes cropped
    assert_as_plain_pillow(image, (40, 64), (0, 12, 40, 52), Image.Resampling.NEAREST)


def test_pass_order_follows_the_installed_pillow(monkeypatch):
    tall = ((300, 900), (224, 672))  # the height shrinks by 228, the width by 76
    assert not horizontal_first(*tall)
    assert horizontal_first((400, 600), (336, 504))
    monkeypatch.setattr(resize, "pillow_major", lambda: 12)
    assert horizontal_first(*tall)  # before 13 Pillow always went horizontal first


def test_the_other_order_would_differ():
    """Guards the order rule: the wrong order gives other pixels, so the tests above can fail."""
    image = random_image(np.random.default_rng(2), 300, 900, "RGB")
    one_call = np.asarray(image.resize((224, 672), BICUBIC))
    vertical_first = np.asarray(image.resize((300, 672), BICUBIC).resize((224, 672), BICUBIC))
    horizontal_first_ = np.asarray(image.resize((224, 900), BICUBIC).resize((224, 672), BICUBIC))
    assert np.array_equal(one_call, vertical_first) != np.array_equal(one_call, horizontal_first_)


def test_source_rows_cover_what_bicubic_reads():
    assert source_rows(600, 504, 0, 504, 2.0) == (0, 600)  # everything for the whole output
    first, last = source_rows(600, 504, 84, 420, 2.0)
    assert 0 < first < 100 and 500 < last < 600
