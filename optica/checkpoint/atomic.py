"""Directories that appear complete or not at all.

Everything is written into a hidden temporary directory beside the destination (same file system,
so the final ``rename`` is atomic), and only a finished directory is moved into place. A failure,
even ``KeyboardInterrupt``, removes the temporary directory and leaves any previous checkpoint at
the destination untouched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from optica.checkpoint.errors import CheckpointError, CheckpointExistsError


def is_vacant(path: Path) -> bool:
    """Whether ``path`` is free to write: absent, or an empty directory."""
    if not path.exists() and not path.is_symlink():
        return True
    return path.is_dir() and not any(path.iterdir())


@contextlib.contextmanager
def atomic_directory(dest: Path, *, overwrite: bool) -> Iterator[Path]:
    """Yields an empty temporary directory that becomes ``dest`` when the block succeeds.

    Raises:
        CheckpointExistsError: ``dest`` is taken and ``overwrite`` is false.
        CheckpointError: The file system refused a write (names the path and the reason).
    """
    tmp = _sibling(dest, "tmp")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()  # NOTE: not mkdtemp, whose 0700 mode would end up on the checkpoint
        yield tmp
        _move_into_place(tmp, dest, overwrite=overwrite)
    except OSError as err:
        detail = f"{err.strerror or err}" + (f": {err.filename}" if err.filename else "")
        raise CheckpointError(f"cannot write {dest}: {detail}") from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _move_into_place(tmp: Path, dest: Path, *, overwrite: bool) -> None:
    if is_vacant(dest):
        if dest.is_dir():
            dest.rmdir()
        os.rename(tmp, dest)
        return
    if not overwrite:  # taken since the caller last looked
        raise CheckpointExistsError(f"{dest} already exists; pass overwrite=True to replace it")
    old = _sibling(dest, "old")
    os.rename(dest, old)
    try:
        os.rename(tmp, dest)
    except OSError:
        os.rename(old, dest)
        raise
    _remove(old)


def _sibling(dest: Path, kind: str) -> Path:
    return dest.parent / f".{dest.name}.{uuid.uuid4().hex[:8]}.{kind}"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
