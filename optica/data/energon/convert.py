"""LLaVA JSON / JSONL + image folder → WebDataset tar shards ready for energon.

Each sample becomes ``<key>.json`` (its record, unchanged but for a default ``id``) and
``<key>.img<k>.<ext>`` (its ``k``-th image, the original bytes: no re-encoding, so the shards give
the same pixels as the JSON path). Every sample is checked the way training will read it —
record, roles, tags against images, image paths inside the folder, every image decoded — so a bad
sample is reported here by file and id, not in the middle of a run. Under ``error`` (default) the
first one stops the conversion; under ``skip`` each is left out and listed.

The shards are written to a temporary sibling folder and moved into place only when complete
(prepared for energon, see :mod:`optica.data.energon.prepare`), so a failed conversion never
leaves a half-written dataset behind.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from optica.data.conversation import parse_conversation
from optica.data.energon.prepare import prepare_shards
from optica.data.energon.samples import image_part_name
from optica.data.errors import BadSampleError, DataError, Problem, bad_sample, check_policy
from optica.data.index import ConversationIndex
from optica.data.llava import inside, open_image

SHARD_PATTERN = "shard-{:06d}.tar"


@dataclass
class ConversionReport:
    """What a conversion wrote and what it left out."""

    output: Path
    samples: int = 0
    images: int = 0
    shards: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def summary(self) -> str:
        skipped = f"; {len(self.problems)} bad sample(s) skipped" if self.problems else ""
        return (
            f"wrote {self.samples} samples ({self.images} images) in {len(self.shards)} shard(s) "
            f"to {self.output}{skipped}"
        )


class ShardWriter:
    """Writes members into numbered tar shards of at most ``shard_size`` samples, reproducibly
    (fixed mtime, owner and mode: the same input gives the same bytes)."""

    def __init__(self, folder: Path, shard_size: int):
        self.folder, self.shard_size = folder, shard_size
        self.names: list[str] = []
        self._tar: tarfile.TarFile | None = None
        self._in_shard = 0

    def add_sample(self, members: list[tuple[str, bytes]]) -> None:
        if self._tar is None or self._in_shard == self.shard_size:
            self._open_next()
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            self._tar.addfile(info, io.BytesIO(data))
        self._in_shard += 1

    def _open_next(self) -> None:
        self.close()
        self.names.append(SHARD_PATTERN.format(len(self.names)))
        path = self.folder / self.names[-1]
        self._tar = tarfile.open(path, "w", format=tarfile.USTAR_FORMAT)  # noqa: SIM115
        self._in_shard = 0

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()
            self._tar = None


class RecordReader:
    """Reads and checks one sample of the conversation files, as training would."""

    def __init__(self, index: ConversationIndex, image_folder: Path | None, image_tag: str):
        self.index, self.image_folder, self.image_tag = index, image_folder, image_tag

    def members(self, position: int, key: str) -> list[tuple[str, bytes]]:
        """The tar members of sample ``position`` (raises :class:`BadSampleError`)."""
        record, file, local = self.index.load(position)
        where = file.where(local)
        record.setdefault("id", f"{file.path.name}:{local}")  # the JSON path's default id
        conversation = parse_conversation(
            record, default_id=record["id"], where=where, image_tag=self.image_tag,
            images_to_front=False,
        )  # fmt: skip
        folder = self.image_folder or file.path.parent
        members = [(f"{key}.json", json.dumps(record, ensure_ascii=False).encode())]
        for k, ref in enumerate(conversation.images):
            members.append(self._image(k, ref, folder, key, conversation.id, where))
        return members

    @staticmethod
    def _image(k: int, ref: str, folder: Path, key: str, sample: str, where: str):
        path = inside(folder, ref)
        if path is None:
            message = f"image path {ref!r} leaves the image folder {folder}"
            raise bad_sample("image_outside_folder", sample, where, message)
        open_image(path, sample, f"{where} image {path}")  # decodes fully: a bad image fails here
        return f"{key}.{image_part_name(k, Path(path).suffix or '.jpg')}", Path(path).read_bytes()


def convert_llava(
    data_paths,
    output: str | Path,
    *,
    image_folder: str | Path | None = None,
    shard_size: int = 1000,
    on_bad_input: str = "error",
    image_tag: str = "<image>",
    split_ratio: tuple[float, float, float] = (1.0, 0.0, 0.0),
    overwrite: bool = False,
) -> ConversionReport:
    """Converts LLaVA conversation files (files or folders) into prepared energon shards.

    Args:
        data_paths: ``*.json`` / ``*.jsonl`` files and folders.
        output: The dataset folder to create.
        image_folder: Base of relative image paths (default: each data file's folder).
        shard_size: Samples per tar shard.
        on_bad_input: ``error`` stops at the first bad sample; ``skip`` leaves it out and lists it.
        image_tag: The image placeholder in the conversations.
        split_ratio: energon's train/val/test split of the shards.
        overwrite: Replace an existing ``output``.
    """
    check_policy(on_bad_input)
    if shard_size < 1:
        raise DataError(f"shard_size={shard_size}: must be at least 1")
    output = Path(output)
    _check_output(output, overwrite)
    if image_folder is not None and not Path(image_folder).is_dir():
        raise DataError(f"image_folder {image_folder}: no such folder")
    reader = RecordReader(
        ConversationIndex(data_paths), image_folder and Path(image_folder), image_tag
    )
    staging = output.with_name(f".{output.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        report = _write(reader, staging, shard_size, on_bad_input)
        prepare_shards(staging, split_ratio=split_ratio)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if output.exists():
        shutil.rmtree(output)
    staging.rename(output)
    report.output = output
    return report


def _check_output(output: Path, overwrite: bool) -> None:
    if output.exists() and not output.is_dir():
        raise DataError(f"{output} is a file, not a dataset folder")
    if output.exists() and any(output.iterdir()) and not overwrite:
        raise DataError(f"{output} exists and is not empty (--overwrite replaces it)")


def _write(reader: RecordReader, folder: Path, shard_size: int, policy: str) -> ConversionReport:
    report = ConversionReport(folder)
    writer = ShardWriter(folder, shard_size)
    try:
        for position in range(len(reader.index)):
            try:
                members = reader.members(position, f"{report.samples:08d}")
            except BadSampleError as err:
                if policy != "skip":
                    raise
                report.problems.extend(err.problems)
                continue
            writer.add_sample(members)
            report.samples += 1
            report.images += len(members) - 1
    finally:
        writer.close()
    if report.samples == 0:
        raise DataError(f"no good samples to convert ({len(report.problems)} bad)")
    report.shards = writer.names
    return report
