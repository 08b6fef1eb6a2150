"""Conversation templates: a conversation → text segments, each learned or not.

The built-in templates reproduce the prompts of the LLaVA repository (``llava/conversation.py``:
``conv_vicuna_v1``, ``conv_llava_plain``, ``conv_llava_llama_2``, ``conv_mistral_instruct``),
LLaVA-NeXT's ``llama_3`` and Qwen's ``chatml``, and NeMo's ``nvgpt``. Learned text is exactly
each answer plus its stop string. NOTE: a space between a role header and the answer belongs to
the answer (``" A</s>"``), because every common tokenizer attaches a leading space to the next
word: cutting there keeps the segment boundary on a token boundary.
"""

from __future__ import annotations

from dataclasses import dataclass

from optica.data.conversation import Conversation
from optica.data.errors import DataConfigError
from optica.run.errors import did_you_mean

Segment = tuple[str, bool]  # (text, learned)

_LLAVA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
_LLAVA_LLAMA_SYSTEM = (
    "You are a helpful language and vision assistant. You are able to understand the visual "
    "content that the user provides, and assist the user with a variety of tasks using natural "
    "language."
)


@dataclass(frozen=True)
class ConversationTemplate:
    """A prompt format as string pieces (``{content}`` / ``{system}`` are filled in).

    Attributes:
        system: Default system prompt (a sample's own system turn replaces it).
        system_format: Rendered at the very start when the system prompt is not empty.
        system_in_first_user: Instead, wrap the system prompt into the first user turn (Llama 2).
        always_system: Render ``system_format`` even for an empty system prompt (nvgpt).
        user_format: One user turn.
        round_separator: Before every user turn but the first (Llama 2's ``<s>``).
        assistant_prefix: The assistant header (not learned).
        answer_format: The learned part: the answer and its stop string.
        answer_suffix: Text after the stop string (not learned; chatml's newline).
        user_images_only: Keep only the image tags of user turns (``plain``: image → caption).
        bos: Whether the sequence starts with the tokenizer's BOS token.
        stop_string: What generation stops at.
    """

    name: str
    system: str = ""
    system_format: str = "{system}"
    system_in_first_user: str | None = None
    always_system: bool = False
    user_format: str = "{content}"
    round_separator: str = ""
    assistant_prefix: str = ""
    answer_format: str = "{content}"
    answer_suffix: str = ""
    user_images_only: bool = False
    bos: bool = True
    stop_string: str = ""

    def segments(
        self, conversation: Conversation, *, system: str | None = None, image_tag: str = "<image>"
    ) -> list[Segment]:
        """The conversation as (text, learned) pieces; empty pieces are left out."""
        system = _pick_system(conversation.system, system, self.system)
        out: list[Segment] = []
        if (system or self.always_system) and self.system_in_first_user is None:
            out.append((self.system_format.format(system=system), False))
        for index, message in enumerate(conversation.turns):
            if message.role == "user":
                out.append((self._user(message.content, index, system, image_tag), False))
            else:
                out.append((self.assistant_prefix, False))
                out.append((self.answer_format.format(content=message.content), True))
                out.append((self.answer_suffix, False))
        return merge_segments(out)

    def _user(self, content: str, index: int, system: str, image_tag: str) -> str:
        if self.user_images_only:
            content = image_tag * content.count(image_tag)
        if index == 0 and system and self.system_in_first_user is not None:
            content = self.system_in_first_user.format(system=system, content=content)
        separator = self.round_separator if index > 0 else ""
        return separator + self.user_format.format(content=content)


def merge_segments(segments: list[Segment]) -> list[Segment]:
    """Joins neighbours with the same flag and moves spaces that end a prompt into the answer.

    A boundary between two unlearned pieces (``"Q "`` + ``"ASSISTANT:"``) is not a token
    boundary, so only learned/unlearned boundaries remain, and each sits before a space (which
    tokenizers attach to the next word), after a special token, or at a newline.
    """
    merged: list[Segment] = []
    for text, learned in segments:
        if merged and learned and not merged[-1][1]:
            prompt = merged[-1][0]
            kept = prompt.rstrip(" ")
            merged[-1], text = (kept, False), prompt[len(kept) :] + text
        if merged and not merged[-1][0]:
            merged.pop()
        if merged and merged[-1][1] == learned:
            merged[-1] = (merged[-1][0] + text, learned)
        elif text:
            merged.append((text, learned))
    return merged


def _pick_system(from_sample: str | None, from_config: str | None, default: str) -> str:
    """A sample's own system turn wins over the configured prompt, which wins over the default."""
    if from_sample is not None:
        return from_sample
    return from_config if from_config is not None else default


_LLAMA_2_SYS = "<<SYS>>\n{system}\n<</SYS>>\n\n{content}"
_L3 = "<|start_header_id|>{role}<|end_header_id|>\n\n"

TEMPLATES: dict[str, ConversationTemplate] = {
    "v1": ConversationTemplate(
        "v1",
        system=_LLAVA_SYSTEM,
        system_format="{system} ",
        user_format="USER: {content} ",
        assistant_prefix="ASSISTANT:",
        answer_format=" {content}</s>",
        stop_string="</s>",
    ),
    "plain": ConversationTemplate(
        "plain",
        system_format="",  # projector pre-training: the image, then its caption; no system
        answer_format="{content}\n",
        user_images_only=True,
        stop_string="\n",
    ),
    "llama_2": ConversationTemplate(
        "llama_2",
        system=_LLAVA_LLAMA_SYSTEM,
        system_in_first_user=_LLAMA_2_SYS,
        user_format="[INST] {content} [/INST]",
        round_separator="<s>",
        answer_format=" {content} </s>",
        stop_string="</s>",
    ),
    "mistral": ConversationTemplate(
        "mistral",
        system_in_first_user=_LLAMA_2_SYS,
        user_format="[INST] {content} [/INST]",
        answer_format=" {content} </s>",
        stop_string="</s>",
    ),
    "llama_3": ConversationTemplate(
        "llama_3",
        system=_LLAVA_LLAMA_SYSTEM,
        system_format=_L3.format(role="system") + "{system}<|eot_id|>",
        user_format=_L3.format(role="user") + "{content}<|eot_id|>",
        assistant_prefix=_L3.format(role="assistant"),
        answer_format="{content}<|eot_id|>",
        stop_string="<|eot_id|>",
    ),
    "chatml": ConversationTemplate(
        "chatml",
        system="You are a helpful assistant.",
        system_format="<|im_start|>system\n{system}<|im_end|>\n",
        user_format="<|im_start|>user\n{content}<|im_end|>\n",
        assistant_prefix="<|im_start|>assistant\n",
        answer_format="{content}<|im_end|>",
        answer_suffix="\n",
        bos=False,
        stop_string="<|im_end|>",
    ),
    "nvgpt": ConversationTemplate(
        "nvgpt",
        system_format="<extra_id_0>System\n{system}\n\n<extra_id_1>",
        always_system=True,
        user_format="User\n{content}\n<extra_id_1>",
        assistant_prefix="Assistant\n",
        answer_format="{content}\n<extra_id_1>",
        bos=False,
        stop_string="<extra_id_1>",
    ),
}
TEMPLATES["vicuna_v1"] = TEMPLATES["v1"]


def get_template(name: str) -> ConversationTemplate:
    """A built-in template by name, or a one-line error with a did-you-mean."""
    if name not in TEMPLATES:
        names = ", ".join(sorted(TEMPLATES))
        hint = did_you_mean(name, TEMPLATES)
        raise DataConfigError(f"unknown conv_template {name!r}{hint} (built-in: {names})")
    return TEMPLATES[name]
