"""Resize-then-crop with Pillow's exact pixels, without resizing what the crop throws away.

Pillow resizes in two separable passes (``src/libImaging/Resample.c``, ``ImagingResampleInner``):
a horizontal pass (each row on its own) and a vertical pass (each column on its own), each
rounding to 8 bits. Two resizes that change one axis each, in Pillow's order, give exactly the
one-call result. So a crop along the axis the *second* pass leaves alone can happen between the
passes: the second pass then works on the kept pixels only. Cropping the *first* pass's output
along its own axis is not exact through Pillow's API (its ``box`` is float32, which moves the
filter centres), so when the first pass is the cropped one only the input rows the kept output
rows read go through it.

The order: Pillow < 13 always runs the horizontal pass first; Pillow >= 13 (python-pillow/Pillow
#9549) runs the vertical pass first when the height shrinks by more than twice what the width
does. Anything this module does not cover (other modes or filters, a crop on both axes) takes
the plain ``resize(...).crop(...)``; tests/unit/data/test_crop_resize.py compares the two.
"""

from __future__ import annotations

import PIL
from PIL import Image

Box = tuple[int, int, int, int]

# Each filter's support on Pillow's scale (``struct filter`` in Resample.c).
FILTER_SUPPORT = {
    Image.Resampling.BOX: 0.5,
    Image.Resampling.BILINEAR: 1.0,
    Image.Resampling.HAMMING: 1.0,
    Image.Resampling.BICUBIC: 2.0,
    Image.Resampling.LANCZOS: 3.0,
}
TWO_PASS_MODES = ("L", "RGB")  # 8-bit modes Pillow resizes directly (RGBA/LA premultiply first)
VERTICAL_FIRST_SINCE = 13


def crop_resize(image: Image.Image, size: tuple[int, int], box: Box, resample: int) -> Image.Image:
    """``image.resize(size, resample).crop(box)``, pixel for pixel, with less resizing.

    Args:
        image: The source image.
        size: The resize target (width, height).
        box: The crop (left, top, right, bottom) in the resized image.
        resample: A Pillow resampling filter.
    """
    width, height = size
    if image.mode in TWO_PASS_MODES and resample in FILTER_SUPPORT:
        if box[1] == 0 and box[3] == height and box[2] - box[0] < width:
            return _crop_columns(image, size, box, resample)
        if box[0] == 0 and box[2] == width and box[3] - box[1] < height:
            return _crop_rows(image, size, box, resample)
    return image.resize(size, resample=resample).crop(box)


def _crop_columns(image: Image.Image, size: tuple[int, int], box: Box, resample: int):
    """Fewer columns out: the vertical pass, whose columns are independent, gets only those kept."""
    (width, height), (left, _, right, _) = size, box
    if image.width == width:  # no horizontal pass: crop the input
        return image.crop((left, 0, right, image.height)).resize((right - left, height), resample)
    if image.height != height and horizontal_first(image.size, size):
        wide = image.resize((width, image.height), resample)
        return wide.crop((left, 0, right, image.height)).resize((right - left, height), resample)
    return image.resize(size, resample=resample).crop(box)


def _crop_rows(image: Image.Image, size: tuple[int, int], box: Box, resample: int):
    """Fewer rows out: the horizontal pass gets only the rows the kept output rows need."""
    (width, height), (_, top, _, bottom) = size, box
    if image.height == height:  # no vertical pass: crop the input
        return image.crop((0, top, image.width, bottom)).resize((width, bottom - top), resample)
    if image.width == width:  # only a vertical pass, and it is the cropped one
        return image.resize(size, resample=resample).crop(box)
    if not horizontal_first(image.size, size):
        tall = image.resize((image.width, height), resample)
        return tall.crop((0, top, image.width, bottom)).resize((width, bottom - top), resample)
    return _rows_through_horizontal_first(image, size, box, resample)


def _rows_through_horizontal_first(image, size, box, resample):
    """The horizontal pass on the input rows the kept rows read, pasted at their place into an
    otherwise blank image; the vertical pass reads nothing else for the kept rows."""
    (width, height), (_, top, _, bottom) = size, box
    first, last = source_rows(image.height, height, top, bottom, FILTER_SUPPORT[resample])
    strip = image.crop((0, first, image.width, last)).resize((width, last - first), resample)
    half = Image.new(image.mode, (width, image.height))
    half.paste(strip, (0, first))
    return half.resize(size, resample).crop(box)


def horizontal_first(source: tuple[int, int], target: tuple[int, int]) -> bool:
    """Whether the installed Pillow runs the horizontal pass first for this resize."""
    (width, height), (out_width, out_height) = source, target
    if pillow_major() < VERTICAL_FIRST_SINCE:
        return True
    shrink = height - out_height
    return not (shrink > 0 and shrink > (width - out_width) * 2)


def source_rows(size: int, out_size: int, start: int, stop: int, support: float) -> tuple[int, int]:
    """Input [first, last) that output pixels [start, stop) of a resize ``size -> out_size``
    read, by the double arithmetic of Pillow's ``precompute_coeffs``."""
    scale = size / out_size
    support *= max(scale, 1.0)

    def span(index: int) -> tuple[int, int]:
        centre = (index + 0.5) * scale
        return max(0, int(centre - support + 0.5)), min(size, int(centre + support + 0.5))

    return span(start)[0], span(stop - 1)[1]


def pillow_major() -> int:
    return int(PIL.__version__.split(".")[0])
