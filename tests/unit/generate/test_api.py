"""``Generator`` / ``optica.generate``: batches equal single prompts, sources agree, and a
user's mistakes are one clear line."""

import pytest
from PIL import Image

import optica
from optica.checkpoint import save
from optica.data.synthetic import shapes_processor
from optica.generate import GenerationError, Generator, write_prompt_format

QUESTIONS = ["What colour is the circle?", "How many squares are there?"]


@pytest.fixture(scope="module")
def image():
    return Image.new("RGB", (32, 32), (220, 30, 30))


@pytest.fixture(scope="module")
def generator(llava, tokenizer):
    return Generator(llava, tokenizer, template="v1", system_prompt="",
                     image_processor=shapes_processor(32))  # fmt: skip


def test_a_batch_answers_like_single_prompts(generator, image):
    batch = generator.generate(QUESTIONS, [image, None], max_new_tokens=6)
    assert batch == [
        generator.generate(QUESTIONS[0], image, max_new_tokens=6)[0],
        generator.generate(QUESTIONS[1], max_new_tokens=6)[0],
    ]
    assert all(isinstance(answer, str) and answer for answer in batch)
    streamed = "".join(generator.stream(QUESTIONS[0], image, max_new_tokens=6))
    assert streamed == batch[0]


def test_checkpoint_dir_answers_like_the_model(llava, tokenizer, generator, image, tmp_path):
    path = save(llava, tmp_path / "ckpt")
    tokenizer.save_pretrained(path)
    write_prompt_format(path, "v1", system_prompt="")
    expected = generator.generate(QUESTIONS[0], image, max_new_tokens=6)
    from_path = optica.generate(str(path), [QUESTIONS[0]], images=[image], max_new_tokens=6,
                                image_processor=shapes_processor(32))  # fmt: skip
    assert from_path == expected


def test_optica_generate_is_callable_however_it_was_imported(llava, tokenizer, image):
    import optica.generate.engine  # binds the name optica.generate to the package

    answers = optica.generate(llava, ["What shape is the red object?"], images=[image],
                              max_new_tokens=4, tokenizer=tokenizer,
                              image_processor=shapes_processor(32))  # fmt: skip
    assert len(answers) == 1


def test_mistakes_are_one_line(generator, llama, tokenizer, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_text("not a picture")
    with pytest.raises(GenerationError, match=r"image .*broken.png does not open"):
        generator.generate(QUESTIONS[0], broken)
    with pytest.raises(GenerationError, match=r"image .*missing.png does not exist"):
        generator.generate(QUESTIONS[0], tmp_path / "missing.png")
    language_only = Generator(llama, tokenizer)
    with pytest.raises(GenerationError, match="LlamaModel is a language model and does not read"):
        language_only.generate(QUESTIONS[0], broken.with_name("any.png"))
    with pytest.raises(GenerationError, match="a tokenizer is needed"):
        Generator(llama, None)
    with pytest.raises(GenerationError, match="one entry .* per prompt"):
        generator.generate(QUESTIONS, [None])
