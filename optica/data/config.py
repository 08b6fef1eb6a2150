"""Data configuration objects, named as in NeMo 2.0 (seeds 000 and 001).

``ImageDataConfig`` is the seed 000 ``data:`` block, ``MultiModalSampleConfig`` / ``ImageToken`` /
``LLaVATemplateConfig`` are seed 001's; :class:`VisionGeometry` carries the three plain numbers
the data needs from a vision encoder to know how many tokens one image occupies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from optica.data.errors import DataConfigError, Policy, check_policy

AspectRatio = Literal["square", "pad", "crop"]
Overlong = Literal["truncate", "drop", "error"]
IMAGE_TOKEN_ID = -200
IGNORE_INDEX = -100


@dataclass(frozen=True)
class ImageToken:
    """The image placeholder: its text in conversations and its id in ``input_ids``."""

    token_str: str = "<image>"
    token_id: int = IMAGE_TOKEN_ID


DEFAULT_IMAGE_TOKEN = ImageToken()


@dataclass
class BaseConversationTemplateConfig:
    """A Jinja conversation template (seed 001): ``messages`` with roles ``roles[0]`` (user) and
    ``roles[1]`` (assistant), plus ``system`` when the sample has none.

    The learned span of each assistant message is its content up to and including the first
    ``stop_string`` after it (without a stop string: to the end of what that message rendered,
    trailing whitespace excluded).
    """

    system: str | None = (
        "A chat between a curious user and artificial assistant agent. The assistant gives "
        "helpful, detailed, and polite answers to user's questions."
    )
    roles: list[str] = field(default_factory=lambda: ["user", "assistant"])
    stop_string: str | None = "</s>"
    chat_template: str | None = (
        "{%- for message in messages %}"
        "{%- if message['role'] == 'system' %}{{- message['content'].strip() + ' ' -}}"
        "{%- elif message['role'] == 'user' %}{{- 'USER: ' -}}"
        "{{- message['content'].strip() + ' ' -}}"
        "{%- elif message['role'] == 'assistant' %}{{- 'ASSISTANT: ' -}}"
        "{{- message['content'].strip() -}}{{- '</s>' -}}"
        "{%- endif %}{%- endfor -%}"
    )
    add_bos: bool = True


@dataclass
class LLaVATemplateConfig(BaseConversationTemplateConfig):
    """LLaVA-1.5's prompt as a Jinja template (the seed's default)."""


@dataclass
class MultiModalSampleConfig:
    """How samples are turned into tokens (seed 001).

    Attributes:
        image_token: Placeholder text and id (``<image>``, -200).
        ignore_place_holder: Label of tokens that are not learned (-100).
        conversation_template_config: A Jinja template; ``None`` uses the tokenizer's own
            ``chat_template`` (and fails clearly if it has none).
        image_following_text: ``False`` moves each turn's ``<image>`` tags to its front, as LLaVA
            does (``<image>\\nQ``); ``True`` leaves them where the text puts them.
    """

    image_token: ImageToken = field(default_factory=ImageToken)
    ignore_place_holder: int = IGNORE_INDEX
    conversation_template_config: BaseConversationTemplateConfig | None = field(
        default_factory=LLaVATemplateConfig
    )
    image_following_text: bool = False

    def __post_init__(self) -> None:
        if self.ignore_place_holder != IGNORE_INDEX:  # losses everywhere rely on the default
            raise DataConfigError(
                f"ignore_place_holder={self.ignore_place_holder}: optica uses {IGNORE_INDEX}, "
                "PyTorch's cross-entropy ignore_index"
            )


@dataclass
class ImageDataConfig:
    """The seed 000 ``data`` block for LLaVA conversation files.

    Attributes:
        image_folder: Where relative image paths point (default: each data file's folder);
            paths may not leave it.
        conv_template: A built-in template name (``v1``, ``plain``, ``llama_2``, ...) or ``None``
            to use ``MultiModalSampleConfig.conversation_template_config``.
        image_aspect_ratio: ``square`` (resize), ``pad`` (mean-colour square, LLaVA-1.5),
            ``crop`` (shortest side, then centre crop).
        image_token_len: Tokens per image in the language model; ``None`` derives it from
            :class:`VisionGeometry`.
        system_prompt: Replaces the template's default system prompt (``""`` for none).
        on_bad_input: ``error`` stops at the first bad sample; ``skip`` counts and skips it.
        overlong: For samples longer than ``seq_length``: ``truncate`` (counted), ``drop``
            (counted, skipped), or ``error``.
        is_multimodal, lazy_preprocess: Accepted for seed compatibility; data is always lazy.
    """

    image_folder: str | Path | None = None
    conv_template: str | None = "v1"
    image_aspect_ratio: AspectRatio = "square"
    image_token_len: int | None = None
    system_prompt: str | None = None
    on_bad_input: Policy = "error"
    overlong: Overlong = "truncate"
    is_multimodal: bool = True
    lazy_preprocess: bool = True

    def __post_init__(self) -> None:
        check_policy(self.on_bad_input)
        check_policy(self.overlong, "overlong", ("truncate", "drop", "error"))
        check_policy(self.image_aspect_ratio, "image_aspect_ratio", ("square", "pad", "crop"))


@dataclass(frozen=True)
class VisionGeometry:
    """What the data needs from a vision encoder: plain numbers, no model import.

    Attributes:
        image_size: Input resolution (square), e.g. 336.
        patch_size: Patch side, e.g. 14.
        class_token: Whether the encoder emits a CLS token (CLIP, ViT yes; SigLIP no).
        drop_class_token: Whether the projector drops it (LLaVA does).
    """

    image_size: int
    patch_size: int
    class_token: bool = True
    drop_class_token: bool = True

    @property
    def image_token_len(self) -> int:
        # A stride-``patch_size`` convolution drops the remainder: SigLIP 384/14 gives 27x27.
        patches = (self.image_size // self.patch_size) ** 2
        return patches + int(self.class_token and not self.drop_class_token)


def resolve_image_token_len(configured: int | None, vision: VisionGeometry | None) -> int | None:
    """The configured length, checked against the encoder's when both are known."""
    derived = vision.image_token_len if vision is not None else None
    if configured is not None and derived is not None and configured != derived:
        raise DataConfigError(
            f"image_token_len={configured} but the vision encoder gives {derived} tokens per "
            f"image ({vision}); drop image_token_len or fix it"
        )
    return configured if configured is not None else derived
