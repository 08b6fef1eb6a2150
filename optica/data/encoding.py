"""Segments → ``input_ids`` and ``labels``, tokenized per segment so labels are exact.

LLaVA tokenizes the whole prompt and then recomputes where each answer starts by tokenizing
pieces again; when the two disagree it prints "tokenization mismatch" and zeroes the sample's
labels. Here each segment is tokenized on its own and the ids are concatenated, so every token
belongs to exactly one segment and its label is known by construction.

Which ids: the first text piece is tokenized as the start of a text (with the tokenizer's dummy
prefix, e.g. SentencePiece's ``▁``), every later piece as a continuation (the same tokenizer with
the dummy prefix switched off: Metaspace ``prepend_scheme="never"``, no ``Prepend`` normalizer,
ByteLevel ``add_prefix_space=False``). Segments are cut where tokens split anyway (before a space,
around special tokens and image tags), so for byte-level BPE (Llama 3, Qwen) and non-legacy
SentencePiece tokenizers (``legacy=False``) this equals tokenizing the whole string. It differs
for *legacy* SentencePiece tokenizers, which insert an extra ``▁`` after every special token
(``</s>USER`` → ``</s> ▁USER``); that quirk is not reproduced, deliberately: it is what HF fixed
with ``legacy=False`` and what made LLaVA's masks drift. :meth:`SegmentTokenizer.differs` tells
whether a sample's whole-string tokenization would differ (``optica data stats`` counts them).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from optica.data.config import DEFAULT_IMAGE_TOKEN, IGNORE_INDEX, ImageToken
from optica.data.errors import DataConfigError
from optica.data.templates import Segment

START_CACHE = 256  # distinct first pieces whose ids are kept (a handful of system prompts)


def _strip_dummy_prefix(node):
    """Returns a copy of a tokenizer.json subtree with every dummy-prefix step disabled."""
    if isinstance(node, list):
        return [_strip_dummy_prefix(item) for item in node if not _is_prepend(item)]
    if not isinstance(node, dict):
        return node
    if node.get("type") == "Metaspace":
        node = {**node, "prepend_scheme": "never", "add_prefix_space": False}
    elif node.get("type") == "ByteLevel" and node.get("add_prefix_space"):
        node = {**node, "add_prefix_space": False}
    return {key: _strip_dummy_prefix(value) for key, value in node.items()}


def _is_prepend(node) -> bool:
    return isinstance(node, dict) and node.get("type") == "Prepend"


def plain_copy(backend, spec: dict | None = None):
    """A copy of a ``tokenizers.Tokenizer`` that never pads or truncates: a processor that
    tokenized a padded batch with the same tokenizer leaves padding switched on in its backend,
    which would put pad tokens inside a sample."""
    from tokenizers import Tokenizer

    copy = Tokenizer.from_str(json.dumps(spec) if spec is not None else backend.to_str())
    copy.no_padding()
    copy.no_truncation()
    return copy


def continuation_tokenizer(backend):
    """A copy of a ``tokenizers.Tokenizer`` that never adds a dummy prefix (nor pads)."""
    spec = json.loads(backend.to_str())
    if _is_prepend(spec.get("normalizer")):
        spec["normalizer"] = None
    for key in ("normalizer", "pre_tokenizer"):
        spec[key] = _strip_dummy_prefix(spec.get(key))
    return plain_copy(backend, spec)


@dataclass(frozen=True)
class Tokens:
    """A tokenized conversation, image placeholders included (text-token granularity)."""

    input_ids: list[int]
    labels: list[int]

    @property
    def learned(self) -> int:
        return sum(label != IGNORE_INDEX for label in self.labels)


class SegmentTokenizer:
    """Tokenizes (text, learned) segments with images split out at the image tag.

    Args:
        tokenizer: A Hugging Face fast tokenizer (anything with ``backend_tokenizer``).
        image_token: The image tag and the id it becomes.
        ignore_index: Label of tokens that are not learned.
    """

    def __init__(
        self, tokenizer, *, image_token: ImageToken = DEFAULT_IMAGE_TOKEN, ignore_index=-100
    ):
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise DataConfigError(
                f"{type(tokenizer).__name__} is not a fast tokenizer; optica needs one backed by "
                "the tokenizers library (AutoTokenizer.from_pretrained(..., use_fast=True))"
            )
        self.tokenizer = tokenizer
        self.image_token = image_token
        self.ignore_index = ignore_index
        self._start, self._continue = plain_copy(backend), continuation_tokenizer(backend)
        self.bos_id = tokenizer.bos_token_id
        # A sample's first piece is mostly the same system prompt and user header: cached,
        # unless the tokenizer is random (BPE dropout).
        self._starts: dict[str, tuple[int, ...]] | None = None
        if not getattr(backend.model, "dropout", None):
            self._starts = {}

    def _pieces(self, segments: list[Segment]) -> list[tuple[str | None, bool]]:
        """Splits at image tags: ``(None, False)`` stands for an image."""
        pieces: list[tuple[str | None, bool]] = []
        for text, learned in segments:
            for k, part in enumerate(text.split(self.image_token.token_str)):
                if k:
                    pieces.append((None, False))
                if part:
                    pieces.append((part, learned))
        return pieces

    def _encode_texts(self, texts: list[str], first_is_start: bool) -> list[Sequence[int]]:
        """One ``encode`` call per text: a conversation has a handful of short pieces, for which
        ``encode_batch`` costs more than it saves (it wakes the tokenizers thread pool for every
        sample, which on a few busy cores measured ~1 ms per sample against ~0.1 ms)."""
        return [
            self._encode_start(text)
            if first_is_start and k == 0
            else self._continue.encode(text, add_special_tokens=False).ids
            for k, text in enumerate(texts)
        ]

    def _encode_start(self, text: str) -> tuple[int, ...] | list[int]:
        """The ids of a first piece; the first ``START_CACHE`` distinct ones are kept."""
        ids = self._starts.get(text) if self._starts is not None else None
        if ids is None:
            ids = self._start.encode(text, add_special_tokens=False).ids
            if self._starts is not None and len(self._starts) < START_CACHE:
                self._starts[text] = ids = tuple(ids)
        return ids

    def encode(self, segments: list[Segment], *, bos: bool) -> Tokens:
        """Ids and labels; one BOS at the front when ``bos`` (never two)."""
        pieces = self._pieces(segments)
        texts = [text for text, _ in pieces if text is not None]
        encoded = iter(self._encode_texts(texts, bool(pieces) and pieces[0][0] is not None))
        ids: list[int] = []
        labels: list[int] = []
        for text, learned in pieces:
            chunk = [self.image_token.token_id] if text is None else next(encoded)
            ids += chunk
            labels += chunk if learned else [self.ignore_index] * len(chunk)
        if bos and self.bos_id is not None and ids[:1] != [self.bos_id]:
            ids, labels = [self.bos_id, *ids], [self.ignore_index, *labels]
        if labels:
            labels[0] = self.ignore_index  # nothing predicts a sample's first token (packing)
        return Tokens(ids, labels)

    def whole_string_ids(self, segments: list[Segment]) -> list[int]:
        """Ids from tokenizing the text between image tags in one piece each (no BOS)."""
        text = "".join(t for t, _ in segments)
        ids: list[int] = []
        for k, part in enumerate(text.split(self.image_token.token_str)):
            if k:
                ids.append(self.image_token.token_id)
            if part:
                tokenizer = self._start if k == 0 else self._continue
                ids += tokenizer.encode(part, add_special_tokens=False).ids
        return ids

    def differs(self, segments: list[Segment], tokens: Tokens) -> bool:
        """Whether whole-string tokenization would give other ids than the segments did."""
        ids = tokens.input_ids
        if self.bos_id is not None and ids[:1] == [self.bos_id]:
            whole = self.whole_string_ids(segments)
            return ids[1:] != whole and ids != whole
        return ids != self.whole_string_ids(segments)
