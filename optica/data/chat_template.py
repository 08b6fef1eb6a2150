"""Jinja chat templates (seed 001's ``LLaVATemplateConfig``, or the tokenizer's own) as segments.

A Jinja template renders a whole conversation to one string, so the learned spans have to be
found in it: the conversation is rendered once per prefix of its messages, and message ``k``
contributed exactly the text that the ``k``-message render adds to the ``k-1``-message one. That
needs a *prefix-stable* template (rendering more messages only appends); one that is not (it
moves the system prompt, or treats the last message specially) is refused with a clear error,
never guessed at.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from optica.data.config import BaseConversationTemplateConfig
from optica.data.conversation import Conversation
from optica.data.errors import DataConfigError, bad_sample
from optica.data.templates import Segment, merge_segments


@cache
def _environment():
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    # Same settings as transformers' apply_chat_template, so a tokenizer's template renders alike.
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    return env


@dataclass
class JinjaTemplate:
    """A Jinja template with what it needs to find learned spans.

    Attributes:
        source: The Jinja source.
        system: Default system prompt (``None``: none).
        roles: Names given to the user and assistant roles.
        stop_string: The learned span of an answer ends after its first occurrence.
        bos: Prepend the tokenizer's BOS unless the rendered text already starts with it.
        bos_token, eos_token: Passed to the template as variables.
    """

    source: str
    system: str | None = None
    roles: tuple[str, str] = ("user", "assistant")
    stop_string: str | None = None
    bos: bool = True
    bos_token: str = ""
    eos_token: str = ""
    name: str = "chat_template"

    def __post_init__(self) -> None:
        from jinja2.exceptions import TemplateError

        try:
            self._compiled = _environment().from_string(self.source)
        except TemplateError as err:
            raise DataConfigError(f"chat_template does not compile: {err}") from None

    def _render(self, messages: list[dict], sample: str, where: object) -> str:
        from jinja2.exceptions import TemplateError

        try:
            return self._compiled.render(
                messages=messages,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
                add_generation_prompt=False,
            )
        except TemplateError as err:
            raise bad_sample("template_error", sample, where, f"chat_template: {err}") from None

    def _messages(self, conversation: Conversation, system: str | None) -> list[dict]:
        names = {"user": self.roles[0], "assistant": self.roles[1], "system": "system"}
        messages = [{"role": names[m.role], "content": m.content} for m in conversation.messages]
        default = system if system is not None else self.system
        if conversation.system is None and default:
            messages.insert(0, {"role": "system", "content": default})
        return messages

    def segments(
        self, conversation: Conversation, *, system: str | None = None, image_tag: str = "<image>"
    ) -> list[Segment]:
        """(text, learned) pieces; the learned ones are the answers and their stop strings."""
        messages = self._messages(conversation, system)
        out: list[Segment] = []
        rendered = ""
        for k in range(1, len(messages) + 1):
            text = self._render(messages[:k], conversation.id, conversation.where)
            if not text.startswith(rendered):
                raise DataConfigError(
                    f"{self.name} is not prefix-stable (adding message {k} rewrote earlier text), "
                    "so learned spans cannot be located; use a built-in conv_template instead"
                )
            added, rendered = text[len(rendered) :], text
            if messages[k - 1]["role"] == self.roles[1]:
                out += self._answer(added, messages[k - 1]["content"], conversation)
            else:
                out.append((added, False))
        return merge_segments(out)

    def _answer(self, added: str, content: str, conversation: Conversation) -> list[Segment]:
        """Splits what one assistant message rendered into header, learned span and rest."""
        content = content.strip()
        start = added.find(content)
        if start < 0:
            text = f"{self.name} changes the answer text; cannot locate the learned span"
            raise bad_sample("template_error", conversation.id, conversation.where, text)
        while start > 0 and added[start - 1] == " ":  # see merge_segments
            start -= 1
        end = start + len(added[start:].rstrip()) if content else start
        stop = added.find(self.stop_string, start + len(content)) if self.stop_string else -1
        if stop >= 0:
            end = stop + len(self.stop_string)
        return [(added[:start], False), (added[start:end], True), (added[end:], False)]


def from_config(config: BaseConversationTemplateConfig, tokenizer) -> JinjaTemplate:
    """The seed's template config; its ``chat_template`` may be ``None`` (use the tokenizer's)."""
    source = config.chat_template or _tokenizer_template(tokenizer)
    return JinjaTemplate(
        source,
        system=config.system,
        roles=tuple(config.roles),
        stop_string=config.stop_string,
        bos=config.add_bos,
        bos_token=tokenizer.bos_token or "",
        eos_token=tokenizer.eos_token or "",
    )


def from_tokenizer(tokenizer) -> JinjaTemplate:
    """The tokenizer's own ``chat_template``; its EOS token is taken as the stop string. Like
    ``apply_chat_template``, no BOS is added: the template renders one if it wants one."""
    return JinjaTemplate(
        _tokenizer_template(tokenizer),
        stop_string=tokenizer.eos_token,
        bos=False,
        bos_token=tokenizer.bos_token or "",
        eos_token=tokenizer.eos_token or "",
        name="the tokenizer's chat_template",
    )


def _tokenizer_template(tokenizer) -> str:
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):  # several named templates: the default one
        template = template.get("default")
    if not template:
        raise DataConfigError(
            "no conversation template: set conv_template (v1, plain, llama_2, llama_3, mistral, "
            "chatml, nvgpt), give a chat_template, or use a tokenizer that has one"
        )
    return template
