"""Synthetic shapes (determinism, answers checked against the pixels) and mock data."""

import csv
import hashlib
import math
from collections import Counter

import numpy as np
import pytest
import torch

from optica.data import MockDataModule, ShapesConfig, ShapesDataModule, shapes_sample
from optica.data.errors import DataConfigError
from optica.data.shapes import BACKGROUND, COLOURS, NUMBERS
from optica.data.synthetic import ShapesClassificationDataModule

CONFIG = ShapesConfig(max_objects=3, questions_per_sample=2)


def components(pixels: np.ndarray) -> list[tuple[tuple[int, int, int], float]]:
    """(colour, fill ratio of its bounding box) of each 4-connected non-background blob."""
    foreground = (pixels != BACKGROUND).any(-1)
    seen = np.zeros_like(foreground)
    found = []
    for start in zip(*np.nonzero(foreground)):
        if seen[start]:
            continue
        stack, blob = [start], []
        seen[start] = True
        while stack:
            y, x = stack.pop()
            blob.append((y, x))
            for dy, dx in ((0, 1), (1, 0), (0, -1), (-1, 0)):
                ny, nx = y + dy, x + dx
                inside = 0 <= ny < foreground.shape[0] and 0 <= nx < foreground.shape[1]
                if inside and foreground[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    stack.append((ny, nx))
        ys, xs = zip(*blob)
        area = (max(ys) - min(ys) + 1) * (max(xs) - min(xs) + 1)
        found.append((tuple(int(c) for c in pixels[start]), len(blob) / area))
    return found


def recognise(fill: float) -> str:
    return "square" if fill > 0.92 else "circle" if fill > 0.66 else "triangle"


def test_same_index_same_sample_and_splits_differ():
    a, b = shapes_sample(CONFIG, "train", 17), shapes_sample(CONFIG, "train", 17)
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image)) and a.qa == b.qa
    other = shapes_sample(CONFIG, "val", 17)
    assert not np.array_equal(np.asarray(a.image), np.asarray(other.image))


def test_answers_match_the_pixels():
    names = {rgb: name for name, rgb in COLOURS.items()}
    kinds = Counter()
    for index in range(150):
        sample = shapes_sample(CONFIG, "train", index)
        blobs = [(names[c], recognise(f)) for c, f in components(np.asarray(sample.image))]
        assert len(blobs) == len(sample.objects) >= 1
        for qa in sample.qa:
            kinds[qa.kind] += 1
            words = qa.question.rstrip("?").split()
            if qa.kind == "colour":  # "What colour is the circle?"
                assert [c for c, s in blobs if s == words[-1]] == [qa.answer]
            elif qa.kind == "shape":  # "What shape is the red object?"
                assert [s for c, s in blobs if c == words[-2]] == [qa.answer]
            else:  # "How many squares are there?"
                assert NUMBERS[sum(s + "s" == words[2] for _, s in blobs)] == qa.answer
            assert len(qa.answer.split()) == 1
    assert min(kinds.values()) > 40  # every kind of question is asked


def test_classification_labels_are_the_shape():
    dm = ShapesClassificationDataModule(
        num_train_samples=64, micro_batch_size=16, global_batch_size=16
    )
    batch = next(iter(dm.train_dataloader()))
    assert batch["images"].shape == (16, 3, 32, 32) and dm.num_classes == 3
    dataset = dm.datasets["train"]
    for index in range(20):
        (obj,) = shapes_sample(dataset.config, "train", index).objects
        assert dataset.classes[int(dataset[index]["labels"])] == obj.kind


def test_classification_label_is_shape_or_colour():
    assert ShapesClassificationDataModule(label="colour").num_classes == len(CONFIG.colours)
    with pytest.raises(DataConfigError, match="label='color': expected one of shape, colour"):
        ShapesClassificationDataModule(label="color")


def test_shapes_datamodule_batches_and_tokens():
    dm = ShapesDataModule(
        num_train_samples=64, num_val_samples=8, micro_batch_size=8, global_batch_size=8
    )
    batch = next(iter(dm.train_dataloader()))
    assert batch["images"].shape == (8, 3, 32, 32) and batch["num_images"].tolist() == [1] * 8
    assert dm.vision.image_token_len == 64
    dataset = dm.datasets["train"]
    for index in range(64):
        sample = dataset[index]
        assert dm.tokenizer.unk_token_id not in sample.input_ids.tolist()
        learned = sample.input_ids[sample.labels != -100]
        assert dm.tokenizer.decode(learned).strip() == dataset.qa(index)[0].answer + "</s>"
    assert len(list(dm.val_dataloader())) == 1


def test_bad_shapes_config():
    with pytest.raises(DataConfigError, match="needs a tokenizer"):
        ShapesDataModule(conv_template="chatml")
    with pytest.raises(DataConfigError, match="max_objects"):
        ShapesConfig(max_objects=9)
    with pytest.raises(DataConfigError, match="unknown shapes or colours"):
        ShapesConfig(colours=("mauve",))
    with pytest.raises(DataConfigError, match="unknown kind 'color'; did you mean 'colour'"):
        ShapesConfig(question_kinds=("color",))


