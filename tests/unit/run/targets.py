"""Importable targets for the optica.run tests (configs must name module-level objects)."""

import enum
from dataclasses import dataclass


class Color(enum.Enum):
    RED = "red"
    GREEN = 2


class SomeObject:
    """The seed's ``SomeObject``: two parameters, one of which may hold another config."""

    def __init__(self, a: int = 1, b: object = None):
        self.a = a
        self.b = b


def anything(**kwargs):
    """Accepts any keyword: the hypothesis round-trip target."""
    return kwargs


def positional(x, /, y=2, *rest, z=3):
    return (x, y, rest, z)


@dataclass
class Llama3Config8B:
    seq_length: int = 8192
    hidden_size: int = 4096


class LlamaModel:
    def __init__(self, config: Llama3Config8B):
        self.config = config

    def __eq__(self, other):
        return type(other) is LlamaModel and vars(other.config) == vars(self.config)
