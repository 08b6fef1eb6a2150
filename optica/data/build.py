"""Resolving the pieces a data source needs from user-facing settings (names, paths, configs).

Shared by the DataModules and ``optica data`` so both read the same settings the same way.
"""

from __future__ import annotations

from pathlib import Path

from optica.data.chat_template import JinjaTemplate, from_config, from_tokenizer
from optica.data.config import ImageDataConfig, MultiModalSampleConfig
from optica.data.errors import DataConfigError
from optica.data.images import ImageProcessor, clip_processor
from optica.data.sample import SampleEncoder
from optica.data.templates import ConversationTemplate, get_template


def load_tokenizer(tokenizer):
    """A tokenizer object as is; a path to a checkpoint folder or a ``tokenizer.json`` loaded
    offline (a missing one is a one-line error, never a hub lookup)."""
    if not isinstance(tokenizer, (str, Path)):
        if tokenizer is None:
            raise DataConfigError("a tokenizer is required (an object or a path)")
        return tokenizer
    path = Path(tokenizer)
    try:
        if path.is_file():
            from transformers import PreTrainedTokenizerFast

            return PreTrainedTokenizerFast(tokenizer_file=str(path))
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataConfigError(f"cannot load tokenizer from {tokenizer}: {first}") from None


def resolve_template(
    conv_template: str | None, sample_config: MultiModalSampleConfig, tokenizer
) -> ConversationTemplate | JinjaTemplate:
    """A built-in name wins; else the Jinja config; else the tokenizer's own chat template."""
    if conv_template is not None:
        return get_template(conv_template)
    if sample_config.conversation_template_config is not None:
        return from_config(sample_config.conversation_template_config, tokenizer)
    return from_tokenizer(tokenizer)


def resolve_image_processor(processor, aspect_ratio: str) -> ImageProcessor:
    """An :class:`ImageProcessor`, a checkpoint path, an HF image processor, or ``None`` (CLIP-336,
    LLaVA-1.5's), with the configured aspect-ratio mode."""
    if processor is None:
        return clip_processor(336, aspect_ratio)
    if isinstance(processor, ImageProcessor):
        return processor.with_aspect_ratio(aspect_ratio)
    if isinstance(processor, (str, Path)):
        return ImageProcessor.from_pretrained(processor, aspect_ratio=aspect_ratio)
    if hasattr(processor, "to_dict"):
        return ImageProcessor.from_hf(processor.to_dict(), aspect_ratio=aspect_ratio)
    raise DataConfigError(f"unsupported image_processor {type(processor).__name__}")


def pad_id(tokenizer) -> int:
    """The tokenizer's pad id, else its EOS id, else 0 (padding is masked either way)."""
    for value in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if value is not None:
            return int(value)
    return 0


def make_encoder(
    *,
    tokenizer,
    data_config: ImageDataConfig,
    sample_config: MultiModalSampleConfig,
    seq_length: int,
    image_token_len: int | None,
    image_processor: ImageProcessor | None,
) -> SampleEncoder:
    """The encoder a data config describes."""
    template = resolve_template(data_config.conv_template, sample_config, tokenizer)
    return SampleEncoder(
        tokenizer=tokenizer,
        template=template,
        seq_length=seq_length,
        image_token_len=image_token_len,
        image_processor=image_processor,
        image_token=sample_config.image_token,
        system_prompt=data_config.system_prompt,
        overlong=data_config.overlong,
    )