def test_restricted_question_kinds_still_ask_a_question_in_every_sample():
    """Two same-coloured squares allow neither a colour nor a shape question: such a scene is
    redrawn (it used to become a sample with no conversation, which failed to load)."""
    config = ShapesConfig(question_kinds=("colour", "shape"))
    dm = ShapesDataModule(shapes=config, num_train_samples=200, num_val_samples=0)
    dataset = dm.build_dataset("train")
    kinds = Counter()
    for index in range(200):
        sample = shapes_sample(config, "train", index)
        assert sample.qa and {qa.kind for qa in sample.qa} <= {"colour", "shape"}, index
        kinds[len(sample.objects)] += 1
        ids = dataset[index].input_ids
        assert sample.qa[0].question in dm.tokenizer.decode(ids[ids >= 0])  # it loads
    assert kinds[2] > 20  # two-object scenes (the ambiguous kind) are among them


def test_a_config_that_allows_no_question_is_one_line():
    """Two small red squares every time: never a colour or a shape question."""
    config = ShapesConfig(shapes=("square",), colours=("red",), min_objects=2,
                          size_range=(0.1, 0.12), question_kinds=("colour", "shape"))  # fmt: skip
    with pytest.raises(DataConfigError, match="allow no colour/shape question"):
        shapes_sample(config, "train", 0)


def test_count_questions_leave_samples_as_they_were():
    """With ``count`` allowed every scene has a question, so nothing is redrawn: the first 100
    train samples hash as they did before the fix (digest recorded with the previous
    ``optica/data/shapes.py``, commit 62f41c5)."""
    digest = hashlib.sha256()
    for index in range(100):
        sample = shapes_sample(ShapesConfig(), "train", index)
        qa = [(q.question, q.answer) for q in sample.qa]
        digest.update(repr((sample.objects, qa)).encode())
    assert digest.hexdigest()[:16] == "a2f0a618d1f03863"


def test_mock_data_has_the_requested_shapes():
    dm = MockDataModule(
        seq_length=32,
        vocab_size=100,
        image_size=8,
        image_token_len=16,
        num_images=1,
        micro_batch_size=4,
        global_batch_size=8,
        num_train_samples=16,
    )
    batch = next(iter(dm.train_dataloader()))
    assert batch["input_ids"].shape == (4, 17)  # 17 text tokens + 16 per image = 32
    assert batch["images"].shape == (4, 3, 8, 8)
    assert (batch["input_ids"][:, 0] == -200).all()
    assert batch["input_ids"][:, 1:].max() < 100 and (batch["labels"] != -100).any()
    again = next(
        iter(
            MockDataModule(
                seq_length=32,
                vocab_size=100,
                image_size=8,
                image_token_len=16,
                micro_batch_size=4,
                global_batch_size=8,
                num_train_samples=16,
            ).train_dataloader()
        )
    )
    assert torch.equal(batch["input_ids"], again["input_ids"])


def test_mock_refuses_no_room_for_text():
    with pytest.raises(DataConfigError, match="leaves no room"):
        MockDataModule(seq_length=16, image_token_len=16)


def test_mock_language_model_batches_are_tokens_only_and_all_learned():
    """No image placeholders (a language model's embedding refuses id -200: IndexError) and no
    collator extras (pipeline parallelism refuses images, positions and document ids)."""
    dm = MockDataModule(seq_length=16, vocab_size=50, num_images=0, micro_batch_size=2,
                        global_batch_size=2, num_train_samples=4)  # fmt: skip
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"input_ids", "labels"} and batch["input_ids"].shape == (2, 16)
    assert torch.equal(batch["input_ids"], batch["labels"])
    assert int(batch["input_ids"].min()) >= 3 and int(batch["input_ids"].max()) < 50


def test_mock_classifier_batches_are_labelled_images():
    dm = MockDataModule(num_classes=5, image_size=8, micro_batch_size=3, global_batch_size=3,
                        num_train_samples=6)  # fmt: skip
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"images", "labels"} and batch["images"].shape == (3, 3, 8, 8)
    assert batch["labels"].shape == (3,) and int(batch["labels"].max()) < 5
    with pytest.raises(DataConfigError, match="num_classes=0 must be >= 1"):
        MockDataModule(num_classes=0)
    with pytest.raises(DataConfigError, match="num_images=-1 must be >= 0"):
        MockDataModule(num_images=-1)


@pytest.mark.parametrize("kind", ["llama", "llava", "vit"])
def test_pretrain_each_kind_of_model_on_mock_data(kind, tmp_path):
    from optica.models import (
        LlamaConfigTiny,
        LlamaModel,
        LlavaConfigTiny,
        LlavaModel,
        ViTClassificationModel,
        ViTConfigTiny,
    )  # fmt: skip
    from optica.train.api import pretrain
    from optica.train.exp_manager import ExpManager
    from optica.train.trainer import TrainerConfig

    sizes = dict(micro_batch_size=2, global_batch_size=2, num_train_samples=4, num_val_samples=0)
    if kind == "llama":
        model = LlamaModel(LlamaConfigTiny())
        data = MockDataModule(seq_length=32, vocab_size=250, num_images=0, **sizes)
    elif kind == "llava":
        model = LlavaModel(LlavaConfigTiny())
        data = MockDataModule(seq_length=96, vocab_size=249, image_size=32, image_token_len=64,
                              **sizes)  # fmt: skip
    else:
        model = ViTClassificationModel(ViTConfigTiny())
        data = MockDataModule(num_classes=10, image_size=32, **sizes)
    trainer = TrainerConfig(max_steps=2, accelerator="cpu", devices=1, log_every_n_steps=1,
                            enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    log = ExpManager(exp_dir=str(tmp_path), name=kind, ckpt=None, tensorboard=False)
    run_dir = pretrain(model, data, trainer, log)
    rows = csv.DictReader((run_dir / "metrics.csv").open())
    losses = [float(r["reduced_train_loss"]) for r in rows if r["reduced_train_loss"]]
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)
