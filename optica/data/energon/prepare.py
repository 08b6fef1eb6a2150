"""``energon prepare``, programmatically: index the tar shards and write ``.nv-meta``.

This is what ``energon prepare DIR --non-interactive --split-ratio 1,0,0 --sample-type
CrudeWebdataset`` does (energon's own indexer, ``BaseWebdatasetFactory.prepare_dataset``), without
its prompts and progress output. The dataset is *crude* (plain dicts): optica's task encoder
cooks the records itself.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import yaml

from optica.data.energon import require_energon
from optica.data.errors import DataError

META = ".nv-meta"
DATASET_YAML = "dataset.yaml"
CRUDE_DATASET = {"__module__": "megatron.energon", "__class__": "CrudeWebdataset"}


def prepare_shards(
    folder: str | Path,
    *,
    split_ratio: tuple[float, float, float] = (1.0, 0.0, 0.0),
    dataset_definition: dict | None = None,
    workers: int = 1,
) -> set[str]:
    """Indexes ``folder``'s ``*.tar`` shards, writes the split and ``dataset.yaml``.

    Args:
        folder: The dataset folder.
        split_ratio: train/val/test shares of the shards (whole shards go to one split).
        dataset_definition: ``dataset.yaml`` contents (default: a crude dataset).
        workers: Processes indexing shards.

    Returns:
        The part names found (``json``, ``img0.jpg``, ...).
    """
    require_energon()
    from megatron.energon.flavors.webdataset.base_webdataset import BaseWebdatasetFactory

    folder = Path(folder)
    shards = sorted(str(p.relative_to(folder)) for p in folder.rglob("*.tar"))
    if not shards:
        raise DataError(f"{folder}: no .tar shards to prepare")
    splits = list(zip(("train", "val", "test"), map(float, split_ratio)))
    with contextlib.redirect_stdout(io.StringIO()):  # energon prints its progress
        parts = BaseWebdatasetFactory.prepare_dataset(
            folder,
            shards,
            split_parts_ratio=splits,
            shuffle_seed=None,
            workers=max(1, min(workers, len(shards))),
        )
    definition = CRUDE_DATASET if dataset_definition is None else dataset_definition
    (folder / META / DATASET_YAML).write_text(yaml.safe_dump(definition, sort_keys=False))
    return set(parts)


def check_prepared(path: str | Path) -> Path:
    """``path`` if it is a prepared energon dataset, else a one-line error saying what to run."""
    path = Path(path)
    if path.is_file() and path.suffix in (".yaml", ".yml"):
        return path  # an energon metadataset
    if not path.is_dir():
        raise DataError(f"{path}: no such energon dataset folder")
    meta = path / META
    if not (meta / DATASET_YAML).is_file():
        missing = f"no {META} folder" if not meta.is_dir() else f"no {META}/{DATASET_YAML}"
        raise DataError(
            f"{path}: not a prepared energon dataset ({missing}); run `optica data convert` on "
            f"LLaVA JSON or `energon prepare {path}` on WebDataset shards"
        )
    return path
