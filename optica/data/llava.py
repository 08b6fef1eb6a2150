"""LLaVA conversation files as a map-style dataset of :class:`~optica.data.sample.Sample`.

Bad samples follow ``on_bad_input``: ``error`` raises a one-line message naming the file, line,
sample and image; ``skip`` takes the next good sample in its place (so batch shapes and the
resumable order stay fixed) and carries a :class:`~optica.data.errors.Problem` for each skipped
one to the main process, where it is counted.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import IO

from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from optica.data.conversation import Conversation, parse_conversation
from optica.data.errors import BadSampleError, DataError, Problem, bad_sample
from optica.data.index import ConversationFile, ConversationIndex
from optica.data.sample import DroppedSample, Sample, SampleEncoder
from optica.data.slab import ImageSlab

MAX_SKIPS_IN_A_ROW = 100


@dataclass(frozen=True)
class Location:
    """A sample's place in its file (its file also locates its images)."""

    file: ConversationFile
    index: int

    def __str__(self) -> str:
        return self.file.where(self.index)


def first_good(index: int, size: int, encode: Callable[[int], Sample], policy: str) -> Sample:
    """``encode(index)``, or under ``skip`` the next index that encodes, with the problems met."""
    problems: list[Problem] = []
    for attempt in range(min(MAX_SKIPS_IN_A_ROW, size)):
        try:
            sample = encode((index + attempt) % size)
        except DroppedSample as err:
            problems.extend(err.problems)
            continue
        except BadSampleError as err:
            if policy != "skip":
                raise
            problems.extend(err.problems)
            continue
        return replace(sample, problems=(*problems, *sample.problems))
    raise DataError(
        f"{len(problems)} bad samples in a row from index {index}; last: {problems[-1]}"
    )


def open_image(path: str | Path | IO[bytes], sample: str, where: object = None) -> Image.Image:
    """Loads an image fully (so a truncated file fails here, with its path and sample).

    ``path`` may be an open binary stream (an image inside a shard); ``where`` then names it.
    """
    where = path if where is None else where
    try:
        # NOTE: the whole file is read first: Pillow's JPEG parser makes dozens of small reads,
        # cheaper on bytes in memory than through a buffered file.
        source = path if hasattr(path, "read") else io.BytesIO(Path(path).read_bytes())
        with Image.open(source) as image:
            image.load()
            return image if image.mode == "RGB" else image.convert("RGB")  # convert copies
    except FileNotFoundError:
        raise bad_sample("missing_image", sample, where, "image not found") from None
    except PermissionError:
        raise bad_sample("unreadable_image", sample, where, "image not readable") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise bad_sample("corrupt_image", sample, where, f"corrupt image ({err})") from None


def inside(folder: str | Path, reference: str) -> str | None:
    """``folder/reference`` if it stays inside ``folder`` (lexically: symlinks are allowed)."""
    base = os.path.normpath(os.fspath(folder))
    path = os.path.normpath(os.path.join(base, reference))
    return path if path == base or path.startswith(base.rstrip(os.sep) + os.sep) else None


class LlavaDataset(Dataset):
    """Samples of LLaVA JSON / JSONL files, parsed and encoded on access.

    Args:
        paths: Files and folders (``*.json`` / ``*.jsonl``).
        encoder: Turns a conversation into a sample.
        image_folder: Base of relative image paths (default: each data file's folder).
        on_bad_input: ``error`` or ``skip``.
        images_to_front: Move each turn's image tags to its front (LLaVA).
    """

    def __init__(
        self,
        paths: str | Path | Sequence[str | Path],
        *,
        encoder: SampleEncoder,
        image_folder: str | Path | None = None,
        on_bad_input: str = "error",
        images_to_front: bool = True,
    ):
        self.index = ConversationIndex(paths)
        if len(self.index) == 0:
            raise DataError(f"no samples in {paths}")
        if image_folder is not None and not Path(image_folder).is_dir():
            raise DataError(f"image_folder {image_folder}: no such folder")
        self.encoder, self.image_folder = encoder, image_folder
        self.on_bad_input, self.images_to_front = on_bad_input, images_to_front

    def __len__(self) -> int:
        return len(self.index)

    def conversation(self, index: int) -> Conversation:
        """Sample ``index`` parsed and checked (raises :class:`BadSampleError`)."""
        record, file, local = self.index.load(index)
        return parse_conversation(
            record,
            default_id=f"{file.path.name}:{local}",
            where=Location(file, local),
            image_tag=self.encoder.image_token.token_str,
            images_to_front=self.images_to_front,
        )

    def image_path(self, conversation: Conversation, reference: str) -> str:
        folder = self.image_folder or conversation.where.file.path.parent
        path = inside(folder, reference)
        if path is None:
            message = f"image path {reference!r} leaves the image folder {folder}"
            raise bad_sample("image_outside_folder", conversation.id, conversation.where, message)
        return path

    def encode(self, index: int, slab: ImageSlab | None = None) -> Sample:
        """Sample ``index`` or a :class:`BadSampleError` (no policy applied); its images go
        into ``slab`` while it has room."""
        conversation = self.conversation(index)
        paths = {ref: self.image_path(conversation, ref) for ref in conversation.images}
        sample = conversation.id
        return self.encoder.encode(conversation, lambda ref: open_image(paths[ref], sample), slab)

    def __getitem__(self, index: int) -> Sample:
        return first_good(index, len(self), self.encode, self.on_bad_input)

    def __getitems__(self, indices: Sequence[int]) -> list[Sample]:
        """``[self[i] for i in indices]``, as torch's DataLoader fetches a batch, with the
        images normalised into one slab (one slot per sample), so that collating them is a view,
        not a copy (optica.data.slab)."""
        slab = self.encoder.image_slab(len(indices))
        encode = partial(self.encode, slab=slab)
        return [first_good(i, len(self), encode, self.on_bad_input) for i in indices]

    def token_length(self, index: int) -> int:
        """Language-model length after the length policy, without loading images."""
        tokens, _ = self.encoder.tokenize(self.conversation(index))
        return self.encoder.length(tokens.input_ids)
