"""resize_planes against the plain Pillow path it replaces: the same pixels, bit for bit."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from optica.data import resize
from optica.data.images import cover_size
from optica.data.resize import horizontal_first, planar_bands, resize_planes

BICUBIC, BILINEAR = Image.Resampling.BICUBIC, Image.Resampling.BILINEAR
FILTERS = [f for f in Image.Resampling if f != Image.Resampling.NEAREST]  # the convolutions


def random_image(rng, width: int, height: int, mode: str) -> Image.Image:
    pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels).convert(mode)


def centre_crop_case(image: Image.Image, target: tuple[int, int]):
    """The resize and box ImageProcessor's ``crop`` uses."""
    scaled = cover_size(image.size, target)
    left, top = (scaled[0] - target[0]) // 2, (scaled[1] - target[1]) // 2
    return scaled, (left, top, left + target[0], top + target[1])


def assert_as_plain_pillow(image, size, box, resample):
    expected = planar_bands(image.resize(size, resample=resample).crop(box))
    actual = resize_planes(image, size, box, resample)
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
        resample = FILTERS[case % len(FILTERS)]
        assert_as_plain_pillow(image, *centre_crop_case(image, target), resample)


@pytest.mark.parametrize("resample", FILTERS)
def test_matches_a_plain_resize_with_every_filter(resample):
    """``square`` and ``pad`` resize the whole image: no crop, both axes up or down."""
    rng = np.random.default_rng(int(resample))
    for _ in range(20):
        width, height, out_width, out_height = (int(v) for v in rng.integers(1, 700, size=4))
        image = random_image(rng, width, height, "RGB")
        size = (out_width, out_height)
        assert_as_plain_pillow(image, size, (0, 0, *size), resample)


def test_covered_cases_do_not_call_pillows_resize(monkeypatch):
    """The comparisons above would hold trivially if resize_planes fell back to Pillow."""
    image = random_image(np.random.default_rng(3), 500, 400, "RGB")
    cases = [((420, 336), (42, 0, 378, 336)), ((40, 64), (3, 12, 37, 52))]  # 2nd: both axes
    expected = [planar_bands(image.resize(size, BICUBIC).crop(box)) for size, box in cases]

    def refuse(*args, **kwargs):
        raise AssertionError("Pillow's resize was called")

    monkeypatch.setattr(Image.Image, "resize", refuse)
    for (size, box), pixels in zip(cases, expected):
        assert np.array_equal(resize_planes(image, size, box, BICUBIC), pixels)


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
    """Other modes (RGBA: Pillow premultiplies), NEAREST, a box reaching outside."""
    rng = np.random.default_rng(1)
    rgba = random_image(rng, 50, 80, "RGBA")
    assert_as_plain_pillow(rgba, (40, 64), (0, 12, 40, 52), BICUBIC)  # premultiplied by Pillow
    image = random_image(rng, 50, 80, "RGB")
    assert_as_plain_pillow(image, (40, 64), (-2, 0, 38, 64), BICUBIC)  # a box outside: padded
    assert_as_plain_pillow(image, (40, 64), (0, 12, 40, 52), Image.Resampling.NEAREST)


def test_large_images_take_pillows_resize(monkeypatch):
    """Past LARGEST_REGION input pixels Pillow's row-by-row passes are the faster."""
    image = random_image(np.random.default_rng(4), 60, 40, "RGB")
    calls = []
    pillow_resize = Image.Image.resize

    def counted(self, *args, **kwargs):
        calls.append(args)
        return pillow_resize(self, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "resize", counted)
    resize_planes(image, (50, 33), (7, 0, 43, 33), BICUBIC)
    assert calls == []
    monkeypatch.setattr(resize, "LARGEST_REGION", 100)
    assert_as_plain_pillow(image, (50, 33), (7, 0, 43, 33), BICUBIC)
    assert len(calls) == 2  # resize_planes', then the expected value's


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


def test_without_a_writable_numba_cache_the_kernels_still_compile(tmp_path):
    """Where numba finds nowhere to cache (here: only zip-file locators allowed), importing
    optica.data must not fail: the kernels compile in the process instead."""
    script = (
        "import numpy as np\n"
        "from PIL import Image\n"
        "from optica.data import resample\n"
        "from optica.data.resize import planar_bands, resize_planes\n"
        "assert type(resample.resample_pass._cache).__name__ == 'NullCache'\n"
        "rng = np.random.default_rng(0)\n"
        "image = Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8))\n"
        "box = (56, 0, 392, 336)\n"
        "expected = planar_bands(image.resize((448, 336), 3).crop(box))\n"
        "assert np.array_equal(resize_planes(image, (448, 336), box, 3), expected)\n"
    )
    env = {**os.environ, "NUMBA_CACHE_LOCATOR_CLASSES": "ZipCacheLocator"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
