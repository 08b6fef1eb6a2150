"""A chat with one model: the history, images attached along the way, and streamed answers.

Every turn re-encodes the whole conversation (images included) through the template, so the
model sees exactly what a single-shot prompt of that conversation would show it; the KV cache
spans one answer. ``/reset`` clears the history when it outgrows the model's context.
"""

from __future__ import annotations

from collections.abc import Iterator

from optica.data.conversation import Message
from optica.generate.api import Generator, ImageLike, open_image
from optica.generate.errors import GenerationError
from optica.generate.sampling import SamplingConfig


class ChatSession:
    """Args:
    generator: The model to talk to.
    max_new_tokens: Most tokens per answer.
    sampling: How tokens are chosen (greedy by default).
    """

    def __init__(
        self,
        generator: Generator,
        *,
        max_new_tokens: int = 256,
        sampling: SamplingConfig | None = None,
    ) -> None:
        self.generator, self.max_new_tokens = generator, max_new_tokens
        self.sampling = sampling or SamplingConfig()
        self.messages: list[Message] = []
        self.images: list = []  # every image of the conversation, in order
        self.pending = 0  # images attached since the last question

    def attach(self, image: ImageLike) -> None:
        """Attaches an image to the next question (opened now, so a bad file fails at once)."""
        if not self.generator.reads_images:
            raise GenerationError(
                "this model is a language model and does not read images; /image needs a "
                "vision-language checkpoint"
            )
        self.images.append(open_image(image))
        self.pending += 1

    def reset(self) -> None:
        """Forgets the conversation and its images."""
        self.messages, self.images, self.pending = [], [], 0

    def ask(self, text: str) -> Iterator[str]:
        """Streams the answer to ``text``; the turn joins the history once answered."""
        tag = self.generator.prompts.image_token.token_str
        question = Message("user", tag * self.pending + text if self.pending else text)
        conversation = [*self.messages, question]
        stream = self.generator.stream(
            _tags_in_front(conversation, tag),
            list(self.images),
            max_new_tokens=self.max_new_tokens,
            sampling=self.sampling,
        )
        answer = []
        for piece in stream:
            answer.append(piece)
            yield piece
        self.messages = [*conversation, Message("assistant", "".join(answer).strip())]
        self.pending = 0


def _tags_in_front(messages: list[Message], tag: str) -> list[Message]:
    from optica.data.conversation import move_images_to_front

    return [
        Message(m.role, move_images_to_front(m.content, tag)) if m.role == "user" else m
        for m in messages
    ]
