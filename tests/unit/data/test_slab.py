"""A batch fetched at once: images normalised into one slab, collated as a view, same values."""

import numpy as np
import pytest
import torch
from PIL import Image

from optica.data import Collator, LlavaDataset
from optica.data.images import clip_processor
from optica.data.slab import ImageSlab, joined_view
from tests.unit.data.helpers import record, v1_encoder, write_json

IMG = "<image> what"


def noise_image(path, seed: int, size=(13, 9)):
    pixels = np.random.default_rng(seed).integers(0, 256, size=(*size[::-1], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


@pytest.fixture
def dataset(tmp_path):
    for k in range(4):
        noise_image(tmp_path / f"{k}.png", k)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    records = [record(f"s{k}", IMG, "a cat", image=f"{k}.png") for k in range(4)]
    records.insert(2, record("two", IMG, "a", "<image> and", "b", image=["0.png", "1.png"]))
    records.insert(4, record("bad", IMG, "a", image="bad.png"))
    records.insert(5, record("text", "hello", "a cat"))
    records.append(record("half", IMG, "a", "<image> and", "b", image=["2.png", "bad.png"]))
    encoder = v1_encoder(64, clip_processor(8, "crop"))
    path = write_json(tmp_path / "d.json", records)
    return LlavaDataset(path, encoder=encoder, image_folder=tmp_path, on_bad_input="skip")


def same_batches(ours: dict, theirs: dict) -> None:
    assert ours.keys() == theirs.keys()
    for key, value in theirs.items():
        if isinstance(value, torch.Tensor):
            assert ours[key].dtype == value.dtype and torch.equal(ours[key], value), key
    assert [p.kind for p in ours["problems"]] == [p.kind for p in theirs["problems"]]


# 2 has two images (one slot for [2]: the second is copied); 4 is a bad image; 5 has no image;
# 7's second image is bad after its first took a slot (a gap: the collator copies).
ROWS = [[0, 1], [0, 1, 3], [2, 3, 4, 5, 6], [6, 5, 0, 1], [2], [7, 0, 1]]


@pytest.mark.parametrize("rows", ROWS)
def test_getitems_equals_one_by_one_and_collates_without_a_copy(dataset, rows):
    collate = Collator(0, (8, 8), 1, 4)
    together = dataset.__getitems__(rows)
    alone = [dataset[i] for i in rows]
    for ours, theirs in zip(together, alone):
        assert ours.ids == theirs.ids and torch.equal(ours.images, theirs.images)
    same_batches(collate(together), collate(alone))
    if rows == [0, 1, 3]:  # one image each: one view of the slab
        images = collate(together)["images"]
        assert images.untyped_storage().data_ptr() == together[0].images.data_ptr()


def test_joined_view_only_for_back_to_back_tensors():
    slab = torch.arange(5 * 2 * 3, dtype=torch.float32).reshape(5, 2, 3)
    view = joined_view([slab[0:1], slab[1:3], slab[3:4]])
    assert torch.equal(view, slab[:4]) and view.data_ptr() == slab.data_ptr()
    assert joined_view([slab[0:1], slab[2:3]]) is None  # a gap
    assert joined_view([slab[1:2], slab[0:1]]) is None  # out of order
    assert joined_view([slab[0:1], slab[1:2].clone()]) is None  # another storage
    assert joined_view([slab[0:1], slab[1:1]]) is None  # an empty piece


def test_slab_hands_out_its_slots_in_order_then_none():
    slab = ImageSlab(2, (4, 4))
    first, second = slab.next((4, 4)), slab.next((4, 4))
    assert first.shape == (3, 4, 4) and second.data_ptr() == first.data_ptr() + 3 * 16 * 4
    assert slab.next((4, 4)) is None and ImageSlab(1, (4, 4)).next((5, 5)) is None


def test_processor_writes_into_out(tmp_path):
    noise_image(tmp_path / "a.png", 7, size=(20, 11))
    image, processor = Image.open(tmp_path / "a.png"), clip_processor(8, "crop")
    out = torch.full((3, 8, 8), float("nan"))
    assert processor(image, out=out) is out and torch.equal(out, processor(image))
