"""``Generator``: a model with its tokenizer, prompt template and image processor, answering
batches of prompts (``generate``) or streaming one conversation's answer (``stream``); and
``generate(path_or_model, prompts, ...)``, the one-call form behind ``optica.generate``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError
from torch import nn

from optica.data.config import DEFAULT_IMAGE_TOKEN, ImageToken
from optica.data.conversation import Message
from optica.data.templates import ConversationTemplate, get_template
from optica.generate.engine import CausalModel, Decoding, left_pad
from optica.generate.errors import GenerationError
from optica.generate.loading import MissingTemplate, load_source
from optica.generate.prompts import RAW, PromptEncoder
from optica.generate.sampling import SamplingConfig
from optica.generate.text import TextStream, split_stops

ImageLike = str | os.PathLike[str] | Image.Image
Conversation = Sequence[Message]


def open_image(image: ImageLike) -> Image.Image:
    """A PIL image from a path (or the image itself); a file that does not open is one line."""
    if isinstance(image, Image.Image):
        return image
    try:
        with Image.open(image) as opened:
            return opened.convert("RGB")
    except FileNotFoundError:
        raise GenerationError(f"image {os.fspath(image)} does not exist") from None
    except (UnidentifiedImageError, OSError) as err:
        raise GenerationError(f"image {os.fspath(image)} does not open: {err}") from None


def resolve_template(template: Any, tokenizer, *, reads_images: bool):
    """A template object, ``"raw"`` (none), a built-in name, or ``None``: the tokenizer's own
    chat template if it has one, else ``v1`` (LLaVA-1.5) for a VLM and raw text otherwise (a
    model given as an object; a checkpoint without any template is ``MissingTemplate``)."""
    if template == RAW:
        return None
    if isinstance(template, MissingTemplate):
        raise template.error()
    if isinstance(template, str):
        return get_template(template)
    if template is not None:
        return template
    if getattr(tokenizer, "chat_template", None):
        from optica.data.chat_template import from_tokenizer

        return from_tokenizer(tokenizer)
    return get_template("v1") if reads_images else None


class Generator:
    """Generates answers with one model.

    Args:
        model: An optica language model or VLM (eval mode is set).
        tokenizer: Its Hugging Face fast tokenizer.
        template: See :func:`resolve_template`.
        system_prompt: Replaces the template's default system prompt.
        image_processor: Turns PIL images into the pixels the vision encoder expects (VLMs).
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer,
        *,
        template: Any = None,
        system_prompt: str | None = None,
        image_processor=None,
    ) -> None:
        if tokenizer is None:
            raise GenerationError(f"a tokenizer is needed to generate with {type(model).__name__}")
        self.model = CausalModel(model.eval())
        self.tokenizer, self.image_processor = tokenizer, image_processor
        resolved = resolve_template(template, tokenizer, reads_images=self.model.reads_images)
        self.prompts = PromptEncoder(
            tokenizer, resolved, system_prompt=system_prompt, image_token=_image_token(resolved)
        )
        self.pad_id = _pad_id(tokenizer)

    @classmethod
    def from_source(
        cls,
        source: Any,
        *,
        tokenizer=None,
        template: Any = None,
        system_prompt: str | None = None,
        image_processor=None,
        device: str | torch.device = "cpu",
        merge_lora: bool = False,
    ) -> Generator:
        """From a checkpoint, a training run or a model (see ``optica.generate.loading``);
        arguments given here win over what the source says."""
        loaded = load_source(source, device=device, merge_lora=merge_lora)
        return cls(
            loaded.model,
            tokenizer if tokenizer is not None else loaded.tokenizer,
            template=template if template is not None else loaded.template,
            system_prompt=system_prompt if system_prompt is not None else loaded.system_prompt,
            image_processor=image_processor or loaded.image_processor,
        )

    @property
    def reads_images(self) -> bool:
        return self.model.reads_images

    def generate(
        self,
        prompts: str | Sequence[str | Conversation],
        images: Any = None,
        *,
        max_new_tokens: int = 64,
        sampling: SamplingConfig | None = None,
        stop: Sequence[str] = (),
        use_cache: bool = True,
    ) -> list[str]:
        """Answers each prompt (a question, or a whole conversation of Messages).

        Args:
            prompts: One prompt or a batch.
            images: For one prompt, an image or a list of them; for a batch, one entry (None,
                an image, or a list) per prompt. Paths or PIL images.
            max_new_tokens: Most tokens per answer.
            sampling: Greedy by default.
            stop: More stop strings (the template's and the EOS token always stop).
            use_cache: See :class:`~optica.generate.engine.Decoding`.
        """
        single = isinstance(prompts, str)
        batch = [prompts] if single else list(prompts)
        per_prompt = [images] if single else _per_prompt(images, len(batch))
        decoding, streams = self._start(
            batch, per_prompt, max_new_tokens, sampling, stop, use_cache=use_cache
        )
        for tokens in decoding:
            self._push(tokens, decoding, streams)
        for stream in streams:
            stream.flush()
        return [stream.text for stream in streams]

    def stream(
        self,
        conversation: str | Conversation,
        images: Any = None,
        *,
        max_new_tokens: int = 256,
        sampling: SamplingConfig | None = None,
        stop: Sequence[str] = (),
    ) -> Iterator[str]:
        """Yields one answer's text piece by piece, as its tokens are generated."""
        decoding, (stream,) = self._start([conversation], [images], max_new_tokens, sampling, stop)
        for tokens in decoding:
            piece = self._push(tokens, decoding, [stream])[0]
            if piece:
                yield piece
        rest = stream.flush()
        if rest:
            yield rest

    def _start(self, batch, images, max_new_tokens, sampling, stop, *, use_cache=True):
        stop_ids, stop_strings = split_stops(self.tokenizer, [*self.prompts.stop_strings, *stop])
        rows, pixels = self._encode(batch, images)
        input_ids, mask = left_pad(rows, self.pad_id, self.model.device)
        decoding = Decoding(
            self.model,
            input_ids,
            mask,
            pixels,
            max_new_tokens=max_new_tokens,
            sampling=sampling or SamplingConfig(),
            stop_ids=stop_ids,
            pad_id=self.pad_id,
            use_cache=use_cache,
        )
        streams = [TextStream(self.tokenizer, stop_strings) for _ in rows]
        return decoding, streams

    def _push(self, tokens: torch.Tensor, decoding: Decoding, streams: list[TextStream]):
        pieces = []
        stop_ids = set(decoding.stop_ids.tolist())
        for row, token in enumerate(tokens.tolist()):
            if token in stop_ids or streams[row].finished:
                pieces.append("")
                continue
            pieces.append(streams[row].push(token))
            if streams[row].finished:
                decoding.finished[row] = True
        return pieces

    def _encode(self, batch, images) -> tuple[list[list[int]], torch.Tensor | None]:
        rows, pixels = [], []
        for prompt, row_images in zip(batch, images):
            given = _as_list(row_images)
            if given and not self.reads_images:
                raise GenerationError(
                    f"{type(self.model.module).__name__} is a language model and does not read "
                    "images; drop the image or use a vision-language checkpoint"
                )
            opened = [open_image(image) for image in given]
            messages = [Message("user", prompt)] if isinstance(prompt, str) else list(prompt)
            rows.append(self.prompts.encode(messages, len(opened)))
            pixels += [self.image_processor(image) for image in opened]
        if not pixels:
            return rows, None
        dtype = next(self.model.module.parameters()).dtype
        return rows, torch.stack(pixels).to(self.model.device, dtype)


