"""The one error a generation request a user got wrong raises (printed by the CLI as one line)."""

from __future__ import annotations

from optica.run.errors import OpticaError


class GenerationError(OpticaError, ValueError):
    """A request that cannot run: an image that does not open, a prompt longer than the model's
    context, an image given to a model that does not read images, a missing tokenizer."""
