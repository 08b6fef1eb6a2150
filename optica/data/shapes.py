"""Synthetic *shapes*: coloured shapes on a plain background, with questions and class labels.

Every image is a pure function of ``(seed, split, index)``, so the data set needs no files, is the
same on every machine and rank, and train / val never share a random stream. Questions have
one-word answers and are asked only when unambiguous ("What colour is the circle?" only with
exactly one circle), so a tiny LLaVA (32 px, patch 4, ~0.4M parameters) can learn them on a CPU
in minutes. Shapes are drawn without anti-aliasing: each object's pixels are exactly its colour,
which the tests use to check the answers.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from optica.data.errors import DataConfigError
from optica.run.errors import did_you_mean

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (30, 70, 220),
    "yellow": (235, 200, 20),
    "purple": (140, 50, 180),
}
SHAPES = ("circle", "square", "triangle")
BACKGROUND = (255, 255, 255)
NUMBERS = ("zero", "one", "two", "three", "four", "five")
QUESTION_KINDS = ("colour", "shape", "count")
SPLITS = {"train": 0, "val": 1, "test": 2}


@dataclass(frozen=True)
class Shape:
    kind: str  # one of SHAPES
    colour: str  # a key of COLOURS
    box: tuple[int, int, int, int]  # left, top, right, bottom (inclusive)


@dataclass(frozen=True)
class QA:
    question: str
    answer: str
    kind: str  # one of QUESTION_KINDS


@dataclass(frozen=True)
class ShapesConfig:
    """What the generator may draw.

    Attributes:
        image_size: Side of the square image in pixels.
        min_objects, max_objects: Objects per image.
        shapes, colours: The vocabulary of kinds and colours.
        size_range: Object side as a fraction of the image side.
        question_kinds: Which questions to ask.
        questions_per_sample: Turns per conversation.
        seed: Base seed; ``(seed, split, index)`` fixes a sample.
    """

    image_size: int = 32
    min_objects: int = 1
    max_objects: int = 2
    shapes: tuple[str, ...] = SHAPES
    colours: tuple[str, ...] = ("red", "green", "blue", "yellow")
    size_range: tuple[float, float] = (0.28, 0.42)
    question_kinds: tuple[str, ...] = QUESTION_KINDS
    questions_per_sample: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.min_objects <= self.max_objects < len(NUMBERS):
            raise DataConfigError(
                f"shapes: need 0 < min_objects <= max_objects < {len(NUMBERS)}, got "
                f"{self.min_objects}..{self.max_objects}"
            )
        unknown = set(self.shapes) - set(SHAPES) | set(self.colours) - set(COLOURS)
        if unknown:
            raise DataConfigError(f"shapes: unknown shapes or colours {sorted(unknown)}")
        for kind in self.question_kinds:
            if kind not in QUESTION_KINDS:
                hint = did_you_mean(kind, QUESTION_KINDS)
                raise DataConfigError(
                    f"shapes.question_kinds: unknown kind {kind!r}{hint}; one of {QUESTION_KINDS}"
                )
        if not self.question_kinds:
            raise DataConfigError(f"shapes.question_kinds is empty; choose from {QUESTION_KINDS}")


def rng_for(config: ShapesConfig, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([config.seed, SPLITS[split], index])


def _overlaps(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    return not (a[2] + 1 < b[0] or b[2] + 1 < a[0] or a[3] + 1 < b[1] or b[3] + 1 < a[1])


def _place(config: ShapesConfig, rng: np.random.Generator, taken: list) -> tuple | None:
    side = config.image_size
    low, high = (max(3, round(f * side)) for f in config.size_range)
    for _ in range(50):
        size = int(rng.integers(low, high + 1))
        left, top = (int(v) for v in rng.integers(0, side - size + 1, size=2))
        box = (left, top, left + size - 1, top + size - 1)
        if not any(_overlaps(box, other) for other in taken):
            return box
    return None


def make_scene(config: ShapesConfig, rng: np.random.Generator) -> list[Shape]:
    """Non-overlapping objects (fewer than asked if the image is too crowded)."""
    count = int(rng.integers(config.min_objects, config.max_objects + 1))
    objects: list[Shape] = []
    for _ in range(count):
        box = _place(config, rng, [o.box for o in objects])
        if box is None:
            break
        kind = config.shapes[int(rng.integers(len(config.shapes)))]
        colour = config.colours[int(rng.integers(len(config.colours)))]
        objects.append(Shape(kind, colour, box))
    return objects


def render(objects: list[Shape], image_size: int) -> Image.Image:
    """Draws the objects, aliased (exact colours), on the background."""
    image = Image.new("RGB", (image_size, image_size), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for obj in objects:
        fill = COLOURS[obj.colour]
        left, top, right, bottom = obj.box
        if obj.kind == "circle":
            draw.ellipse(obj.box, fill=fill)
        elif obj.kind == "square":
            draw.rectangle(obj.box, fill=fill)
        else:
            draw.polygon([((left + right) / 2, top), (left, bottom), (right, bottom)], fill=fill)
    return image


def plural(kind: str) -> str:
    return kind + "s"


def candidates(objects: list[Shape], config: ShapesConfig) -> list[QA]:
    """Every unambiguous question about a scene."""
    kinds, colours = Counter(o.kind for o in objects), Counter(o.colour for o in objects)
    out: list[QA] = []
    if "colour" in config.question_kinds:
        out += [
            QA(f"What colour is the {o.kind}?", o.colour, "colour")
            for o in objects
            if kinds[o.kind] == 1
        ]
    if "shape" in config.question_kinds:
        out += [
            QA(f"What shape is the {o.colour} object?", o.kind, "shape")
            for o in objects
            if colours[o.colour] == 1
        ]
    if "count" in config.question_kinds:
        out += [
            QA(f"How many {plural(k)} are there?", NUMBERS[kinds[k]], "count")
            for k in config.shapes
        ]
    return out


def ask(objects: list[Shape], config: ShapesConfig, rng: np.random.Generator) -> list[QA]:
    """``questions_per_sample`` distinct questions: a kind first (balanced), then a question."""
    pool = candidates(objects, config)
    chosen: list[QA] = []
    for _ in range(config.questions_per_sample):
        left = [qa for qa in pool if qa not in chosen]
        kinds = sorted({qa.kind for qa in left}, key=QUESTION_KINDS.index)
        if not kinds:
            break
        kind = kinds[int(rng.integers(len(kinds)))]
        options = [qa for qa in left if qa.kind == kind]
        chosen.append(options[int(rng.integers(len(options)))])
    return chosen


@dataclass(frozen=True)
class ShapesSample:
    index: int
    objects: tuple[Shape, ...]
    qa: tuple[QA, ...]
    image: Image.Image

    def record(self, image_tag: str = "<image>") -> dict:
        """The sample in LLaVA's format (``image`` names the in-memory image)."""
        turns = []
        for k, qa in enumerate(self.qa):
            question = f"{image_tag}\n{qa.question}" if k == 0 else qa.question
            turns += [{"from": "human", "value": question}, {"from": "gpt", "value": qa.answer}]
        return {"id": f"shapes-{self.index}", "image": "shapes.png", "conversations": turns}


