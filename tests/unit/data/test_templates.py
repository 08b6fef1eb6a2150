"""Every template against hand-written token/label sequences (tiny tokenizer made here)."""

import pytest

from optica.data import (
    LLaVATemplateConfig,
    MultiModalSampleConfig,
    SampleEncoder,
    get_template,
    parse_conversation,
)
from optica.data.build import resolve_template
from optica.data.chat_template import JinjaTemplate
from optica.data.errors import DataConfigError
from tests.unit.data.helpers import expected, llama_like_tokenizer, record

TOKENIZER = llama_like_tokenizer()
TWO_TURNS = record("s1", "what is it? <image>", "a cat", "and color?", "black", image="x.png")


def encode(template, rec=TWO_TURNS, system="be brief", tokenizer=TOKENIZER):
    if isinstance(template, str):
        template = get_template(template)
    conversation = parse_conversation(
        rec, default_id="?", where="test", image_tag="<image>", images_to_front=True
    )
    encoder = SampleEncoder(
        tokenizer=tokenizer,
        template=template,
        seq_length=1000,
        image_token_len=4,
        system_prompt=system,
    )
    tokens, _ = encoder.tokenize(conversation)
    return tokens.input_ids, tokens.labels


# fmt: off
V1 = [
    "<s>", "▁be", "▁brief", "▁USER", ":", "▁", "IMG", "\n", "what", "▁is", "▁it", "?",
    "▁ASSISTANT", ":", ["▁a", "▁cat", "</s>"],
    "USER", ":", "▁and", "▁color", "?", "▁ASSISTANT", ":", ["▁black", "</s>"],
]
CASES = {
    "v1": V1,
    "vicuna_v1": V1,
    # plain: projector pre-training keeps only each human turn's images, then the caption.
    "plain": ["<s>", "IMG", ["a", "▁cat", "\n"], ["black", "\n"]],
    "llama_2": [
        "<s>", "▁[INST]", "▁<<SYS>>", "\n", "be", "▁brief", "\n", "<</SYS>>", "\n", "\n", "IMG",
        "\n", "what", "▁is", "▁it", "?", "▁[/INST]", ["▁a", "▁cat", "▁", "</s>"],
        "<s>", "[INST]", "▁and", "▁color", "?", "▁[/INST]", ["▁black", "▁", "</s>"],
    ],
    "mistral": [
        "<s>", "▁[INST]", "▁<<SYS>>", "\n", "be", "▁brief", "\n", "<</SYS>>", "\n", "\n", "IMG",
        "\n", "what", "▁is", "▁it", "?", "▁[/INST]", ["▁a", "▁cat", "▁", "</s>"],
        "[INST]", "▁and", "▁color", "?", "▁[/INST]", ["▁black", "▁", "</s>"],
    ],
    "llama_3": [
        "<s>", "<|start_header_id|>", "system", "<|end_header_id|>", "\n", "\n", "be", "▁brief",
        "<|eot_id|>", "<|start_header_id|>", "user", "<|end_header_id|>", "\n", "\n", "IMG",
        "\n", "what", "▁is", "▁it", "?", "<|eot_id|>", "<|start_header_id|>", "assistant",
        "<|end_header_id|>", "\n", "\n", ["a", "▁cat", "<|eot_id|>"],
        "<|start_header_id|>", "user", "<|end_header_id|>", "\n", "\n", "and", "▁color", "?",
        "<|eot_id|>", "<|start_header_id|>", "assistant", "<|end_header_id|>", "\n", "\n",
        ["black", "<|eot_id|>"],
    ],
    "chatml": [
        "<|im_start|>", "system", "\n", "be", "▁brief", "<|im_end|>", "\n", "<|im_start|>",
        "user", "\n", "IMG", "\n", "what", "▁is", "▁it", "?", "<|im_end|>", "\n",
        "<|im_start|>", "assistant", "\n", ["a", "▁cat", "<|im_end|>"], "\n", "<|im_start|>",
        "user", "\n", "and", "▁color", "?", "<|im_end|>", "\n", "<|im_start|>", "assistant",
        "\n", ["black", "<|im_end|>"], "\n",
    ],
    "nvgpt": [
        "<extra_id_0>", "System", "\n", "be", "▁brief", "\n", "\n", "<extra_id_1>", "User", "\n",
        "IMG", "\n", "what", "▁is", "▁it", "?", "\n", "<extra_id_1>", "Assistant", "\n",
        ["a", "▁cat", "\n", "<extra_id_1>"], "User", "\n", "and", "▁color", "?", "\n",
        "<extra_id_1>", "Assistant", "\n", ["black", "\n", "<extra_id_1>"],
    ],
}
# fmt: on


@pytest.mark.parametrize("name", sorted(CASES))
def test_template_tokens_and_labels(name):
    assert encode(name) == expected(TOKENIZER, CASES[name])


