"""Prompts → token ids, through the same conversation templates and per-segment tokenization as
training (``optica.data``), so a model is asked exactly the way it was taught.

A chat history is a list of :class:`~optica.data.conversation.Message`; the prompt is the
template's rendering of it followed by the assistant header (``... ASSISTANT:`` for LLaVA's
``v1``). Images are ``<image>`` tags in user messages; when a message has images but no tags,
the tags go in front (``<image>\\nWhat is this?``), LLaVA's own placement.
"""

from __future__ import annotations

from functools import cache

from optica.data.config import DEFAULT_IMAGE_TOKEN, ImageToken
from optica.data.conversation import Conversation, Message, move_images_to_front
from optica.data.encoding import SegmentTokenizer
from optica.data.templates import ConversationTemplate, Segment, merge_segments
from optica.generate.errors import GenerationError
from optica.generate.processor_template import ProcessorTemplate

RAW = "raw"  # no template: the prompt text is the model's input as it is


@cache
def _jinja():
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    # transformers' apply_chat_template settings, so a tokenizer's template renders alike
    return ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)


class PromptEncoder:
    """Renders and tokenizes chat histories for one tokenizer and template.

    Args:
        tokenizer: A Hugging Face fast tokenizer.
        template: A built-in ``ConversationTemplate``, a ``JinjaTemplate`` (seed 001's config or
            the tokenizer's own), a ``ProcessorTemplate`` (a checkpoint's processor chat
            template), or None for raw prompts.
        system_prompt: Replaces the template's default system prompt.
        image_token: The image tag and its id (-200).
    """

    def __init__(
        self,
        tokenizer,
        template,
        *,
        system_prompt: str | None = None,
        image_token: ImageToken = DEFAULT_IMAGE_TOKEN,
    ) -> None:
        self.tokenizer, self.template = tokenizer, template
        self.system_prompt, self.image_token = system_prompt, image_token
        self.segment_tokenizer = SegmentTokenizer(tokenizer, image_token=image_token)

    @property
    def stop_strings(self) -> list[str]:
        """What ends an answer besides the tokenizer's EOS: the template's stop string."""
        stop = getattr(self.template, "stop_string", None)
        return [stop] if stop and stop.strip() else []

    def encode(self, messages: list[Message], num_images: int) -> list[int]:
        """Token ids of the prompt asking for the next assistant message (-200 at images)."""
        messages = place_images(messages, num_images, self.image_token.token_str)
        if self.template is None:
            text = "\n".join(m.content for m in messages if m.role != "system")
            return self.segment_tokenizer.encode([(text, False)], bos=True).input_ids
        segments, bos = self._segments(messages)
        return self.segment_tokenizer.encode(segments, bos=bos).input_ids

    def _segments(self, messages: list[Message]) -> tuple[list[Segment], bool]:
        template = self.template
        if isinstance(template, ConversationTemplate):
            conversation = Conversation("prompt", tuple(messages), ())
            segments = template.segments(
                conversation, system=self.system_prompt, image_tag=self.image_token.token_str
            )
            prompt = [*segments, (template.assistant_prefix, False)]
            return merge_segments(prompt), template.bos
        if isinstance(template, ProcessorTemplate):
            text = template.render(messages, self.system_prompt)
        else:
            text = render_jinja(template, messages, self.system_prompt)
        starts_with_bos = bool(template.bos_token) and text.startswith(template.bos_token)
        return [(text, False)], template.bos and not starts_with_bos


def render_jinja(template, messages: list[Message], system: str | None) -> str:
    """A ``JinjaTemplate``'s rendering of ``messages`` with the generation prompt."""
    from jinja2.exceptions import TemplateError

    names = {"user": template.roles[0], "assistant": template.roles[1], "system": "system"}
    rendered = [{"role": names[m.role], "content": m.content} for m in messages]
    default = system if system is not None else template.system
    if default and not any(m.role == "system" for m in messages):
        rendered.insert(0, {"role": "system", "content": default})
    try:
        return (
            _jinja()
            .from_string(template.source)
            .render(
                messages=rendered,
                bos_token=template.bos_token,
                eos_token=template.eos_token,
                add_generation_prompt=True,
            )
        )
    except TemplateError as err:
        raise GenerationError(f"{template.name} does not render this conversation: {err}") from None


def place_images(messages: list[Message], num_images: int, tag: str) -> list[Message]:
    """Checks that the user messages hold ``num_images`` tags; with none at all, puts them in
    front of the last user message."""
    tags = sum(m.content.count(tag) for m in messages if m.role == "user")
    if tags == num_images:
        return list(messages)
    if tags:
        raise GenerationError(
            f"the prompt has {tags} {tag} tag(s) but {num_images} image(s) were given; give one "
            f"image per tag, or leave the tags out and they are put in front of the prompt"
        )
    last = max(i for i, m in enumerate(messages) if m.role == "user")
    text = move_images_to_front(tag * num_images + messages[last].content, tag)
    return [*messages[:last], Message("user", text), *messages[last + 1 :]]
