"""Tiny tokenizers, images and data files made in the tests (no hub, no downloads)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from PIL import Image
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from optica.data.build import make_encoder
from optica.data.config import (
    IGNORE_INDEX,
    IMAGE_TOKEN_ID,
    ImageDataConfig,
    MultiModalSampleConfig,
)

SPECIAL = ["<unk>", "<s>", "</s>", "<pad>"]
TEMPLATE_SPECIAL = [
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|im_start|>",
    "<|im_end|>",
    "<extra_id_0>",
    "<extra_id_1>",
]
BASE_WORDS = [
    *[
        "be",
        "brief",
        "USER",
        "ASSISTANT",
        "what",
        "is",
        "it",
        "and",
        "color",
        "black",
        "a",
        "cat",
        "dog",
        "hello",
        "there",
    ],
    *[
        "[INST]",
        "[/INST]",
        "<<SYS>>",
        "<</SYS>>",
        "system",
        "user",
        "assistant",
        "System",
        "User",
        "Assistant",
    ],
    *["the", "picture", "describe", "one", "two", "three", "red", "green", "blue"],
]
WORDS = ["▁", "\n", ":", "?", ".", *BASE_WORDS, *("▁" + w for w in BASE_WORDS)]


def llama_like_tokenizer(words: Iterable[str] = WORDS) -> PreTrainedTokenizerFast:
    """Word-level, SentencePiece-like (Metaspace, ``prepend_scheme="first"``: HF's non-legacy
    Llama behaviour): a space becomes ``▁`` on the next word; ``\\n`` and ``?:.`` stand alone."""
    vocab = {w: i for i, w in enumerate(dict.fromkeys([*SPECIAL, *TEMPLATE_SPECIAL, *words]))}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split("\n", behavior="isolated"),
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True),
            pre_tokenizers.Split(Regex(r"[?:.]"), behavior="isolated"),
        ]
    )
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    backend.add_special_tokens([AddedToken(t, special=True) for t in SPECIAL + TEMPLATE_SPECIAL])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
    )


def byte_level_tokenizer(corpus: list[str]) -> PreTrainedTokenizerFast:
    """A GPT-2 / Llama-3 style byte-level BPE trained on ``corpus`` (deterministic, ~0.1 s)."""
    from tokenizers import trainers

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIAL + TEMPLATE_SPECIAL,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    backend.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
    )


def expected(tokenizer, tokens: list) -> tuple[list[int], list[int]]:
    """Hand-written tokens → (ids, labels): ``"IMG"`` is the image id, a nested list is learned.

    Every token must be in the vocabulary (an ``<unk>`` would make a wrong test pass).
    """
    ids: list[int] = []
    labels: list[int] = []
    for item in tokens:
        learned = isinstance(item, list)
        for token in item if learned else [item]:
            if token == "IMG":
                ids.append(IMAGE_TOKEN_ID)
                labels.append(IGNORE_INDEX)
                continue
            token_id = tokenizer.convert_tokens_to_ids(token)
            assert token_id != tokenizer.unk_token_id, f"{token!r} is not in the test vocabulary"
            ids.append(token_id)
            labels.append(token_id if learned else IGNORE_INDEX)
    return ids, labels


def v1_encoder(seq_length: int, image_processor=None):
    """A ``SampleEncoder`` of the v1 template with no system prompt, on the tiny tokenizer, 4
    tokens per image."""
    return make_encoder(
        tokenizer=llama_like_tokenizer(),
        data_config=ImageDataConfig(system_prompt=""),
        sample_config=MultiModalSampleConfig(),
        seq_length=seq_length,
        image_token_len=4,
        image_processor=image_processor,
    )


def solid_image(path: Path, colour=(255, 0, 0), size=(8, 8)) -> Path:
    Image.new("RGB", size, colour).save(path)
    return path


def write_json(path: Path, records: list, *, jsonl: bool = False) -> Path:
    if jsonl:
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    else:
        path.write_text(json.dumps(records, indent=1))
    return path


def record(sample_id: str, *turns: str, image=None) -> dict:
    """A LLaVA record with alternating human / gpt turns."""
    roles = ("human", "gpt")
    conversations = [{"from": roles[k % 2], "value": text} for k, text in enumerate(turns)]
    out = {"id": sample_id, "conversations": conversations}
    if image is not None:
        out["image"] = image
    return out
