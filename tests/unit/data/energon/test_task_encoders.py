"""Each energon sample type through ``MultiModalTaskEncoder`` gives its JSON twin's batch."""

import io
import tarfile

import pytest
import torch
import yaml
from megatron.energon import (
    CaptioningSample,
    InterleavedSample,
    SimilarityInterleavedSample,
    SkipSample,
    VQASample,
)
from PIL import Image

from optica.data import clip_processor
from optica.data.energon.prepare import prepare_shards
from optica.data.errors import BadSampleError, DataConfigError
from tests.unit.data.energon.helpers import (
    TOKENIZER,
    assert_same_batch,
    energon_module,
    json_twin,
    make_images,
)
from tests.unit.data.helpers import expected, record, write_json

BASE = {"__restore_key__": (), "__subflavors__": {}, "__sources__": ()}


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return make_images(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="module")
def module(converted):
    return energon_module(converted[2])


def png(images, name="red.png") -> bytes:
    return (images / name).read_bytes()


def encode(module, *samples) -> dict:
    encoder = module.task_encoder
    return encoder.encode_batch(encoder.batch([encoder.encode_sample(s) for s in samples]))


def twin_batch(tmp_path, images, records, **config) -> dict:
    twin = json_twin(write_json(tmp_path / "twin.json", records), images, **config)
    return twin.collator()([twin.datasets["train"][i] for i in range(len(records))])


def test_vqa_is_a_question_and_its_best_answer(tmp_path, images, module):
    sample = VQASample(
        __key__="q1",
        **BASE,
        image=png(images),
        context="what is it?",
        answers=["a dog", "a cat"],
        answer_weights=torch.tensor([0.2, 0.8]),
    )
    first = VQASample(__key__="q2", **BASE, image=png(images, "blue.png"), context=b"<image>\n"
                      b"what is it?", answers=["a dog"])  # fmt: skip
    twins = [
        record("q1", "<image>\nwhat is it?", "a cat", image="red.png"),
        record("q2", "<image>\nwhat is it?", "a dog", image="blue.png"),
    ]
    assert_same_batch(twin_batch(tmp_path, images, twins), encode(module, sample, first))


def test_captioning_is_the_image_then_its_caption(tmp_path, images, converted):
    sample = CaptioningSample(__key__="c1", **BASE, image=png(images, "wide.jpg"), caption="red")
    twins = [record("c1", "<image>\ndescribe the picture", "red", image="wide.jpg")]
    prompted = energon_module(converted[2], caption_prompt="describe the picture")
    assert_same_batch(twin_batch(tmp_path, images, twins), encode(prompted, sample))
    plain = energon_module(converted[2], config={"conv_template": "plain"})
    plain_twin = twin_batch(tmp_path, images, [record("c1", "<image>", "red", image="wide.jpg")],
                            conv_template="plain")  # fmt: skip
    assert_same_batch(plain_twin, encode(plain, sample))


def test_interleaved_learns_the_text_not_the_images(images, module):
    sample = InterleavedSample(
        __key__="d1", **BASE, sequence=["a cat", png(images), " a dog", png(images, "blue.png")]
    )
    batch = encode(module, sample)
    ids, labels = expected(
        TOKENIZER, ["<s>", ["▁a", "▁cat"], "IMG", ["▁a", "▁dog"], "IMG", ["</s>"]]
    )
    assert batch["input_ids"][0].tolist() == ids
    assert batch["labels"][0].tolist() == labels  # every text token and the EOS, not BOS/images
    processor = clip_processor(8)
    pixels = [processor(Image.open(images / name)) for name in ("red.png", "blue.png")]
    assert torch.equal(batch["images"], torch.stack(pixels))


def test_similarity_interleaved_places_each_image_before_its_text(images, module):
    texts = ["a cat", "a dog"]
    by_index = SimilarityInterleavedSample(
        __key__="m1", **BASE, images=[png(images)], texts=texts, matched_text_indices=[1]
    )
    by_matrix = SimilarityInterleavedSample(
        __key__="m2", **BASE, images=[png(images)], texts=texts,
        similarity_matrix=torch.tensor([[0.1, 0.9]]),
    )  # fmt: skip
    aligned = InterleavedSample(__key__="m", **BASE, sequence=["a cat", png(images), " a dog"])
    assert_same_batch(encode(module, aligned, aligned), encode(module, by_index, by_matrix))
    wrong = SimilarityInterleavedSample(
        __key__="m3", **BASE, images=[png(images)], texts=texts, matched_text_indices=[2]
    )
    with pytest.raises(BadSampleError, match=r"\[m3\].*do not fit 1 image"):
        module.task_encoder.encode_sample(wrong)


def test_bad_samples_raise_or_are_skipped_and_reported(images, converted):
    broken = VQASample(__key__="q9", **BASE, image=b"not an image", context="?", answers=["a"])
    good = VQASample(__key__="q1", **BASE, image=png(images), context="?", answers=["a"])
    with pytest.raises(BadSampleError, match=r"sample 'q9'.*corrupt image"):
        energon_module(converted[2]).task_encoder.encode_sample(broken)
    skipping = energon_module(converted[2], config={"on_bad_input": "skip"}).task_encoder
    with pytest.raises(SkipSample):
        skipping.encode_sample(broken)
    batch = skipping.batch([skipping.encode_sample(good)])
    assert [(p.kind, p.sample) for p in batch["problems"]] == [("corrupt_image", "q9")]


def test_unknown_sample_type_is_one_line(module):
    with pytest.raises(DataConfigError, match="no optica encoder for energon sample type str"):
        module.task_encoder.encode_sample("text")


def test_a_prepared_vqa_dataset_loads_through_energon(tmp_path, images):
    """``energon prepare``-style VQA shards (field map, not optica's converter) end to end."""
    folder = tmp_path / "vqa"
    folder.mkdir()
    with tarfile.open(folder / "vqa-0.tar", "w") as tar:
        for key, (image, question, answer) in enumerate(
            [("red.png", "what is it?", "a cat"), ("blue.png", "color?", "blue")]
        ):
            for part, data in [("png", png(images, image)), ("question.txt", question.encode()),
                               ("answer.txt", answer.encode())]:  # fmt: skip
                info = tarfile.TarInfo(f"{key:04d}.{part}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    field_map = {"image": "png", "context": "question.txt", "answers": "answer.txt"}
    sample_type = {"__module__": "megatron.energon", "__class__": "VQASample"}
    prepare_shards(folder, dataset_definition={"sample_type": sample_type, "field_map": field_map})
    assert yaml.safe_load((folder / ".nv-meta" / "dataset.yaml").read_text())["field_map"]
    batches = list(
        energon_module(folder, micro_batch_size=2, global_batch_size=2).sequential_loader("train")
    )
    twins = [
        record("0000", "<image>\nwhat is it?", "a cat", image="red.png"),
        record("0001", "<image>\ncolor?", "blue", image="blue.png"),
    ]
    assert_same_batch(twin_batch(tmp_path, images, twins), batches[0])
