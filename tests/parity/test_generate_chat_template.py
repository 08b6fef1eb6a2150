"""An imported llava-hf-style checkpoint chats with its own processor chat template.

A tiny random transformers ``LlavaForConditionalGeneration``, a tiny Llama-like tokenizer (BOS
added by its post-processor, ``<image>`` a special token) and a ``LlavaProcessor`` carrying a
chat template written like llava-hf's (images first, ``{% generation %}`` around answers) are
saved to one folder and ``optica import``-ed. optica's prompt ids for a text + image
conversation, with each image placeholder written out as ``image_seq_length`` image tokens, must
equal ``processor.apply_chat_template(..., tokenize=True)``; its pixels must equal the
processor's; greedy generation (plain and with a repetition penalty) must equal transformers'
``generate(do_sample=False)`` token for token.
"""

from pathlib import Path

import pytest
import torch
from PIL import Image
from tokenizers import processors
from transformers import (
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
)
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from optica.checkpoint import import_ckpt
from optica.cli.main import main
from optica.data.conversation import Message
from optica.data.word_tokenizer import word_tokenizer
from optica.generate import Decoding, GenerationError, Generator, SamplingConfig, left_pad
from tests.parity.vision_models import IMAGE, TEXT, TOWER, save

# llava-hf/llava-1.5-7b-hf's template, in its shape: role header, images, then the texts
LLAVA_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}{% endif %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\n' }}{% endfor %}"
    "{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] + ' '}}{% endfor %}"
    "{% else %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)
WORDS = "USER: ASSISTANT: What is shown in the picture? A red circle. And what colour is it? Red"
QUESTION = "What is shown in the picture?"
NEW = 12


def tiny_tokenizer():
    tokenizer = word_tokenizer([WORDS], special=["<unk>", "<s>", "</s>", "<pad>", "<image>"])
    bos = ("<s>", tokenizer.bos_token_id)
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[bos]
    )
    return tokenizer


@pytest.fixture(scope="module")
def hf(tmp_path_factory):
    """(folder, transformers model, processor) of the saved llava-hf-style checkpoint."""
    folder = tmp_path_factory.mktemp("llava_hf")
    tokenizer = tiny_tokenizer()
    image_id = tokenizer.convert_tokens_to_ids("<image>")
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(**TOWER),
        text_config=LlamaConfig(**{**TEXT, "vocab_size": len(tokenizer)}),
        image_token_index=image_id,
        image_seq_length=(IMAGE // 4) ** 2,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
    )
    model = save(LlavaForConditionalGeneration(config), folder)
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": IMAGE}, crop_size={"height": IMAGE, "width": IMAGE}
    )
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer,
                               chat_template=LLAVA_TEMPLATE, patch_size=4, image_token="<image>",
                               vision_feature_select_strategy="default",
                               num_additional_image_tokens=1)  # fmt: skip
    processor.save_pretrained(folder)
    return folder, model, processor


@pytest.fixture(scope="module")
def imported(hf, tmp_path_factory) -> Path:
    return import_ckpt(None, hf[0], output_path=tmp_path_factory.mktemp("optica") / "llava")


@pytest.fixture(scope="module")
def generator(imported) -> Generator:
    return Generator.from_source(imported)


@pytest.fixture(scope="module")
def picture() -> Image.Image:
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (IMAGE + 5, IMAGE + 9, 3), generator=generator)
    return Image.fromarray(pixels.to(torch.uint8).numpy())


def hf_conversation(picture, answer: str | None = None, follow_up: str | None = None):
    turns = [{"role": "user", "content": [{"type": "image", "image": picture},
                                          {"type": "text", "text": QUESTION}]}]  # fmt: skip
    if answer is not None:
        turns += [
            {"role": "assistant", "content": [{"type": "text", "text": answer}]},
            {"role": "user", "content": [{"type": "text", "text": follow_up}]},
        ]
    return turns


def hf_inputs(processor, conversation):
    return processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=True,
                                         return_dict=True, return_tensors="pt")  # fmt: skip


def written_out(ids: list[int], image_id: int, per_image: int) -> list[int]:
    """optica's ids with each -200 written out as the processor writes an image."""
    return [t for token in ids for t in ([image_id] * per_image if token == -200 else [token])]


def optica_messages(answer: str | None = None, follow_up: str | None = None) -> list[Message]:
    """The same conversation as optica's string messages (the image tagged in the first)."""
    messages = [Message("user", f"<image>\n{QUESTION}")]
    if answer is not None:
        messages += [Message("assistant", answer), Message("user", follow_up)]
    return messages


def test_import_carries_the_processor_and_tokenizer_files(imported):
    carried = {path.name for path in imported.iterdir()}
    wanted = {"tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
              "processor_config.json"}  # fmt: skip
    assert wanted <= carried, carried


