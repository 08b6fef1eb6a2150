"""Generated token ids → text, incrementally: streaming to a terminal and stop strings.

Tokenizers do not map tokens to text one by one (SentencePiece drops the first piece's space, a
multi-byte character spans several byte tokens), so each row's ids are decoded whole every step
and the new text is what extends the text already shown. Text that might be the beginning of a
stop string (or half a character) is held back until the next token settles it.
"""

from __future__ import annotations

REPLACEMENT = "\ufffd"  # what a decoder shows for an incomplete UTF-8 sequence


def split_stops(tokenizer, stop_strings: list[str]) -> tuple[list[int], list[str]]:
    """Stop strings that are one special token become stop ids (cheaper, and special tokens are
    not in the decoded text); the rest stay strings. The tokenizer's EOS is always a stop id."""
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    strings = []
    special = set(getattr(tokenizer, "all_special_tokens", ()))
    special |= {str(token) for token in getattr(tokenizer, "added_tokens_decoder", {}).values()}
    for stop in stop_strings:
        if stop in special:
            ids.append(tokenizer.convert_tokens_to_ids(stop))
        else:
            strings.append(stop)
    return sorted(set(ids)), strings


class TextStream:
    """One row's text as its tokens arrive.

    Args:
        tokenizer: Decodes ids (special tokens are left out of the text).
        stop_strings: The text ends before the first of these; ``finished`` turns True.
    """

    def __init__(self, tokenizer, stop_strings: list[str] = ()) -> None:
        self.tokenizer, self.stop_strings = tokenizer, [s for s in stop_strings if s]
        self.ids: list[int] = []
        self.shown = ""
        self.finished = False

    def push(self, token: int) -> str:
        """Adds a token; returns the text that can be shown now (possibly empty)."""
        if self.finished:
            return ""
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        cut = self._stop_at(text)
        if cut is not None:
            self.finished = True
            visible = text[:cut]
        else:
            visible = text[: len(text) - self._held_back(text)]
        return self._advance(visible)

    def flush(self) -> str:
        """The text held back so far (call when generation ended without a stop string)."""
        if self.finished:
            return ""
        self.finished = True
        return self._advance(self.tokenizer.decode(self.ids, skip_special_tokens=True))

    @property
    def text(self) -> str:
        return self.shown

    def _advance(self, visible: str) -> str:
        if not visible.startswith(self.shown):  # decoding reconsidered earlier text: keep it
            return ""
        new, self.shown = visible[len(self.shown) :], visible
        return new

    def _stop_at(self, text: str) -> int | None:
        found = [text.find(stop) for stop in self.stop_strings]
        found = [index for index in found if index >= 0]
        return min(found) if found else None

    def _held_back(self, text: str) -> int:
        held = 1 if text.endswith(REPLACEMENT) else 0
        for stop in self.stop_strings:
            for size in range(min(len(stop) - 1, len(text)), 0, -1):
                if text.endswith(stop[:size]):
                    held = max(held, size)
                    break
        return held
