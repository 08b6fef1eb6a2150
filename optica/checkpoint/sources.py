"""Where a model to import comes from: ``hf://org/name[@revision]`` from the local Hugging Face
cache (never the network), or a local directory in Hugging Face layout.

The cache is read in ``huggingface_hub``'s layout, at the place it would use::

    $HF_HUB_CACHE | $HUGGINGFACE_HUB_CACHE | $HF_HOME/hub | $XDG_CACHE_HOME/huggingface/hub
    └── models--org--name/
        ├── refs/main                  the commit hash that ``main`` points at
        └── snapshots/<hash>/...       the files (links into blobs/)
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optica.checkpoint.errors import CheckpointError, SourceNotFoundError
from optica.run.home import optica_home

SCHEME = "hf://"
_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
_DOWNLOAD_HINT = (
    "download it where there is network (`hf download {repo}`) or pass a local directory"
)


@dataclass(frozen=True)
class Source:
    """A parsed ``source`` argument (nothing looked up yet).

    Args:
        uri: Identity recorded in the manifest: ``hf://org/name[@rev]`` or an absolute directory.
        repo_id: ``org/name`` for Hugging Face sources, else None.
        revision: Branch, tag or commit asked for (``hf://org/name@rev``), else None.
        directory: The local directory, for local sources.
    """

    uri: str
    repo_id: str | None = None
    revision: str | None = None
    directory: Path | None = None

    @property
    def default_output(self) -> Path:
        """``$OPTICA_HOME/models/<org>/<name>`` (``<dir name>`` for a local directory)."""
        parts = self.repo_id.split("/") if self.repo_id else [self.directory.name]
        return optica_home().joinpath("models", *parts)

    def locate(self) -> Located:
        """Finds the files of this source on disk.

        Raises:
            SourceNotFoundError: Naming every place looked in.
        """
        if self.directory is not None:
            return Located(self, _existing_directory(self.directory), revision=None)
        return _from_cache(self)


@dataclass(frozen=True)
class Located:
    """A source found on disk: ``path`` holds config.json, weights, tokenizer files."""

    source: Source
    path: Path
    revision: str | None

    def describe(self) -> dict[str, Any]:
        """The manifest's ``source`` entry."""
        return {"uri": self.source.uri, "path": str(self.path), "revision": self.revision}


def parse_source(source: str | os.PathLike[str]) -> Source:
    """Parses ``hf://org/name[@rev]``, ``hf://<local path>`` or a local directory."""
    text = os.fspath(source)
    if not text.startswith(SCHEME):
        if "://" in text:
            scheme = text.split("://", 1)[0]
            raise CheckpointError(
                f"unsupported source {text!r}: scheme {scheme}:// is not read "
                f"(use hf://org/name or a local directory)"
            )
        return _local(Path(text))
    rest = text[len(SCHEME) :]
    if rest.startswith(("/", ".", "~")):
        return _local(Path(rest))
    repo_id, _, revision = rest.partition("@")
    parts = repo_id.split("/")
    valid_revision = not revision or (_REVISION.match(revision) and ".." not in revision)
    if not 1 <= len(parts) <= 2 or not all(_PART.match(p) and ".." not in p for p in parts):
        raise CheckpointError(f"{text!r} is not a Hugging Face model id (expected hf://org/name)")
    if not valid_revision:
        raise CheckpointError(f"{text!r}: {revision!r} is not a revision name")
    uri = f"{SCHEME}{repo_id}" + (f"@{revision}" if revision else "")
    return Source(uri=uri, repo_id=repo_id, revision=revision or None)


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache in use, read from the environment at call time."""
    env = os.environ
    explicit = env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(os.path.expandvars(explicit)).expanduser()
    home = env.get("HF_HOME") or os.path.join(env.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(os.path.expandvars(home)).expanduser() / "hub"


def _local(path: Path) -> Source:
    directory = path.expanduser().absolute()
    return Source(uri=str(directory), directory=directory)


def _existing_directory(path: Path) -> Path:
    if not path.exists():
        raise SourceNotFoundError(f"source directory {path} does not exist")
    if not path.is_dir():
        raise SourceNotFoundError(f"source {path} is not a directory")
    return path


def _from_cache(source: Source) -> Located:
    repo_id = source.repo_id or ""
    repo_dir = hub_cache_dir() / ("models--" + repo_id.replace("/", "--"))
    snapshots = repo_dir / "snapshots"
    if not snapshots.is_dir():
        hint = _DOWNLOAD_HINT.format(repo=repo_id)
        raise SourceNotFoundError(
            f"{source.uri}: not in the local Hugging Face cache (looked in {repo_dir}); {hint}"
        )
    commit = _commit(repo_dir, source)
    path = snapshots / commit
    if not (path / "config.json").is_file():
        raise SourceNotFoundError(
            f"{source.uri}: snapshot {path} has no config.json (an incomplete download?)"
        )
    return Located(source, path, revision=commit)


def _commit(repo_dir: Path, source: Source) -> str:
    """The snapshot for the revision asked for: a ref (``main`` by default) or a commit hash."""
    wanted = source.revision or "main"
    ref = repo_dir / "refs" / wanted
    if ref.is_file():
        return ref.read_text().strip()
    if (repo_dir / "snapshots" / wanted).is_dir():
        return wanted
    found = sorted(p.name for p in (repo_dir / "snapshots").iterdir() if p.is_dir())
    if source.revision is None and len(found) == 1:
        return found[0]
    raise SourceNotFoundError(
        f"{source.uri}: revision {wanted!r} is not in the cache at {repo_dir} "
        f"(snapshots: {', '.join(found) or 'none'}); "
        f"name one with {SCHEME}{source.repo_id}@REVISION"
    )
