"""Which files make a processor chat template, how optica's messages become its content items,
and which image geometry a Hugging Face processor's settings mean."""

import json

import pytest

from optica.data.conversation import Message
from optica.generate import GenerationError
from optica.generate.loading import hf_aspect_ratio
from optica.generate.processor_template import content_items, read_processor_template

ITEMS = (
    "{% for m in messages %}{{ m['role'] }}:{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}[IMG]{% else %}{% generation %}{{ c['text'] }}"
    "{% endgeneration %}{% endif %}{% endfor %};{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


def test_text_around_image_tags_becomes_items_in_reading_order():
    assert content_items("<image>\nWhat is it?", "<image>") == [
        {"type": "image"},
        {"type": "text", "text": "What is it?"},
    ]
    assert content_items("Compare <image> and <image> now", "<image>") == [
        {"type": "text", "text": "Compare"},
        {"type": "image"},
        {"type": "text", "text": "and"},
        {"type": "image"},
        {"type": "text", "text": "now"},
    ]


def test_legacy_chat_template_json_renders_with_the_processors_image_token(tmp_path, tokenizer):
    (tmp_path / "chat_template.json").write_text(json.dumps({"chat_template": ITEMS}))
    (tmp_path / "processor_config.json").write_text(json.dumps({"image_token": "<img>"}))
    template = read_processor_template(tmp_path, tokenizer)
    assert template.image_tag == "<img>"
    messages = [Message("user", "<img>hi"), Message("assistant", "yo"), Message("user", "ok")]
    assert template.render(messages) == "user:[IMG]hi;assistant:yo;user:ok;assistant:"
    assert template.render(messages[:1], "be brief").startswith("system:be brief;")


def test_a_tokenizers_own_jinja_file_is_not_the_processors(tmp_path, tokenizer):
    """transformers 5 saves a tokenizer's template as chat_template.jinja too; without a
    processor_config.json beside it, it stays the tokenizer's (string contents)."""
    (tmp_path / "chat_template.jinja").write_text(ITEMS)
    assert read_processor_template(tmp_path, tokenizer) is None
    (tmp_path / "processor_config.json").write_text("{}")
    assert read_processor_template(tmp_path, tokenizer).source == ITEMS


def test_a_template_that_raises_is_one_line(tmp_path, tokenizer):
    source = "{{ raise_exception('only user and assistant roles') }}"
    (tmp_path / "chat_template.json").write_text(json.dumps({"chat_template": source}))
    template = read_processor_template(tmp_path, tokenizer)
    with pytest.raises(GenerationError, match="does not render .*only user and assistant"):
        template.render([Message("user", "hi")])


@pytest.mark.parametrize(
    ("settings", "geometry"),
    [
        ({"size": {"shortest_edge": 336}, "do_center_crop": True}, "crop"),
        ({"size": {"shortest_edge": 336}, "do_center_crop": True, "do_pad": True}, "pad"),
        ({"size": {"height": 384, "width": 384}}, "square"),
    ],
)
def test_processor_settings_choose_the_geometry(settings, geometry):
    assert hf_aspect_ratio(settings) == geometry
