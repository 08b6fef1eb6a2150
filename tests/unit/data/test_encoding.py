"""Per-segment tokenization: exact labels, agreement with whole-string tokenization, lengths."""

import pytest
import torch
from tokenizers import AddedToken, Tokenizer, models, normalizers
from transformers import PreTrainedTokenizerFast

from optica.data import SampleEncoder, SegmentTokenizer, get_template, parse_conversation
from optica.data.errors import BadSampleError, DataConfigError, DataError
from optica.data.sample import DroppedSample
from tests.unit.data.helpers import (
    SPECIAL,
    TEMPLATE_SPECIAL,
    byte_level_tokenizer,
    expected,
    llama_like_tokenizer,
    record,
)

CONVERSATION = record(
    "s", "what is it? <image>", "a cat", "and the color?", "black, mostly.", image="x.png"
)


def conversation(rec=CONVERSATION):
    return parse_conversation(
        rec, default_id="?", where="t", image_tag="<image>", images_to_front=True
    )


def encoder(tokenizer, name="v1", seq_length=1000, image_token_len=4, overlong="truncate"):
    return SampleEncoder(
        tokenizer=tokenizer,
        template=get_template(name),
        seq_length=seq_length,
        image_token_len=image_token_len,
        overlong=overlong,
        system_prompt="",
    )


def learned_text(tokenizer, tokens) -> list[str]:
    """Decoded runs of learned tokens."""
    runs, current = [], []
    for token, label in zip(tokens.input_ids, tokens.labels):
        if label == -100 and current:
            runs.append(current)
            current = []
        elif label != -100:
            current.append(token)
    runs += [current] if current else []
    return [tokenizer.decode(run) for run in runs]


@pytest.mark.parametrize("name", ["v1", "llama_3", "chatml", "llama_2", "nvgpt"])
def test_byte_level_bpe_segments_equal_whole_string(name):
    corpus = ["what is it? a cat and the color? black, mostly. USER: ASSISTANT: system user"] * 20
    tokenizer = byte_level_tokenizer(corpus)
    enc = encoder(tokenizer, name)
    tokens, _ = enc.tokenize(conversation())
    assert not enc.tokenization_differs(conversation())
    answer = get_template(name).answer_format
    assert [t.strip() for t in learned_text(tokenizer, tokens)] == [
        answer.format(content="a cat").strip(),
        answer.format(content="black, mostly.").strip(),
    ]


