"""A raw LLaVA record → a checked :class:`Conversation` (roles, image tags, image list).

LLaVA's format: ``{"id", "image": "a.jpg" | ["a.jpg", ...], "conversations": [{"from": "human" |
"gpt" | "system", "value": ...}]}``; OpenAI-style ``role`` / ``content`` keys are accepted too.
Each ``<image>`` tag stands for the next image of the sample, in order.
"""

from __future__ import annotations

from dataclasses import dataclass

from optica.data.errors import bad_sample

ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
}


@dataclass(frozen=True)
class Message:
    role: str  # "system" | "user" | "assistant"
    content: str


@dataclass(frozen=True)
class Conversation:
    """One sample, checked: alternating user/assistant turns, as many tags as images.

    Attributes:
        id: The sample's id (``file:index`` when the record has none).
        messages: The turns; a leading ``system`` message replaces the template's system prompt.
        images: Image references (paths, or keys for in-memory images), one per tag.
        where: The sample's file and index, for messages (rendered with ``str``).
    """

    id: str
    messages: tuple[Message, ...]
    images: tuple[str, ...]
    where: object = ""

    @property
    def system(self) -> str | None:
        first = self.messages[0] if self.messages else None
        return first.content if first is not None and first.role == "system" else None

    @property
    def turns(self) -> tuple[Message, ...]:
        """The messages without the system one."""
        return self.messages[1:] if self.system is not None else self.messages


def _images(record: dict, sample: str, where: object) -> tuple[str, ...]:
    image = record.get("image", record.get("images"))
    if image is None:
        return ()
    images = [image] if isinstance(image, str) else image
    if not isinstance(images, list) or not all(isinstance(i, str) and i for i in images):
        raise bad_sample("bad_record", sample, where, "'image' must be a path or a list of paths")
    return tuple(images)


def _message(turn: object, position: int, sample: str, where: object) -> Message:
    if not isinstance(turn, dict):
        raise bad_sample("bad_record", sample, where, f"turn {position} is not an object")
    role = turn.get("from", turn.get("role"))
    content = turn.get("value", turn.get("content"))
    if role not in ROLES:
        known = ", ".join(sorted(ROLES))
        message = f"unknown role {role!r} in turn {position} (expected one of: {known})"
        raise bad_sample("unknown_role", sample, where, message)
    if not isinstance(content, str):
        raise bad_sample("bad_record", sample, where, f"turn {position} has no text 'value'")
    return Message(ROLES[role], content)


def _check_order(messages: list[Message], sample: str, where: object) -> None:
    start = 1 if messages and messages[0].role == "system" else 0
    for position, message in enumerate(messages[start:], start):
        expected = "user" if (position - start) % 2 == 0 else "assistant"
        if message.role != expected:
            found = "system" if message.role == "system" else message.role
            text = f"turn {position} is a {found} turn where a {expected} turn must come"
            raise bad_sample("bad_turn_order", sample, where, text)
    if not any(m.role == "assistant" for m in messages):
        raise bad_sample("no_answer", sample, where, "no gpt turn: nothing to learn")


def move_images_to_front(text: str, tag: str) -> str:
    """LLaVA's placement: the turn's tags first, each followed by a newline (``<image>\\nQ``)."""
    count = text.count(tag)
    if count == 0:
        return text
    return (tag + "\n") * count + text.replace(tag, "").strip()


def parse_conversation(
    record: dict, *, default_id: str, where: object, image_tag: str, images_to_front: bool
) -> Conversation:
    """Checks a raw record and normalises roles and image tags.

    Raises:
        BadSampleError: unknown role, wrong turn order, no answer, an image tag in an answer,
            or a tag count that differs from the number of images.
    """
    sample = str(record.get("id", default_id))
    turns = record.get("conversations", record.get("messages"))
    if not isinstance(turns, list) or not turns:
        raise bad_sample("bad_record", sample, where, "no 'conversations' list")
    messages = [_message(turn, i, sample, where) for i, turn in enumerate(turns)]
    _check_order(messages, sample, where)
    images = _images(record, sample, where)
    if any(tag_in(m, image_tag) for m in messages if m.role != "user"):
        raise bad_sample("image_tag_mismatch", sample, where, f"{image_tag} outside a human turn")
    tags = sum(m.content.count(image_tag) for m in messages)
    if tags != len(images):
        text = f"{tags} {image_tag} tag(s) but {len(images)} image(s)"
        raise bad_sample("image_tag_mismatch", sample, where, text)
    if images_to_front:
        messages = [_front(m, image_tag) for m in messages]
    stripped = [Message(m.role, m.content.strip()) for m in messages]
    return Conversation(sample, tuple(stripped), images, where)


def tag_in(message: Message, tag: str) -> bool:
    return tag in message.content


def _front(message: Message, tag: str) -> Message:
    if message.role != "user":
        return message
    return Message(message.role, move_images_to_front(message.content, tag))
