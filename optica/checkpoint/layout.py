"""The files of an optica checkpoint directory, its manifest and its model config.

::

    <checkpoint>/
      optica_checkpoint.json   manifest, written last: a directory without it is no checkpoint
      model.yaml               the model config as optica.run YAML (lossless; rebuilds the model)
      model.safetensors        weights under optica's names, or model-0000i-of-0000n.safetensors
                               with model.safetensors.index.json when sharded
      hf_config.json           the imported config.json, verbatim (export overlays it, so token ids
                               and other fields optica does not model survive a round trip)
      tokenizer.json, ...      tokenizer, image-processor and generation files, copied as they were
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import fiddle as fdl

from optica import run
from optica.checkpoint.errors import CheckpointError
from optica.models import families

MANIFEST = "optica_checkpoint.json"
CONFIG_FILE = "model.yaml"
CONFIG_FILES = (CONFIG_FILE, "model.json")  # read in this order
HF_CONFIG = "hf_config.json"
FORMAT = "optica-checkpoint"
FORMAT_VERSION = 1
RESERVED = frozenset({MANIFEST, *CONFIG_FILES, HF_CONFIG})
_CONFIG_HEADER = "# optica model config: optica.load(<this directory>) rebuilds the model from it\n"


@dataclass(frozen=True)
class Manifest:
    """What a checkpoint holds, as stored in ``optica_checkpoint.json``.

    Args:
        family: Registered model family that builds the model.
        dtype: Floating-point dtype(s) of the weights, e.g. ``"bfloat16"``.
        num_parameters: Parameters of the model.
        source: Where the weights came from (``uri``, ``path``, ``revision``), or None.
        hf_config: File holding the original Hugging Face config.json, or None.
        assets: Tokenizer / processor / other files copied from the source.
        created: UTC time of writing, ISO 8601.
        optica_version: Version of optica that wrote the checkpoint.
    """

    family: str
    dtype: str
    num_parameters: int
    source: dict[str, Any] | None = None
    hf_config: str | None = None
    assets: tuple[str, ...] = ()
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())
    optica_version: str = field(default_factory=lambda: _optica_version())

    def write(self, root: Path) -> None:
        """Writes the manifest into ``root`` (last, see the module docstring)."""
        body = {"format": FORMAT, "format_version": FORMAT_VERSION, **dataclasses.asdict(self)}
        body["assets"] = list(self.assets)
        (root / MANIFEST).write_text(json.dumps(body, indent=2) + "\n")

    @classmethod
    def read(cls, root: Path) -> Manifest:
        """Reads and checks ``root``'s manifest.

        Raises:
            CheckpointError: When ``root`` is not an optica checkpoint or was written by a newer
                optica.
        """
        body = _read_json(root / MANIFEST, root)
        if body.get("format") != FORMAT or not isinstance(body.get("format_version"), int):
            raise CheckpointError(f"{root / MANIFEST} is not an optica checkpoint manifest")
        if body["format_version"] > FORMAT_VERSION:
            raise CheckpointError(
                f"{root} has checkpoint format {body['format_version']}; this optica reads up to "
                f"{FORMAT_VERSION} (upgrade optica)"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        try:
            return cls(
                **{k: tuple(v) if k == "assets" else v for k, v in body.items() if k in names}
            )
        except TypeError as err:
            raise CheckpointError(f"{root / MANIFEST} is incomplete: {err}") from None


def _read_json(file: Path, root: Path) -> dict[str, Any]:
    if not file.is_file():
        hint = (
            "; it looks like a Hugging Face checkpoint: import it with optica.import_ckpt or "
            "`optica import`"
            if (root / "config.json").is_file()
            else " (an interrupted write never leaves one)"
        )
        raise CheckpointError(f"{root} is not an optica checkpoint: no {MANIFEST}{hint}")
    try:
        return json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{file} is not valid JSON: {err}") from None


def _optica_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("optica")
    except PackageNotFoundError:
        return "unknown"


# ----------------------------------------------------------------------------------------------
# The model config


def config_to_yaml(config: Any) -> str:
    """``config`` (a dataclass, nested dataclasses allowed) as optica.run YAML."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise CheckpointError(f"cannot save a {type(config).__name__} config: not a dataclass")
    return _CONFIG_HEADER + run.to_yaml(as_buildable(config))


def as_buildable(value: Any) -> Any:
    """``value`` with every dataclass instance turned into a ``run.Config`` of its class (so
    ``run.build`` makes an equal value), recursing into lists, tuples and dicts."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = (f for f in dataclasses.fields(value) if f.init)
        return run.Config(
            type(value), **{f.name: as_buildable(getattr(value, f.name)) for f in fields}
        )
    if isinstance(value, (list, tuple)):
        return type(value)(as_buildable(item) for item in value)
    if isinstance(value, dict):
        return {key: as_buildable(item) for key, item in value.items()}
    return value


def read_config(root: Path) -> Any:
    """Builds the model config stored in ``root`` (``model.yaml``, else ``model.json``)."""
    file = next((root / name for name in CONFIG_FILES if (root / name).is_file()), None)
    if file is None:
        raise CheckpointError(
            f"{root} has no {' or '.join(CONFIG_FILES)}; the checkpoint is damaged"
        )
    tree = run.load_file(file, allow=_family_packages())
    if not isinstance(tree, fdl.Buildable):
        raise CheckpointError(f"{file} does not describe a config (no _target_ at the top)")
    try:
        return run.build(tree)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{file}: cannot build the model config: {err}") from None


def _family_packages() -> tuple[str, ...]:
    """Top-level packages of registered families: their configs may be loaded (a family
    registered through an entry point is code the user installed, hence trusted)."""
    return tuple({f.config_class.__module__.split(".")[0] for f in families()})