def _image_token(template: Any) -> ImageToken:
    """The image tag the template writes (a processor's own ``image_token``), else ``<image>``."""
    tag = getattr(template, "image_tag", None)
    return ImageToken(tag, DEFAULT_IMAGE_TOKEN.token_id) if tag else DEFAULT_IMAGE_TOKEN


def _as_list(images: Any) -> list:
    if images is None:
        return []
    return list(images) if isinstance(images, (list, tuple)) else [images]


def _per_prompt(images: Any, count: int) -> list:
    if images is None:
        return [None] * count
    if not isinstance(images, (list, tuple)) or len(images) != count:
        raise GenerationError(
            f"images: give one entry (None, an image or a list of images) per prompt; "
            f"{count} prompts"
        )
    return list(images)


def _pad_id(tokenizer) -> int:
    for value in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if value is not None:
            return int(value)
    return 0


def generate(
    path_or_model: Any,
    prompts: str | Sequence[str],
    images: Any = None,
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    *,
    top_k: int = 0,
    top_p: float = 1.0,
    repetition_penalty: float = 1.0,
    seed: int | None = None,
    stop: Sequence[str] = (),
    template: str | ConversationTemplate | None = None,
    system_prompt: str | None = None,
    tokenizer=None,
    image_processor=None,
    device: str | torch.device = "cpu",
    merge_lora: bool = False,
) -> list[str]:
    """Answers ``prompts`` with the model at ``path_or_model`` (a checkpoint, a training run, or
    a model with ``tokenizer=``); one string per prompt. ``template="raw"`` sends the prompts as
    they are; by default the checkpoint's conversation template wraps them."""
    generator = Generator.from_source(
        path_or_model,
        tokenizer=tokenizer,
        template=template,
        system_prompt=system_prompt,
        image_processor=image_processor,
        device=device,
        merge_lora=merge_lora,
    )
    sampling = SamplingConfig(temperature, top_k, top_p, repetition_penalty, seed)
    answers = generator.generate(
        prompts, images, max_new_tokens=max_new_tokens, sampling=sampling, stop=stop
    )
    return answers
