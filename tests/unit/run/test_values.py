"""Typed parsing of command-line values (optica.run.cli.values)."""

import pathlib
import re
from typing import Literal

import pytest
import torch

from optica.run.cli.values import parse_value
from optica.run.errors import ConfigError
from tests.unit.run.targets import Color


@pytest.mark.parametrize(
    ("text", "annotation", "expected"),
    [
        ("3", int, 3),
        ("1e3", int, 1000),
        ("0.5", float, 0.5),
        ("1e-4", float, 1e-4),
        ("3", float, 3.0),
        ("yes", bool, True),
        ("False", bool, False),
        ("null", int | None, None),
        ("7", int | None, 7),
        ("bf16-mixed", str, "bf16-mixed"),
        ("'123'", str, "123"),
        ("[0.9, 0.95]", tuple[float, float], (0.9, 0.95)),
        ("[1, 2, 3]", tuple[int, ...], (1, 2, 3)),
        ("a,b", list[str], ["a", "b"]),
        ("{x: 1, y: 2}", dict[str, int], {"x": 1, "y": 2}),
        ("/data/x", pathlib.Path, pathlib.Path("/data/x")),
        ("red", Color, Color.RED),
        ("RED", Color, Color.RED),
        ("torch.bfloat16", torch.dtype, torch.bfloat16),
        ("float16", torch.dtype, torch.float16),
        ("exact", Literal["fast", "exact"], "exact"),
        ("[1, 2]", object, [1, 2]),
    ],
)
def test_values_follow_the_annotation(text, annotation, expected):
    value = parse_value(text, annotation)
    assert value == expected and type(value) is type(expected)


def test_untyped_values_are_yaml_literals_and_dtypes():
    from typing import Any

    assert parse_value("[1, 2.5, true, null]", Any) == [1, 2.5, True, None]
    assert parse_value("torch.float32", Any) is torch.float32
    assert parse_value("hello world", Any) == "hello world"


@pytest.mark.parametrize(
    ("text", "annotation", "message"),
    [
        ("2.5", int, "expected int, got '2.5'"),
        ("maybe", bool, "expected bool (true/false), got 'maybe'"),
        ("bfloat17", torch.dtype, "expected a torch dtype"),
        ("blue", Color, "expected one of RED, GREEN, got 'blue'"),
        ("[1, x]", list[int], "expected int, got 'x'"),
        ("x", int | float, "expected int or float, got 'x'"),
    ],
)
def test_wrong_values_say_what_was_expected(text, annotation, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_value(text, annotation)


def test_each_parse_returns_fresh_objects():
    first, second = parse_value("[1]", list[int]), parse_value("[1]", list[int])
    first.append(2)
    assert second == [1]
