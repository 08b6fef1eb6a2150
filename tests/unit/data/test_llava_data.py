"""LLaVA files end to end, and every kind of bad input under ``error`` and ``skip``."""

import io
import json

import numpy as np
import pytest
from PIL import Image

from optica.data import ImageDataConfig, NevaLazyDataModule, VisionGeometry, clip_processor
from optica.data.errors import BadSampleError, DataConfigError, DataError
from optica.data.llava import open_image
from tests.unit.data.helpers import llama_like_tokenizer, record, solid_image, write_json

TOKENIZER = llama_like_tokenizer()


@pytest.fixture
def folder(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    solid_image(images / "red.png", (255, 0, 0))
    solid_image(images / "blue.png", (0, 0, 255), size=(16, 8))
    (images / "corrupt.png").write_bytes(b"not an image at all")
    full = images / "truncated.png"
    solid_image(full, (0, 255, 0), size=(64, 64))
    full.write_bytes(full.read_bytes()[:60])
    (tmp_path / "secret.png").write_bytes((images / "red.png").read_bytes())
    return tmp_path


def module(folder, records, *, jsonl=False, **config):
    path = write_json(folder / ("d.jsonl" if jsonl else "d.json"), records, jsonl=jsonl)
    settings = {"image_folder": folder / "images", "system_prompt": "", "image_token_len": 4}
    return NevaLazyDataModule(
        path,
        data_config=ImageDataConfig(**{**settings, **config}),
        tokenizer=TOKENIZER,
        image_processor=clip_processor(8),
        seq_length=64,
        micro_batch_size=2,
        global_batch_size=2,
        val_paths=(),
    )


TWO_IMAGES = ["red.png", "blue.png"]
GOOD = [
    record("one", "<image>\nwhat is it?", "a cat", image="red.png"),
    record("two", "<image> what <image>", "a cat", "and color?", "black", image=TWO_IMAGES),
    record("text", "hello there", "a dog"),
    record("list", "what is it? <image>", "a cat", image=["blue.png"]),
]


def test_batch_with_several_images_and_text_only(folder):
    dm = module(folder, GOOD)
    dm.setup()
    samples = [dm.datasets["train"][i] for i in range(4)]
    assert [len(s.images) for s in samples] == [1, 2, 0, 1]
    assert [int((s.input_ids == -200).sum()) for s in samples] == [1, 2, 0, 1]
    batch = dm.collator()(samples)
    assert batch["images"].shape == (4, 3, 8, 8)
    assert batch["num_images"].tolist() == [1, 2, 0, 1]
    assert batch["labels"][~batch["attention_mask"]].eq(-100).all()
    assert batch["input_ids"][~batch["attention_mask"]].eq(TOKENIZER.pad_token_id).all()
    # images follow tag order: sample "two" has red, then blue (more blue channel)
    assert batch["images"][1, 2].mean() < batch["images"][2, 2].mean()


def test_tags_move_to_the_front_of_their_turn(folder):
    dm = module(folder, GOOD)
    dm.setup()
    conversation = dm.datasets["train"].conversation(1)
    assert conversation.turns[0].content == "<image>\n<image>\nwhat"


def test_image_token_len_and_size_are_checked_against_the_encoder(folder):
    path = write_json(folder / "d.json", GOOD)
    with pytest.raises(DataConfigError, match="image_token_len=4 but the vision encoder gives 16"):
        NevaLazyDataModule(
            path,
            data_config=ImageDataConfig(image_token_len=4),
            tokenizer=TOKENIZER,
            image_processor=clip_processor(8),
            vision=VisionGeometry(8, 2),
        )
    with pytest.raises(DataConfigError, match="makes 8x8 images but the vision encoder"):
        NevaLazyDataModule(
            path,
            tokenizer=TOKENIZER,
            image_processor=clip_processor(8),
            vision=VisionGeometry(16, 4),
        )


IMG = "<image>"
BAD = {
    "missing_image": (record("m", IMG, "a", image="nope.png"), "sample 'm': image not found"),
    "corrupt_image": (
        record("c", IMG, "a", image="corrupt.png"),
        "corrupt.png: sample 'c': corrupt image",
    ),
    "truncated_image": (
        record("t", IMG, "a", image="truncated.png"),
        "truncated.png: sample 't': corrupt image",
    ),
    "escape": (
        record("e", IMG, "a", image="../secret.png"),
        "sample 'e': image path '../secret.png' leaves the image folder",
    ),
    "absolute": (record("a", IMG, "a", image="/etc/hostname"), "leaves the image folder"),
    "unknown_role": (
        {"id": "r", "conversations": [{"from": "bot", "value": "x"}]},
        "unknown role 'bot' in turn 0",
    ),
    "more_tags": (record("t2", IMG + IMG, "a", image="red.png"), r"2 <image> tag\(s\) but 1"),
    "more_images": (record("i2", "what", "a", image="red.png"), r"0 <image> tag\(s\) but 1"),
    "tag_in_answer": (
        record("g", IMG, f"a {IMG}", image=["red.png", "red.png"]),
        "outside a human turn",
    ),
    "order": (
        {"id": "o", "conversations": [{"from": "gpt", "value": "x"}]},
        "turn 0 is a assistant turn",
    ),
    "no_answer": (
        {"id": "n", "conversations": [{"from": "human", "value": "x"}]},
        "nothing to learn",
    ),
    "no_conversations": ({"id": "x"}, "no 'conversations' list"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_an_error_naming_file_and_sample(folder, case):
    bad, message = BAD[case]
    dm = module(folder, [GOOD[0], bad])
    dm.setup()
    with pytest.raises(BadSampleError, match=message) as err:
        dm.datasets["train"][1]
    assert "\n" not in str(err.value)
    assert "d.json" in str(err.value) or "images" in str(err.value)


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_skipped_and_counted(folder, case):
    bad, _ = BAD[case]
    dm = module(folder, [GOOD[0], bad, GOOD[2]], on_bad_input="skip")
    dm.setup()
    sample = dm.datasets["train"][1]
    assert sample.ids == ("text",)  # the next good sample took its place
    assert [p.skipped for p in sample.problems] == [True]
    dm.consume(dm.collator()([dm.datasets["train"][0], sample]))
    assert dm.report.skipped == 1 and sum(dm.report.counts.values()) == 1
    assert "1 sample(s) skipped" in dm.report.summary()


def test_malformed_jsonl_line_skipped_with_its_line(folder):
    path = folder / "d.jsonl"
    path.write_text(json.dumps(record("a", "hi", "a cat")) + '\n{"id": "b",,}\n')
    dm = NevaLazyDataModule(
        path,
        data_config=ImageDataConfig(on_bad_input="skip", system_prompt=""),
        tokenizer=TOKENIZER,
        image_processor=clip_processor(8),
        val_paths=(),
    )
    dm.setup()
    sample = dm.datasets["train"][1]
    assert sample.ids == ("a",)
    assert (
        sample.problems[0].kind == "malformed_json"
        and "d.jsonl: line 2" in sample.problems[0].where
    )


def test_too_many_bad_samples_in_a_row(folder):
    bad = [record(f"m{i}", "<image>", "a cat", image="nope.png") for i in range(3)]
    dm = module(folder, bad, on_bad_input="skip")
    dm.setup()
    with pytest.raises(DataError, match="3 bad samples in a row"):
        dm.datasets["train"][0]


def test_overlong_truncate_and_drop_are_counted(folder):
    long = record("long", "<image> " + "hello there " * 40, "a cat", image="red.png")
    dm = module(folder, [long, GOOD[2]])
    dm.setup()
    sample = dm.datasets["train"][0]  # truncating it would leave no answer: dropped instead
    assert sample.ids == ("text",) and sample.problems[0].kind == "too_long"
    dropped = module(folder, [GOOD[0], long, GOOD[2]], overlong="drop")
    dropped.setup()
    assert dropped.datasets["train"][1].ids == ("text",)  # dropped even under on_bad_input=error


def test_overlong_truncation_keeps_learned_tokens(folder):
    long = record("long", "hello there", "a cat " * 60)
    dm = module(folder, [long, GOOD[2]])
    dm.setup()
    sample = dm.datasets["train"][0]
    assert len(sample.input_ids) == 64 and sample.problems[0].kind == "truncated"
    assert not sample.problems[0].skipped


def test_packed_datamodule_reports_dropped_samples(folder):
    long = record("long", "<image> " + "hello there " * 40, "a cat", image="red.png")
    dm = NevaLazyDataModule(
        write_json(folder / "p.json", [*GOOD, long]),
        data_config=ImageDataConfig(
            image_folder=folder / "images", system_prompt="", image_token_len=4, overlong="drop"
        ),
        tokenizer=TOKENIZER,
        image_processor=clip_processor(8),
        seq_length=64,
        packed_sequence=True,
        micro_batch_size=1,
        global_batch_size=1,
        val_paths=(),
    )
    batches = list(dm.train_dataloader())
    ids = [b["document_ids"].max().item() + 1 for b in batches]
    assert sum(ids) == 4 and len(batches) < 4
    assert dm.report.counts["too_long"] == 1
    # positions run over the expanded sequence and restart at 0 once per packed sample
    assert all(
        int((b["position_ids"][0] == 0).sum()) == int(b["document_ids"].max()) + 1 for b in batches
    )


def test_worker_processes_carry_problems_and_errors_back(folder):
    bad = record("m", "<image>", "a cat", image="nope.png")
    records = [GOOD[0], bad, GOOD[2], GOOD[3]]
    dm = module(folder, records, on_bad_input="skip")
    dm.num_workers = 2
    for batch in dm.train_dataloader():
        dm.consume(batch)
    assert dm.report.counts == {"missing_image": 1} and dm.consumed_samples == 4
    strict = module(folder, records)
    strict.num_workers = 2
    with pytest.raises(BadSampleError, match="image not found"):
        list(strict.train_dataloader())


def test_images_default_to_the_data_files_folder(folder):
    path = write_json(folder / "images" / "d.json", [GOOD[0]])
    dm = NevaLazyDataModule(
        path,
        data_config=ImageDataConfig(system_prompt="", image_token_len=4),
        tokenizer=TOKENIZER,
        image_processor=clip_processor(8),
        val_paths=(),
    )
    dm.setup()
    assert dm.datasets["train"][0].images.shape == (1, 3, 8, 8)


@pytest.mark.parametrize("mode", ["RGB", "L", "P", "RGBA"])
def test_open_image_gives_rgb_pixels_from_a_path_or_a_stream(tmp_path, mode):
    pixels = np.random.default_rng(0).integers(0, 256, size=(12, 10, 3), dtype=np.uint8)
    source = Image.fromarray(pixels).convert(mode)
    path = tmp_path / ("a.jpg" if mode in ("RGB", "L") else "a.png")
    source.save(path)
    with Image.open(path) as reference:
        expected = np.asarray(reference.convert("RGB"))
    for given in (path, str(path), io.BytesIO(path.read_bytes())):
        image = open_image(given, "s")
        assert image.mode == "RGB" and np.array_equal(np.asarray(image), expected)
