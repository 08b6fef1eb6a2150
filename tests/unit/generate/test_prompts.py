"""Prompts are encoded the way training encoded them; text streams honour stop strings."""

import pytest
import torch

from optica.data.conversation import Message, parse_conversation
from optica.data.sample import SampleEncoder
from optica.data.templates import get_template
from optica.generate import GenerationError, PromptEncoder, TextStream
from optica.generate.text import split_stops


def training_ids(tokenizer, question: str, answer: str) -> list[int]:
    record = {"conversations": [{"from": "human", "value": question},
                                {"from": "gpt", "value": answer}], "image": "a.png"}  # fmt: skip
    conversation = parse_conversation(
        record, default_id="0", where="", image_tag="<image>", images_to_front=True
    )
    encoder = SampleEncoder(
        tokenizer=tokenizer, template=get_template("v1"), seq_length=512, image_token_len=64,
        system_prompt="",
    )  # fmt: skip
    tokens, _ = encoder.tokenize(conversation)
    return tokens.input_ids


def test_prompt_is_the_training_sequence_up_to_the_answer(tokenizer):
    prompts = PromptEncoder(tokenizer, get_template("v1"), system_prompt="")
    ids = prompts.encode([Message("user", "What colour is the circle?")], num_images=1)
    trained = training_ids(tokenizer, "<image>\nWhat colour is the circle?", "red")
    assert ids == trained[: len(ids)]
    assert tokenizer.decode(trained[len(ids) :]) == "red</s>"
    assert ids.count(-200) == 1 and ids[0] == tokenizer.bos_token_id
    assert prompts.stop_strings == ["</s>"]


def test_image_tags_must_match_the_images(tokenizer):
    prompts = PromptEncoder(tokenizer, get_template("v1"))
    with pytest.raises(GenerationError, match="1 <image> tag.* but 2 image"):
        prompts.encode([Message("user", "<image> What colour?")], num_images=2)
    raw = PromptEncoder(tokenizer, None).encode([Message("user", "red circle")], 0)
    assert tokenizer.decode(raw, skip_special_tokens=True) == "red circle"


def test_stream_holds_back_a_possible_stop_string_and_cuts_at_it(tokenizer):
    ids = tokenizer("red circle? blue square", add_special_tokens=False).input_ids
    stream = TextStream(tokenizer, ["? blue"])
    pieces = [stream.push(i) for i in ids]
    assert pieces[:3] == ["red", " circle", ""]  # "?" might start "? blue": held back
    assert "".join(pieces) == "red circle" and stream.finished
    plain = TextStream(tokenizer, ["? green"])
    pieces = [plain.push(i) for i in ids]
    assert pieces[3] == "? blue"  # released once it cannot be the stop string
    assert "".join(pieces) + plain.flush() == "red circle? blue square"


def test_special_stop_strings_become_stop_ids(tokenizer):
    ids, strings = split_stops(tokenizer, ["</s>", "\n\n"])
    assert ids == [tokenizer.eos_token_id] and strings == ["\n\n"]
    assert torch.tensor(ids).dtype == torch.long