@pytest.mark.parametrize("turns", [1, 2], ids=["question", "follow-up"])
def test_prompt_ids_equal_the_processors_chat_template(hf, generator, picture, turns):
    _, model, processor = hf
    history = ("A red circle.", "And what colour is it?") if turns == 2 else ()
    expected = hf_inputs(processor, hf_conversation(picture, *history))["input_ids"][0].tolist()
    ours = generator.prompts.encode(optica_messages(*history), num_images=1)
    per_image = generator.model.tokens_per_image
    assert expected.count(model.config.image_token_index) == per_image == 16
    print(f"[chat template] {turns} turn(s): {len(expected)} ids equal the processor's")
    assert written_out(ours, model.config.image_token_index, per_image) == expected


def test_pixels_follow_the_processors_image_settings(hf, generator, picture):
    expected = hf_inputs(hf[2], hf_conversation(picture))["pixel_values"][0]
    ours = generator.image_processor(picture)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)


def optica_tokens(generator, conversations, picture, sampling) -> torch.Tensor:
    """[B, NEW] greedy tokens for a batch of conversations, one picture each."""
    rows = [generator.prompts.encode(messages, num_images=1) for messages in conversations]
    ids, mask = left_pad(rows, generator.pad_id)
    pixels = generator.image_processor(picture)[None].expand(len(rows), -1, -1, -1)
    decoding = Decoding(generator.model, ids, mask, pixels, max_new_tokens=NEW,
                        sampling=sampling, stop_ids=[], pad_id=generator.pad_id)  # fmt: skip
    return torch.stack(list(decoding), dim=1)


def transformers_tokens(hf, picture, *history, **settings) -> torch.Tensor:
    _, model, processor = hf
    inputs = hf_inputs(processor, hf_conversation(picture, *history))
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=NEW, do_sample=False, eos_token_id=None,
                             pad_token_id=processor.tokenizer.pad_token_id, **settings)  # fmt: skip
    return out[0, inputs["input_ids"].shape[1] :]


@pytest.mark.parametrize("penalty", [1.0, 1.5], ids=["greedy", "repetition_penalty"])
def test_greedy_generation_equals_transformers(hf, generator, picture, penalty):
    sampling = SamplingConfig(repetition_penalty=penalty)
    ours = optica_tokens(generator, [optica_messages()], picture, sampling)[0]
    theirs = transformers_tokens(hf, picture, repetition_penalty=penalty)
    print(f"[chat template] penalty {penalty}: {NEW} tokens identical: {ours.tolist()}")
    assert ours.unique().numel() > 3  # a real sequence, not one repeated token
    assert torch.equal(ours, theirs)


def test_penalised_batch_rows_equal_transformers_on_each_row_alone(hf, generator, picture):
    """Padding is not penalised (see ``optica.generate.sampling.seen_tokens``): the shorter,
    left-padded row answers as transformers answers it unpadded."""
    history = ("A red circle.", "And what colour is it?")
    batch = [optica_messages(), optica_messages(*history)]
    ours = optica_tokens(generator, batch, picture, SamplingConfig(repetition_penalty=1.5))
    for row, turns in enumerate([(), history]):
        theirs = transformers_tokens(hf, picture, *turns, repetition_penalty=1.5)
        assert torch.equal(ours[row], theirs), row


def test_repetition_penalty_counts_the_image_token_like_transformers(generator, picture):
    """The image token is in transformers' input ids, so it is penalised there; optica marks it
    too (without it, the rows would differ whenever the image token competes)."""
    from optica.generate.sampling import seen_tokens

    ids, mask = left_pad([generator.prompts.encode(optica_messages(), num_images=1)], 0)
    image_id = generator.model.image_token_id
    vocab = generator.model.module.config.language_transformer_config.vocab_size
    assert bool(seen_tokens(ids, mask, vocab, image_id)[0, image_id])
    assert not bool(seen_tokens(ids, mask, vocab, None)[0, image_id])


def test_generate_and_chat_use_the_template_by_default(imported, picture, tmp_path, capsys):
    image = tmp_path / "picture.png"
    picture.save(image)
    answer = Generator.from_source(imported).generate(QUESTION, image, max_new_tokens=4)[0]
    argv = ["generate", "--ckpt", str(imported), "--image", str(image), "--prompt", QUESTION,
            "--max-new-tokens", "4"]  # fmt: skip
    assert main(argv) == 0
    assert capsys.readouterr().out.strip() == answer.strip()


def test_a_checkpoint_without_any_template_is_one_line(imported, tmp_path, capsys):
    bare = tmp_path / "bare"
    bare.mkdir()
    for path in imported.iterdir():
        if path.name not in {"chat_template.jinja", "processor_config.json"}:
            (bare / path.name).write_bytes(path.read_bytes())
    with pytest.raises(GenerationError, match="no conversation template.*--conv-template"):
        Generator.from_source(bare)
    assert Generator.from_source(bare, template="v1").prompts.template.name == "v1"
    assert main(["generate", "--ckpt", str(bare), "--prompt", QUESTION]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--conv-template" in err[0], err
