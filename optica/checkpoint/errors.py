"""Checkpoint errors a user can cause (one line each: what, where, a hint) and the warning raised
when a given config disagrees with the checkpoint being imported."""

from __future__ import annotations

from optica.models.errors import CheckpointError, UnsupportedModelError


class SourceNotFoundError(CheckpointError):
    """The model to import is neither in the local Hugging Face cache nor a local directory."""


class CheckpointExistsError(CheckpointError):
    """The output path is taken and ``overwrite`` was not given."""


class ConfigMismatchWarning(UserWarning):
    """The config given to ``import_ckpt`` differs from the checkpoint's config.json; the
    checkpoint's values are used."""


__all__ = [
    "CheckpointError",
    "CheckpointExistsError",
    "ConfigMismatchWarning",
    "SourceNotFoundError",
    "UnsupportedModelError",
]
