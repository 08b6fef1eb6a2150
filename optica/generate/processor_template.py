"""A multimodal processor's chat template (llava-hf's ``chat_template.json``), read from a
checkpoint and rendered the way ``processor.apply_chat_template`` renders it.

Processor templates take messages whose ``content`` is a list of ``{"type": "text", "text": ...}``
and ``{"type": "image"}`` items, not a string, so neither the tokenizer's template path nor the
training templates can render them. optica's messages are strings with ``<image>`` tags; each is
split at its tags into those items. The rendered text holds the processor's image token once per
image (``USER: <image>\\nWhat is this? ASSISTANT:``); tokenizing turns each into one image
placeholder that the model expands to its ``num_image_tokens`` embeddings, as in training, where
the processor would have written the token out ``image_seq_length`` times.

Files: ``chat_template.json`` (``{"chat_template": ...}``, llava-hf on the Hub), or beside a
``processor_config.json`` (what a processor's ``save_pretrained`` writes) ``chat_template.jinja``
(transformers 5) or that file's ``chat_template`` key; the image token comes from
``processor_config.json`` (default ``<image>``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from optica.data.conversation import Message
from optica.generate.errors import GenerationError

PROCESSOR_CONFIG = "processor_config.json"
TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")


@cache
def _environment():
    """A sandbox with transformers' chat-template settings, ``raise_exception`` and the
    ``{% generation %}`` block (which marks assistant text for masks; rendered as its body)."""
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[_generation_block()]
    )
    env.globals["raise_exception"] = raise_exception
    return env


def _generation_block():
    from jinja2 import nodes
    from jinja2.ext import Extension

    class GenerationBlock(Extension):
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.Scope(body, lineno=lineno)

    return GenerationBlock


@dataclass
class ProcessorTemplate:
    """A processor chat template and what rendering and tokenizing it needs.

    Attributes:
        source: The Jinja source.
        image_tag: The processor's image token as the template writes it.
        bos: Prepend BOS unless the text starts with it (what the processor's tokenizer call
            does with ``add_special_tokens``).
        bos_token, eos_token: Passed to the template; EOS also ends an answer.
    """

    source: str
    image_tag: str = "<image>"
    bos: bool = True
    bos_token: str = ""
    eos_token: str = ""
    name: str = "the processor's chat_template"
    system: str | None = None

    @property
    def stop_string(self) -> str | None:
        return self.eos_token or None

    def render(self, messages: list[Message], system: str | None = None) -> str:
        """The prompt text for ``messages`` followed by the assistant header."""
        from jinja2.exceptions import TemplateError

        items = [
            {"role": m.role, "content": content_items(m.content, self.image_tag)} for m in messages
        ]
        default = system if system is not None else self.system
        if default and not any(m.role == "system" for m in messages):
            items.insert(0, {"role": "system", "content": [{"type": "text", "text": default}]})
        try:
            return (
                _environment()
                .from_string(self.source)
                .render(
                    messages=items,
                    bos_token=self.bos_token,
                    eos_token=self.eos_token,
                    add_generation_prompt=True,
                )
            )
        except TemplateError as err:
            raise GenerationError(f"{self.name} does not render this conversation: {err}") from None


def content_items(text: str, image_tag: str) -> list[dict]:
    """``"<image>\\nWhat is this?"`` → ``[{"type": "image"}, {"type": "text", "text": "What is
    this?"}]``: text around the tags, stripped, in reading order."""
    items: list[dict] = []
    for index, part in enumerate(text.split(image_tag)):
        if index:
            items.append({"type": "image"})
        if part.strip():
            items.append({"type": "text", "text": part.strip()})
    return items


def read_processor_template(root: Path, tokenizer) -> ProcessorTemplate | None:
    """The processor chat template saved in ``root``, or None when it has none."""
    settings = _processor_settings(root)
    source = _template_source(root, settings)
    if source is None:
        return None
    tag = settings.get("image_token")
    return ProcessorTemplate(
        source,
        image_tag=tag if isinstance(tag, str) and tag else "<image>",
        bos=adds_bos(tokenizer),
        bos_token=tokenizer.bos_token or "",
        eos_token=tokenizer.eos_token or "",
    )


def adds_bos(tokenizer) -> bool:
    """Whether the tokenizer puts BOS in front when asked for special tokens (Llama's does; a
    bare tokenizer without a post-processor does not)."""
    if tokenizer.bos_token_id is None:
        return False
    with_special = tokenizer.encode("a", add_special_tokens=True)
    return with_special[:1] == [tokenizer.bos_token_id]


def _processor_settings(root: Path) -> dict:
    file = root / PROCESSOR_CONFIG
    if not file.is_file():
        return {}
    try:
        settings = json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise GenerationError(f"{file} is not JSON: {err}") from None
    return settings if isinstance(settings, dict) else {}


def _template_source(root: Path, settings: dict) -> str | None:
    """NOTE: a ``chat_template.jinja`` is the processor's only beside a ``processor_config.json``
    (transformers 5 saves a tokenizer's own template under the same name)."""
    jinja, as_json = (root / name for name in TEMPLATE_FILES)
    if as_json.is_file():
        try:
            source = json.loads(as_json.read_text()).get("chat_template")
        except (json.JSONDecodeError, AttributeError) as err:
            raise GenerationError(f"{as_json} holds no chat_template: {err}") from None
        return _default_of(source)
    if not (root / PROCESSOR_CONFIG).is_file():
        return None
    if jinja.is_file():
        return jinja.read_text()
    return _default_of(settings.get("chat_template"))


def _default_of(source) -> str | None:
    """Several named templates: the default one."""
    if isinstance(source, dict):
        source = source.get("default")
    return source if isinstance(source, str) and source.strip() else None
