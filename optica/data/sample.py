"""One conversation → one training :class:`Sample` (tokens, labels, images), by any source.

The LLaVA JSON reader, the synthetic shapes and (later) the Energon task encoders all build a
:class:`~optica.data.conversation.Conversation` and hand it to the same :class:`SampleEncoder`, so
every source yields identical batches for identical content.

Lengths: ``seq_length`` bounds the sequence the language model sees, where each image tag counts
``image_token_len`` tokens. A longer sample is truncated (never through an image: the cut moves
before its tag and the image is dropped), dropped, or refused, by the ``overlong`` policy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from optica.data.config import DEFAULT_IMAGE_TOKEN, ImageToken
from optica.data.conversation import Conversation
from optica.data.encoding import SegmentTokenizer, Tokens
from optica.data.errors import BadSampleError, DataError, Problem, bad_sample
from optica.data.images import ImageProcessor
from optica.data.slab import ImageSlab, joined_view


class DroppedSample(BadSampleError):
    """A sample left out by a policy (``overlong='drop'``): always skipped, always counted."""

    hint = ""


@dataclass
class Sample:
    """Model inputs for one row: a single sample, or several packed together.

    Attributes:
        ids: The id of each sample in the row.
        input_ids: Long [T], the image token id (-200) at each image.
        labels: Long [T], -100 where nothing is learned.
        images: Float [N, 3, H, W], one per -200 in order (N may be 0).
        lengths: Tokens of each sample in ``input_ids`` (sums to T).
        problems: Notes and skipped samples met while producing this row.
    """

    ids: tuple[str, ...]
    input_ids: torch.Tensor
    labels: torch.Tensor
    images: torch.Tensor
    lengths: tuple[int, ...]
    problems: tuple[Problem, ...] = ()


class SampleEncoder:
    """Template, tokenizer, length policy and image processor, applied to a conversation.

    Args:
        tokenizer: A Hugging Face fast tokenizer.
        template: A built-in ``ConversationTemplate`` or a ``JinjaTemplate``.
        seq_length: Longest sequence, counting ``image_token_len`` per image.
        image_token_len: Language-model tokens per image.
        image_processor: Pixel preprocessing; ``None`` for text-only use (inspect, stats).
        image_token: The tag and its id.
        system_prompt: Replaces the template's default system prompt.
        overlong: ``truncate``, ``drop`` or ``error``.
    """

    def __init__(
        self,
        *,
        tokenizer,
        template,
        seq_length: int,
        image_token_len: int | None,
        image_processor: ImageProcessor | None = None,
        image_token: ImageToken = DEFAULT_IMAGE_TOKEN,
        system_prompt: str | None = None,
        overlong: str = "truncate",
    ):
        self.segment_tokenizer = SegmentTokenizer(tokenizer, image_token=image_token)
        self.template, self.seq_length, self.overlong = template, seq_length, overlong
        self.image_token_len = image_token_len
        self.image_processor, self.image_token = image_processor, image_token
        self.system_prompt = system_prompt

    def segments(self, conversation: Conversation) -> list[tuple[str, bool]]:
        return self.template.segments(
            conversation, system=self.system_prompt, image_tag=self.image_token.token_str
        )

    def _check_answers(self, conversation: Conversation, segments) -> None:
        stop = getattr(self.template, "stop_string", None)
        for text, learned in segments:
            if learned and stop and stop.strip() and text.count(stop) > 1:
                message = f"an answer contains the stop string {stop!r} before its end"
                raise bad_sample("stop_in_answer", conversation.id, conversation.where, message)

    def cost(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Cumulative language-model length after each token (images count image_token_len)."""
        is_image = input_ids == self.image_token.token_id
        self._check_image_token_len(bool(is_image.any()))
        per_token = torch.where(is_image, self.image_token_len or 1, 1)
        return per_token.cumsum(0)

    def length(self, input_ids: list[int]) -> int:
        """``cost(input_ids)[-1]`` (0 for no tokens), counted on the list: most samples fit,
        and for them this is all :meth:`_fit` needs."""
        images = input_ids.count(self.image_token.token_id)
        self._check_image_token_len(images > 0)
        return len(input_ids) + images * ((self.image_token_len or 1) - 1)

    def _check_image_token_len(self, has_images: bool) -> None:
        if has_images and self.image_token_len is None:
            raise DataError("samples have images but image_token_len is unknown: set it")

    def tokenize(self, conversation: Conversation) -> tuple[Tokens, list[Problem]]:
        """Tokens within ``seq_length`` (truncated by policy), and notes about them."""
        segments = self.segments(conversation)
        self._check_answers(conversation, segments)
        tokens = self.segment_tokenizer.encode(segments, bos=getattr(self.template, "bos", True))
        return self._fit(conversation, tokens)

    def tokenization_differs(self, conversation: Conversation) -> bool:
        """Whether tokenizing the whole prompt at once would give other ids (see encoding.py)."""
        segments = self.segments(conversation)
        tokens = self.segment_tokenizer.encode(segments, bos=getattr(self.template, "bos", True))
        return self.segment_tokenizer.differs(segments, tokens)

    def _fit(self, conversation: Conversation, tokens: Tokens) -> tuple[Tokens, list[Problem]]:
        length = self.length(tokens.input_ids)
        if length <= self.seq_length:
            return tokens, []
        cost = self.cost(torch.tensor(tokens.input_ids, dtype=torch.long))
        message = f"{length} tokens (images included) > seq_length {self.seq_length}"
        where = str(conversation.where)  # rendered now: a Problem travels between processes
        if self.overlong == "error":
            raise DataError(f"{where}: sample '{conversation.id}': {message}")
        if self.overlong == "drop":
            raise DroppedSample(Problem("too_long", conversation.id, where, message))
        keep = int((cost <= self.seq_length).sum())
        cut = Tokens(tokens.input_ids[:keep], tokens.labels[:keep])
        if cut.learned == 0:
            message += "; nothing learned is left after truncation"
            raise DroppedSample(Problem("too_long", conversation.id, where, message))
        truncated = Problem("truncated", conversation.id, where, message, skipped=False)
        return cut, [truncated]

    def encode(
        self,
        conversation: Conversation,
        load_image: Callable[[str], Image.Image],
        slab: ImageSlab | None = None,
    ) -> Sample:
        """The full sample: tokens, labels and the kept images (those whose tag survived),
        normalised into ``slab``'s next slots while it has some."""
        tokens, notes = self.tokenize(conversation)
        kept = tokens.input_ids.count(self.image_token.token_id)
        images = [self._pixels(load_image(ref), slab) for ref in conversation.images[:kept]]
        return Sample(
            ids=(conversation.id,),
            input_ids=torch.tensor(tokens.input_ids, dtype=torch.long),
            labels=torch.tensor(tokens.labels, dtype=torch.long),
            images=stack_images(images) if images else self.empty_images(),
            lengths=(len(tokens.input_ids),),
            problems=tuple(notes),
        )

    def _pixels(self, image: Image.Image, slab: ImageSlab | None = None) -> torch.Tensor:
        if self.image_processor is None:
            raise DataError("samples have images but no image processor was given")
        slot = slab.next(self.image_processor.size) if slab is not None else None
        return self.image_processor(image, out=slot)

    def image_slab(self, count: int) -> ImageSlab | None:
        """Room for ``count`` images of this encoder's size (``None`` without a processor)."""
        return ImageSlab(count, self.image_processor.size) if self.image_processor else None

    def empty_images(self) -> torch.Tensor:
        height, width = self.image_processor.size if self.image_processor else (1, 1)
        return torch.empty(0, 3, height, width)


def stack_images(images: list[torch.Tensor]) -> torch.Tensor:
    """[N, 3, H, W]. One image, or several back to back in a slab, is a view, no copy; others
    are joined with numpy, whose copy is single-threaded: torch's would wake its thread pool for
    every sample in every DataLoader worker, which on a few busy cores costs more than the copy."""
    rows = [image.unsqueeze(0) for image in images]
    joined = rows[0] if len(rows) == 1 else joined_view(rows)
    return joined if joined is not None else torch.from_numpy(np.stack([i.numpy() for i in images]))
