"""Errors a user can cause with a model or checkpoint; each is one line: what, where, a hint."""

from __future__ import annotations

from optica.run.errors import ConfigError, OpticaError


class CheckpointError(OpticaError, ValueError):
    """A checkpoint cannot be read or does not fit the model it is loaded into."""


class UnsupportedModelError(ConfigError):
    """No registered family handles this model, config or Hugging Face architecture."""