SCENE_ATTEMPTS = 100  # redraws of a scene that allows no question before giving up


def shapes_sample(config: ShapesConfig, split: str, index: int) -> ShapesSample:
    """Sample ``index`` of ``split``: the same on every call, machine and process.

    A scene no question fits (restricted ``question_kinds``: two red squares allow neither a
    colour nor a shape question) is redrawn from the same random stream, so every sample has a
    conversation and stays a pure function of ``(seed, split, index)``; with ``count`` questions
    allowed every scene fits at once, so those samples are unchanged.

    Raises:
        DataConfigError: No scene the config can draw allows a question.
    """
    rng = rng_for(config, split, index)
    for _ in range(SCENE_ATTEMPTS):
        objects = make_scene(config, rng)
        qa = ask(objects, config, rng)
        if qa:
            image = render(objects, config.image_size)
            return ShapesSample(index, tuple(objects), tuple(qa), image)
    raise DataConfigError(
        f"shapes: {SCENE_ATTEMPTS} scenes of sample {index} ({split}) allow no "
        f"{'/'.join(config.question_kinds)} question; widen shapes/colours or add 'count'"
    )


def vocabulary(config: ShapesConfig) -> list[str]:
    """Every question and answer text the generator can produce (to build a tokenizer)."""
    texts = {f"What colour is the {k}?" for k in config.shapes}
    texts |= {f"What shape is the {c} object?" for c in config.colours}
    texts |= {f"How many {plural(k)} are there?" for k in config.shapes}
    texts |= set(config.shapes) | set(config.colours) | set(NUMBERS[: config.max_objects + 1])
    return sorted(texts)
