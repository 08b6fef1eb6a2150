"""Generation: KV-cached decoding for optica's language models and VLMs, prompts through the
training templates, streaming text, and the sources a model comes from.

    answers = optica.generate("runs/shapes/checkpoints/last.ckpt", ["What colour is the circle?"],
                              images=["shape.png"])

``optica.generate`` is both this package and the function: the package is callable (see
``_CallableModule``), so ``optica.generate(...)`` works whichever of the two Python resolved.
"""

from __future__ import annotations

import sys
import types

from optica.generate.api import Generator, generate, open_image, resolve_template
from optica.generate.engine import CausalModel, Decoding, Layout, left_pad
from optica.generate.errors import GenerationError
from optica.generate.loading import PROMPT_FILE, load_source, write_prompt_format
from optica.generate.prompts import RAW, PromptEncoder
from optica.generate.sampling import SamplingConfig
from optica.generate.text import TextStream

__all__ = [
    "PROMPT_FILE",
    "RAW",
    "CausalModel",
    "Decoding",
    "GenerationError",
    "Generator",
    "Layout",
    "PromptEncoder",
    "SamplingConfig",
    "TextStream",
    "generate",
    "left_pad",
    "load_source",
    "open_image",
    "resolve_template",
    "write_prompt_format",
]


class _CallableModule(types.ModuleType):
    """NOTE: importing any ``optica.generate.*`` module binds the name ``optica.generate`` to
    this package, shadowing the lazily exported function; calling the package calls it."""

    def __call__(self, *args, **kwargs):
        return generate(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
