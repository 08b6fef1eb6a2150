"""Energon sample types → optica :class:`~optica.data.sample.Sample`, through the JSON path's code.

Every encoder here rewrites its sample as what the JSON path reads — a LLaVA record (``id``,
``image``, ``conversations``) checked by :func:`~optica.data.conversation.parse_conversation` —
and hands it to the same :class:`~optica.data.sample.SampleEncoder`, so a VQA pair, a caption or
a converted LLaVA record gives exactly the batch its JSON twin gives. Interleaved documents have
no conversation: they go through the same encoder with :class:`DocumentTemplate` (all text
learned, images not). Nothing here imports energon: samples are read by attribute.

Which encoder a sample gets is decided by its type name (``VQASample``, ``CaptioningSample``,
``InterleavedSample``, ``SimilarityInterleavedSample``) or, for energon's crude samples (plain
dicts, what ``optica data convert`` writes), :class:`LlavaRecordEncoder`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from optica.data.conversation import Conversation, Message, parse_conversation
from optica.data.energon.fields import as_image, as_text, sample_key, sample_where
from optica.data.errors import bad_sample
from optica.data.sample import Sample, SampleEncoder

_IMAGE_PART = re.compile(r"^img(\d+)\.[A-Za-z0-9]+$")


def image_part_name(index: int, suffix: str) -> str:
    """The shard part of a record's ``index``-th image (``img0.jpg``): the converter writes it,
    :class:`LlavaRecordEncoder` reads it."""
    return f"img{index}{suffix.lower()}"


class RecordEncoder:
    """A LLaVA record and its images (by reference) → a :class:`Sample`, as the JSON path does.

    Args:
        encoder: Template, tokenizer, length policy and image processor.
        images_to_front: Move each turn's image tags to its front (LLaVA).
    """

    def __init__(self, encoder: SampleEncoder, *, images_to_front: bool = True):
        self.encoder, self.images_to_front = encoder, images_to_front

    @property
    def image_tag(self) -> str:
        return self.encoder.image_token.token_str

    def encode_record(self, record: dict, images: dict, *, key: str, where: str) -> Sample:
        """``images`` maps each image reference of the record to its (undecoded) value."""
        conversation = parse_conversation(
            record,
            default_id=key,
            where=where,
            image_tag=self.image_tag,
            images_to_front=self.images_to_front,
        )
        return self.encoder.encode(conversation, self._loader(conversation, images, where))

    @staticmethod
    def _loader(conversation: Conversation, images: dict, where: str) -> Callable:
        def load(ref: str):
            return as_image(images[ref], sample=conversation.id, where=f"{where} {ref}")

        return load


class LlavaRecordEncoder(RecordEncoder):
    """Crude samples written by ``optica data convert``: ``json`` (the LLaVA record, unchanged)
    and ``img0.<ext>``, ``img1.<ext>``... (the record's images in order, original bytes)."""

    def encode(self, raw: dict) -> Sample:
        key, where = sample_key(raw), sample_where(raw)
        record = self._record(raw, key, where)
        refs = record.get("image", record.get("images")) or []
        refs = [refs] if isinstance(refs, str) else list(refs)
        parts = self._image_parts(raw)
        if len(parts) != len(refs):
            message = f"{len(refs)} image reference(s) but {len(parts)} image part(s) in the shard"
            raise bad_sample("missing_image", str(record.get("id", key)), where, message)
        return self.encode_record(record, dict(zip(refs, parts)), key=key, where=where)

    @staticmethod
    def _record(raw: dict, key: str, where: str) -> dict:
        value = raw.get("json")
        if value is None:
            raise bad_sample("bad_record", key, where, "no 'json' part (not an optica shard?)")
        if isinstance(value, (bytes, bytearray, str)):
            try:
                value = json.loads(value)
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise bad_sample("malformed_json", key, where, f"malformed JSON ({err})") from None
        if not isinstance(value, dict):
            raise bad_sample("malformed_json", key, where, "the 'json' part is not an object")
        return value

    @staticmethod
    def _image_parts(raw: dict) -> list:
        numbered = {}
        for name, value in raw.items():
            match = _IMAGE_PART.match(name)
            if match:
                numbered[int(match.group(1))] = value
        return [numbered[i] for i in sorted(numbered)]


class VQAEncoder(RecordEncoder):
    """``VQASample(image, context, answers, answer_weights)`` → one question, one answer (the
    highest-weighted one, else the first). The image tag goes in front of the question unless
    the context places it."""

    def encode(self, sample) -> Sample:
        key, where = sample_key(sample), sample_where(sample)
        question = as_text(sample.context, field="context", sample=key, where=where)
        if self.image_tag not in question:
            question = f"{self.image_tag}\n{question}"
        answer = as_text(self._answer(sample, key, where), field="answer", sample=key, where=where)
        record = _record(key, question, answer)
        return self.encode_record(record, {"image": sample.image}, key=key, where=where)

    @staticmethod
    def _answer(sample, key: str, where: str):
        answers = sample.answers
        if isinstance(answers, (str, bytes)):
            return answers
        if not answers:
            raise bad_sample(
                "no_answer", key, where, "VQA sample without answers: nothing to learn"
            )
        weights = getattr(sample, "answer_weights", None)
        if weights is not None and len(weights) == len(answers):
            return answers[int(torch.as_tensor(weights).argmax())]
        return answers[0]


class CaptioningEncoder(RecordEncoder):
    """``CaptioningSample(image, caption)`` → the image (and ``prompt``, if any) asks, the caption
    answers: with the ``plain`` template this is LLaVA's projector pre-training."""

    def __init__(self, encoder: SampleEncoder, *, images_to_front: bool = True, prompt: str = ""):
        super().__init__(encoder, images_to_front=images_to_front)
        self.prompt = prompt

    def encode(self, sample) -> Sample:
        key, where = sample_key(sample), sample_where(sample)
        caption = as_text(sample.caption, field="caption", sample=key, where=where)
        question = f"{self.image_tag}\n{self.prompt}" if self.prompt else self.image_tag
        record = _record(key, question, caption)
        return self.encode_record(record, {"image": sample.image}, key=key, where=where)


def _record(key: str, question: str, answer: str) -> dict:
    conversations = [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]
    return {"id": key, "image": ["image"], "conversations": conversations}


@dataclass(frozen=True)
class DocumentTemplate:
    """Interleaved documents are pre-training text: every text token is learned, images are not;
    one BOS in front and the tokenizer's EOS at the end (where the next document starts)."""

    eos: str = ""
    bos: bool = True
    stop_string: str = ""

    def segments(self, conversation: Conversation, *, system=None, image_tag="<image>"):
        text = "".join(message.content for message in conversation.turns) + self.eos
        return [(text, True)] if text else []


def document_encoder(encoder: SampleEncoder, tokenizer) -> SampleEncoder:
    """The conversation encoder's settings with :class:`DocumentTemplate` instead of its
    template (same tokenizer, image processor, lengths and image token)."""
    return SampleEncoder(
        tokenizer=tokenizer,
        template=DocumentTemplate(eos=tokenizer.eos_token or ""),
        seq_length=encoder.seq_length,
        image_token_len=encoder.image_token_len,
        image_processor=encoder.image_processor,
        image_token=encoder.image_token,
        overlong=encoder.overlong,
    )


class InterleavedEncoder:
    """``InterleavedSample(sequence=[text | image, ...])`` → the texts joined as they are (put
    spaces or newlines in the texts), an image tag at each image. Text items are ``str``; any
    other item (encoded bytes, a PIL image, a tensor) is an image.

    Args:
        encoder: A :func:`document_encoder`.
    """

    def __init__(self, encoder: SampleEncoder):
        self.encoder = encoder

    def encode(self, sample) -> Sample:
        key, where = sample_key(sample), sample_where(sample)
        return self.encode_sequence(list(sample.sequence), key=key, where=where)

    def encode_sequence(self, sequence: Sequence, *, key: str, where: str) -> Sample:
        tag = self.encoder.image_token.token_str
        texts, images = [], {}
        for item in sequence:
            if isinstance(item, str):  # energon's contract: text is str, anything else an image
                texts.append(item)
            else:
                ref = f"image{len(images)}"
                images[ref] = item
                texts.append(tag)
        if not any(text != tag for text in texts):
            raise bad_sample("no_answer", key, where, "interleaved sample without text")
        message = Message("assistant", "".join(texts))
        conversation = Conversation(key, (message,), tuple(images), where)
        loader = RecordEncoder._loader(conversation, images, where)
        return self.encoder.encode(conversation, loader)


class SimilarityInterleavedEncoder(InterleavedEncoder):
    """``SimilarityInterleavedSample(images, texts, matched_text_indices | similarity_matrix)``
    (MMC4) → an interleaved document: each image right before the text it is matched to (by
    ``matched_text_indices``, else the most similar text), texts joined by ``separator``."""

    def __init__(self, encoder: SampleEncoder, *, separator: str = " "):
        super().__init__(encoder)
        self.separator = separator

    def encode(self, sample) -> Sample:
        key, where = sample_key(sample), sample_where(sample)
        matches = self._matches(sample, key, where)
        sequence: list = []
        for index, text in enumerate(sample.texts):
            sequence += [image for image, match in zip(sample.images, matches) if match == index]
            text = as_text(text, field="texts", sample=key, where=where)
            sequence.append(self.separator + text if index else text)
        return self.encode_sequence(sequence, key=key, where=where)

    @staticmethod
    def _matches(sample, key: str, where: str) -> list[int]:
        images, texts = list(sample.images), list(sample.texts)
        matched = getattr(sample, "matched_text_indices", None)
        if matched is None and getattr(sample, "similarity_matrix", None) is not None:
            matched = torch.as_tensor(sample.similarity_matrix).argmax(dim=1).tolist()
        if matched is None:
            message = "no matched_text_indices and no similarity_matrix: images cannot be placed"
            raise bad_sample("bad_record", key, where, message)
        matched = [int(m) for m in matched]
        if len(matched) != len(images) or any(not 0 <= m < len(texts) for m in matched):
            message = f"matched_text_indices {matched} do not fit {len(images)} image(s) and "
            raise bad_sample("bad_record", key, where, message + f"{len(texts)} text(s)")
        return matched


def default_encoders(
    encoder: SampleEncoder, tokenizer, *, images_to_front: bool = True, caption_prompt: str = ""
) -> dict:
    """Sample type name → encoder, for every type optica reads (``CrudeSample``: the plain dicts
    of crude datasets, which is what ``optica data convert`` writes)."""
    document = document_encoder(encoder, tokenizer)
    return {
        "CrudeSample": LlavaRecordEncoder(encoder, images_to_front=images_to_front),
        "VQASample": VQAEncoder(encoder, images_to_front=images_to_front),
        "CaptioningSample": CaptioningEncoder(
            encoder, images_to_front=images_to_front, prompt=caption_prompt
        ),
        "InterleavedSample": InterleavedEncoder(document),
        "SimilarityInterleavedSample": SimilarityInterleavedEncoder(document),
    }
