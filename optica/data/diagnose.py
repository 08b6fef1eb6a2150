"""What ``optica data inspect`` and ``optica data stats`` compute: the tool for "why is my loss 0".

``inspect`` shows each processed sample as the model will see it: ids (-200 at images), labels
(-100 where not learned) and the text with learned spans in ``[[...]]``. ``stats`` runs every
sample through the same path and counts what happened.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from optica.data.config import IGNORE_INDEX, IMAGE_TOKEN_ID
from optica.data.errors import BadSampleError, DataReport
from optica.data.llava import LlavaDataset, open_image


def _runs(ids: list[int], labels: list[int]) -> Iterator[tuple[str, int, int]]:
    """(kind, start, end) runs of ``image`` / ``learned`` / ``prompt`` tokens."""
    start = 0
    for k in range(1, len(ids) + 1):
        kind = _kind(ids[start], labels[start])
        if k == len(ids) or _kind(ids[k], labels[k]) != kind:
            yield kind, start, k
            start = k


def _kind(token: int, label: int) -> str:
    if token == IMAGE_TOKEN_ID:
        return "image"
    return "learned" if label != IGNORE_INDEX else "prompt"


def marked_text(ids: list[int], labels: list[int], tokenizer, image_tag: str = "<image>") -> str:
    """The decoded sequence with learned spans in ``[[...]]`` and images as ``image_tag``.

    Runs are cut out of decodes of growing prefixes of the text ids, so spaces that a decoder
    handles at a word's start come out as they will be generated.
    """
    text_ids = [t for t in ids if t != IMAGE_TOKEN_ID]
    decoded, done, out = "", 0, []
    for kind, start, end in _runs(ids, labels):
        if kind == "image":
            out.append(image_tag * (end - start))
            continue
        done += end - start
        prefix = tokenizer.decode(text_ids[:done], skip_special_tokens=False)
        piece = prefix[len(decoded) :] if prefix.startswith(decoded) else prefix
        decoded = prefix
        out.append(f"[[{piece}]]" if kind == "learned" else piece)
    return "".join(out)


def describe(dataset: LlavaDataset, index: int, *, check_images: bool = False) -> dict:
    """One sample as a JSON-able dict (``error`` instead of tokens for a bad sample)."""
    try:
        conversation = dataset.conversation(index)
        tokens, notes = dataset.encoder.tokenize(conversation)
        if check_images:
            _open_images(dataset, conversation)
    except BadSampleError as err:
        return {"index": index, "id": err.problem.sample, "error": str(err.problem)}
    tokenizer = dataset.encoder.segment_tokenizer.tokenizer
    ids, labels = tokens.input_ids, tokens.labels
    return {
        "id": conversation.id,
        "input_ids": ids,
        "labels": labels,
        "text": marked_text(ids, labels, tokenizer, dataset.encoder.image_token.token_str),
        "length": dataset.encoder.length(ids),
        "learned": tokens.learned,
        "images": ids.count(IMAGE_TOKEN_ID),
        "notes": [p.message for p in notes],
    }


def _bucket(length: int) -> str:
    """Power-of-two length buckets: ``"<=256"``."""
    return f"<={1 << max(0, (length - 1).bit_length())}"


@dataclass
class _Tally:
    report: DataReport = field(default_factory=DataReport)
    lengths: Counter = field(default_factory=Counter)
    images: Counter = field(default_factory=Counter)
    usable: int = 0
    learned: int = 0
    differs: int = 0

    def add(self, encoder, conversation, tokens, notes) -> None:
        self.report.add(notes)
        self.usable += 1
        self.learned += tokens.learned
        self.differs += encoder.tokenization_differs(conversation)
        self.lengths[_bucket(encoder.length(tokens.input_ids))] += 1
        self.images[tokens.input_ids.count(IMAGE_TOKEN_ID)] += 1

    def result(self, total: int) -> dict:
        counts = self.report.counts
        return {
            "samples": total,
            "usable": self.usable,
            "skipped": {k: n for k, n in sorted(counts.items()) if k != "truncated"},
            "truncated": counts.get("truncated", 0),
            "text_only": self.images.get(0, 0),
            "images_per_sample": {str(k): self.images[k] for k in sorted(self.images)},
            "length": {k: self.lengths[k] for k in sorted(self.lengths, key=lambda b: int(b[2:]))},
            "learned_tokens": self.learned,
            "tokenization_differs": self.differs,
            "examples": self.report.examples,
        }


def collect_stats(
    dataset: LlavaDataset, *, limit: int | None = None, check_images: bool = False
) -> dict:
    """Counts over the first ``limit`` samples (all by default), as the training path sees them.

    Returns:
        ``samples``, ``usable``, ``skipped`` (by reason), ``truncated``, ``text_only``,
        ``images_per_sample`` and ``length`` histograms, ``learned_tokens``,
        ``tokenization_differs`` (whole-string tokenization would differ; see encoding.py),
        and up to three ``examples`` per problem kind.
    """
    tally = _Tally()
    total = len(dataset) if limit is None else min(limit, len(dataset))
    for index in range(total):
        try:
            conversation = dataset.conversation(index)
            tokens, notes = dataset.encoder.tokenize(conversation)
            if check_images:
                _open_images(dataset, conversation)
        except BadSampleError as err:
            tally.report.add(err.problems)
            continue
        tally.add(dataset.encoder, conversation, tokens, notes)
    return tally.result(total)


def _open_images(dataset: LlavaDataset, conversation) -> None:
    for ref in conversation.images:
        open_image(dataset.image_path(conversation, ref), conversation.id)
