"""optica.checkpoint — optica's own checkpoint format, and conversion from and to Hugging Face.

``import_ckpt(model, "hf://org/name")`` converts a Hugging Face checkpoint (from the local cache or
a directory) into ``$OPTICA_HOME/models/org/name``; ``load(path)`` returns the model ready to run;
``export_ckpt(path)`` writes a directory that ``transformers`` loads. Every write is atomic: a
checkpoint directory either is complete or does not exist. The layout is described in
:mod:`optica.checkpoint.layout`.
"""

from optica.checkpoint.api import load, load_weights_into, resolve_checkpoint, save
from optica.checkpoint.errors import (
    CheckpointError,
    CheckpointExistsError,
    ConfigMismatchWarning,
    SourceNotFoundError,
    UnsupportedModelError,
)
from optica.checkpoint.exporter import export_ckpt
from optica.checkpoint.importer import ImportResult, import_checkpoint, import_ckpt
from optica.checkpoint.layout import Manifest
from optica.checkpoint.sources import hub_cache_dir, parse_source

__all__ = [
    "CheckpointError",
    "CheckpointExistsError",
    "ConfigMismatchWarning",
    "ImportResult",
    "Manifest",
    "SourceNotFoundError",
    "UnsupportedModelError",
    "export_ckpt",
    "hub_cache_dir",
    "import_checkpoint",
    "import_ckpt",
    "load",
    "load_weights_into",
    "parse_source",
    "resolve_checkpoint",
    "save",
]
