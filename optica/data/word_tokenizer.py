"""A small word-level tokenizer built from a list of texts (for synthetic data and tests).

SentencePiece-style: a space becomes ``▁`` attached to the next word, punctuation and newlines
are tokens of their own. Each word is added both with and without its ``▁`` so that it tokenizes
at the start of a piece and as a continuation alike (see :mod:`optica.data.encoding`).
"""

from __future__ import annotations

from collections.abc import Iterable

SPECIAL = ("<unk>", "<s>", "</s>", "<pad>")


def _pre_tokenizer(prepend: str):
    from tokenizers import Regex, pre_tokenizers

    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split("\n", behavior="isolated"),
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=prepend, split=True),
            pre_tokenizers.Split(Regex(r"[?!.,:;]"), behavior="isolated"),
        ]
    )


def word_tokenizer(texts: Iterable[str], *, special: Iterable[str] = SPECIAL):
    """A ``PreTrainedTokenizerFast`` that knows every word of ``texts`` (others are ``<unk>``).

    The first four special tokens are unk, bos, eos and pad, in that order.
    """
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    special = list(special)
    pieces: dict[str, None] = {}
    for prepend in ("first", "never"):
        splitter = _pre_tokenizer(prepend)
        for text in texts:
            for word in text.split():
                for piece, _ in splitter.pre_tokenize_str(word):
                    pieces[piece] = None
                    pieces["▁" + piece.lstrip("▁")] = None
                    pieces[piece.lstrip("▁") or piece] = None
    words = [*special, "▁", "\n", *sorted(set(pieces) - set(special) - {"▁", "\n"})]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token=special[0]))
    backend.pre_tokenizer = _pre_tokenizer("first")
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    unk, bos, eos, pad = special[:4]
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token=unk,
        bos_token=bos,
        eos_token=eos,
        pad_token=pad,
        additional_special_tokens=special[4:] or None,
    )
