"""``import_ckpt``: a Hugging Face checkpoint → an optica checkpoint, once.

The family's adapter converts config.json and the tensors (read one at a time, so the conversion
holds one copy of the model); the converted tensors are assigned to a meta-built model, which
checks that they fit, and the checkpoint is written into a temporary directory that is renamed
into place only when complete.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optica.checkpoint.api import write_checkpoint
from optica.checkpoint.atomic import atomic_directory, is_vacant
from optica.checkpoint.errors import CheckpointError, CheckpointExistsError
from optica.checkpoint.layout import MANIFEST, Manifest
from optica.checkpoint.selection import (
    adapter_of,
    checkpoint_config,
    checkpoint_family,
    choose_model,
)
from optica.checkpoint.sources import Located, Source, parse_source
from optica.models import Family
from optica.models.hf import read_hf_config, read_hf_state_dict


@dataclass(frozen=True)
class ImportResult:
    """Where the checkpoint is, and whether this call wrote it (False: it was there already)."""

    path: Path
    created: bool


def import_ckpt(
    model: Any,
    source: str | os.PathLike[str],
    output_path: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Converts a Hugging Face checkpoint into optica's format, once.

    Args:
        model: Picks the family: an optica model or config (``LlamaModel(Llama2Config7B())``,
            ``MistralConfig7B()``, a ``run.Config`` of either), a family or size-preset name
            (``"llama"``, ``"llama2_7b"``, ``"mistral:tiny"``), or None to detect it from
            config.json. The dimensions always come from config.json; a :class:`
            ConfigMismatchWarning` names any field of a given config that differs.
        source: ``hf://org/name[@revision]`` (the local Hugging Face cache only, never the
            network) or a local directory in Hugging Face layout.
        output_path: Default ``$OPTICA_HOME/models/<org>/<name>``.
        overwrite: Import again over an existing checkpoint. Without it, importing the same
            source again is a no-op and any other existing output is an error.

    Returns:
        The checkpoint directory (load it with ``optica.load``).
    """
    return import_checkpoint(model, source, output_path=output_path, overwrite=overwrite).path


def import_checkpoint(
    model: Any,
    source: str | os.PathLike[str],
    *,
    output_path: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> ImportResult:
    """:func:`import_ckpt`, also telling whether anything was written."""
    choice = choose_model(model)
    parsed = parse_source(source)
    dest = Path(output_path).expanduser() if output_path is not None else parsed.default_output
    if not overwrite and _already_imported(dest, parsed):
        return ImportResult(dest, created=False)
    located = parsed.locate()
    if (located.path / MANIFEST).is_file():
        raise CheckpointError(f"{located.path} is already an optica checkpoint; optica.load it")
    where = str(located.path)
    hf_config = read_hf_config(located.path)
    family = checkpoint_family(choice, hf_config, where)
    config = checkpoint_config(family, hf_config, choice.config, where)
    with atomic_directory(dest, overwrite=overwrite) as tmp:
        _convert(family, config, located, tmp)
    return ImportResult(dest, created=True)


def _convert(family: Family, config: Any, located: Located, out: Path) -> None:
    model = family.build(config)
    expected = {key: tensor.shape for key, tensor in model.state_dict().items()}
    hf_state = read_hf_state_dict(located.path)
    state = adapter_of(family).state_dict_from_hf(
        hf_state, config, expected, where=str(located.path)
    )
    model.load_weights(state)
    del state  # NOTE: the model now holds the only reference to each tensor
    write_checkpoint(out, model, base=located.path, source=located.describe())


def _already_imported(dest: Path, source: Source) -> bool:
    """Whether ``dest`` holds an import of ``source``; an error if it holds anything else."""
    if is_vacant(dest):
        return False
    if not (dest / MANIFEST).is_file():
        raise CheckpointExistsError(
            f"{dest} exists and is not an optica checkpoint; choose another output or pass "
            "overwrite=True (optica import --overwrite) to replace it"
        )
    previous = (Manifest.read(dest).source or {}).get("uri")
    if previous != source.uri:
        raise CheckpointExistsError(
            f"{dest} already holds an import of {previous or 'another model'}; pass "
            f"overwrite=True (optica import --overwrite) to replace it with {source.uri}"
        )
    return True