@pytest.mark.parametrize("name", sorted(CASES))
def test_whole_string_tokenization_agrees_for_a_non_legacy_tokenizer(name):
    template = get_template(name)
    conversation = parse_conversation(
        TWO_TURNS, default_id="?", where="t", image_tag="<image>", images_to_front=True
    )
    encoder = SampleEncoder(
        tokenizer=TOKENIZER, template=template, seq_length=1000, image_token_len=4
    )
    assert not encoder.tokenization_differs(conversation)


def test_v1_prompt_text_is_llavas():
    conversation = parse_conversation(
        TWO_TURNS, default_id="?", where="t", image_tag="<image>", images_to_front=True
    )
    text = "".join(t for t, _ in get_template("v1").segments(conversation, system="SYS"))
    first = "SYS USER: <image>\nwhat is it? ASSISTANT: a cat</s>"
    assert text == first + "USER: and color? ASSISTANT: black</s>"


@pytest.mark.parametrize("name", sorted(CASES))
def test_learned_segments_are_exactly_the_answers(name):
    template = get_template(name)
    conversation = parse_conversation(
        TWO_TURNS, default_id="?", where="t", image_tag="<image>", images_to_front=True
    )
    learned = [t for t, flag in template.segments(conversation, system="x") if flag]
    answers = [template.answer_format.format(content=a) for a in ("a cat", "black")]
    if name == "plain":  # no prompt between the captions: one learned run
        answers = ["".join(answers)]
    assert learned == answers
    assert all(text.endswith(template.stop_string) for text in learned)


def test_text_only_sample_has_no_image():
    ids, _ = encode("v1", record("t", "hello there", "a dog"), system="")
    assert (
        ids
        == expected(
            TOKENIZER,
            ["<s>", "▁USER", ":", "▁hello", "▁there", "▁ASSISTANT", ":", ["▁a", "▁dog", "</s>"]],
        )[0]
    )
    assert -200 not in ids


def test_default_system_prompt_is_llavas():
    segments = get_template("v1").segments(
        parse_conversation(
            TWO_TURNS, default_id="?", where="t", image_tag="<image>", images_to_front=True
        )
    )
    assert segments[0][0].startswith("A chat between a curious user and an artificial")


def test_sample_system_turn_replaces_the_default():
    rec = {
        "id": "s",
        "conversations": [
            {"from": "system", "value": "be brief"},
            {"from": "human", "value": "what is it?"},
            {"from": "gpt", "value": "a cat"},
        ],
    }
    ids, _ = encode("v1", rec, system=None)
    assert ids[:3] == expected(TOKENIZER, ["<s>", "▁be", "▁brief"])[0]


def test_jinja_llava_template_equals_builtin_v1():
    config = MultiModalSampleConfig(conversation_template_config=LLaVATemplateConfig("be brief"))
    template = resolve_template(None, config, TOKENIZER)
    assert encode(template, system=None) == expected(TOKENIZER, V1)


QWEN_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n'}}{% endfor %}"
)


def test_tokenizer_chat_template_is_the_fallback():
    tokenizer = llama_like_tokenizer()
    tokenizer.chat_template = QWEN_TEMPLATE
    config = MultiModalSampleConfig(conversation_template_config=None)
    template = resolve_template(None, config, tokenizer)
    ids, labels = encode(template, system="be brief", tokenizer=tokenizer)
    assert (ids, labels) == expected(TOKENIZER, CASES["chatml"])


def test_no_template_anywhere_is_a_clear_error():
    with pytest.raises(DataConfigError, match="no conversation template"):
        resolve_template(None, MultiModalSampleConfig(conversation_template_config=None), TOKENIZER)


def test_template_that_is_not_prefix_stable_is_refused():
    source = (
        "{% for m in messages %}{% if loop.last %}LAST {% endif %}{{ m['content'] }} {% endfor %}"
    )
    with pytest.raises(DataConfigError, match="not prefix-stable"):
        encode(JinjaTemplate(source), system=None)


def test_unknown_template_name_suggests_one():
    with pytest.raises(DataConfigError, match="did you mean 'llama_3'"):
        get_template("llama3")


def test_one_bos_when_the_template_renders_it():
    template = JinjaTemplate(
        "{{ bos_token }}{% for m in messages %}{{ m['content'] }}{% if m['role'] == 'assistant' %}"
        "</s>{% else %} {% endif %}{% endfor %}",
        bos_token="<s>",
        stop_string="</s>",
    )
    ids, _ = encode(template, record("t", "hello", "a cat"), system=None)
    # After a special token a word has no "▁" (non-legacy); the space moves into the answer.
    assert ids == expected(TOKENIZER, ["<s>", "hello", "▁a", "▁cat", "</s>"])[0]