def legacy_tokenizer():
    """Old HF Llama tokenizer.json: a ``Prepend("▁")`` normalizer, applied after every special
    token too (``</s>USER`` → ``</s> ▁USER``)."""
    words = ["▁USER:", "USER:", "▁ASSISTANT:", "▁hi", "▁a", "▁cat", "▁", "▁▁a"]
    vocab = {w: i for i, w in enumerate([*SPECIAL, *words])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.normalizer = normalizers.Sequence(
        [normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")]
    )
    from tokenizers import pre_tokenizers

    backend.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="never", split=True)
    backend.add_special_tokens([AddedToken(t, special=True) for t in SPECIAL])
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>")


def test_legacy_tokenizer_differs_after_special_tokens_but_labels_stay_exact():
    tokenizer = legacy_tokenizer()
    enc = SampleEncoder(
        tokenizer=tokenizer,
        template=get_template("v1"),
        seq_length=100,
        image_token_len=1,
        system_prompt="",
    )
    conv = conversation(record("s", "hi", "a cat", "hi", "a cat"))
    tokens, _ = enc.tokenize(conv)
    # Documented choice (encoding.py): continuation pieces get no dummy prefix, so "USER:" after
    # </s> has no "▁" although the legacy whole-string tokenization would add one.
    assert (tokens.input_ids, tokens.labels) == expected(
        tokenizer,
        [
            "<s>",
            "▁USER:",
            "▁hi",
            "▁ASSISTANT:",
            ["▁a", "▁cat", "</s>"],
            "USER:",
            "▁hi",
            "▁ASSISTANT:",
            ["▁a", "▁cat", "</s>"],
        ],
    )
    assert enc.tokenization_differs(conv)


def test_continuation_has_no_dummy_prefix():
    tokenizer = llama_like_tokenizer()
    tokens = SegmentTokenizer(tokenizer)
    assert tokens._start.encode("what", add_special_tokens=False).tokens == ["▁what"]
    assert tokens._continue.encode("what", add_special_tokens=False).tokens == ["what"]
    assert tokens._continue.encode(" what", add_special_tokens=False).tokens == ["▁what"]


def test_repeated_first_pieces_come_from_the_cache_with_the_same_ids():
    enc = encoder(llama_like_tokenizer())
    uncached = encoder(llama_like_tokenizer())
    uncached.segment_tokenizer._starts = None
    for _ in range(2):  # the second pass reads the first piece from the cache
        assert enc.tokenize(conversation()) == uncached.tokenize(conversation())
    assert len(enc.segment_tokenizer._starts) == 1


def test_a_random_tokenizer_is_never_cached():
    backend = Tokenizer(models.BPE(dropout=0.5, unk_token="<unk>"))
    backend.add_special_tokens([AddedToken("<unk>", special=True)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>")
    assert SegmentTokenizer(tokenizer)._starts is None


def test_slow_tokenizer_is_refused():
    with pytest.raises(DataConfigError, match="not a fast tokenizer"):
        SegmentTokenizer(object())


def test_answer_containing_the_stop_string_is_reported():
    enc = encoder(llama_like_tokenizer())
    with pytest.raises(BadSampleError, match="stop string"):
        enc.tokenize(conversation(record("bad-1", "hi", "a</s> cat")))


def test_labels_first_token_never_learned():
    enc = SampleEncoder(
        tokenizer=llama_like_tokenizer(),
        template=get_template("plain"),
        seq_length=50,
        image_token_len=1,
    )
    tokens, _ = enc.tokenize(conversation(record("s", "hello", "a cat")))
    assert tokens.labels[0] == -100 and tokens.input_ids[0] == 1  # BOS, then the caption


class TestLength:
    def test_images_count_image_token_len(self):
        enc = encoder(llama_like_tokenizer(), image_token_len=10)
        tokens, notes = enc.tokenize(conversation())
        assert int(enc.cost(torch.tensor(tokens.input_ids))[-1]) == len(tokens.input_ids) + 9
        assert enc.length(tokens.input_ids) == len(tokens.input_ids) + 9 and notes == []

    def test_length_is_the_last_cost(self):
        enc = encoder(llama_like_tokenizer(), image_token_len=7)
        for ids in ([], [5], [-200], [1, -200, 4, -200, 9]):
            last = enc.cost(torch.tensor(ids, dtype=torch.long))[-1:]
            assert enc.length(ids) == (int(last) if len(last) else 0)
        with pytest.raises(DataError, match="image_token_len"):
            encoder(llama_like_tokenizer(), image_token_len=None).length([1, -200])

    def test_truncate_never_cuts_through_an_image(self):
        rec = record("t", "<image> what", "a cat", "<image> and", "black", image=["a", "b"])
        enc = encoder(llama_like_tokenizer(), seq_length=30, image_token_len=10)
        tokens, notes = enc.tokenize(conversation(rec))
        cost = enc.cost(torch.tensor(tokens.input_ids))
        assert int(cost[-1]) <= 30
        assert tokens.input_ids.count(-200) == 1  # the second image did not fit: dropped
        assert [n.kind for n in notes] == ["truncated"] and not notes[0].skipped

    def test_drop_and_error_policies(self):
        long = record("long-1", "what is it? " * 20, "a cat")
        with pytest.raises(DroppedSample, match="seq_length 16"):
            encoder(llama_like_tokenizer(), seq_length=16, overlong="drop").tokenize(
                conversation(long)
            )
        with pytest.raises(DataError, match="long-1"):
            encoder(llama_like_tokenizer(), seq_length=16, overlong="error").tokenize(
                conversation(long)
            )

    def test_truncation_that_leaves_nothing_learned_drops(self):
        long = record("long-2", "what is it? " * 20, "a cat")
        enc = encoder(llama_like_tokenizer(), seq_length=16)
        with pytest.raises(DroppedSample, match="nothing learned"):
            enc.tokenize(conversation(long))


def test_template_special_tokens_are_single_ids():
    tokenizer = llama_like_tokenizer()
    for token in TEMPLATE_SPECIAL:
        assert len(tokenizer(token, add_special_tokens=False).input_ids) == 1


def test_padding_left_on_by_a_batched_call_never_enters_a_sample():
    tokenizer = llama_like_tokenizer()
    segments = [("USER: <image>\nwhat is it? ASSISTANT:", False), (" a cat</s>", True)]
    clean = SegmentTokenizer(tokenizer).encode(segments, bos=True)
    tokenizer(["a", "what is it and what color"], padding=True)  # as a processor would
    assert tokenizer.backend_tokenizer.padding is not None  # the backend now pads
    assert SegmentTokenizer(tokenizer).encode(segments, bos=True) == clean
