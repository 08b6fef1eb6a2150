"""``optica data convert``: LLaVA JSON → shards → energon → the JSON path's batches; bad input."""

import subprocess
import sys
import tarfile

import pytest

from optica.cli.main import main
from optica.data.energon.convert import convert_llava
from optica.data.errors import BadSampleError, DataError
from tests.unit.data.energon.helpers import (
    RECORDS,
    SHARED,
    assert_same_batch,
    energon_module,
    json_twin,
    make_data,
)
from tests.unit.data.helpers import record, write_json


def test_round_trip_gives_the_json_batches(converted):
    data, images, shards = converted
    assert sorted(p.name for p in shards.glob("*.tar")) == [
        "shard-000000.tar",
        "shard-000001.tar",
        "shard-000002.tar",
    ]
    twin = json_twin(data, images)
    dataset, collate = twin.datasets["train"], twin.collator()
    batches = list(energon_module(shards).sequential_loader("train"))
    size = SHARED["micro_batch_size"]
    assert len(batches) == len(RECORDS) // size
    for number, batch in enumerate(batches):
        rows = range(number * size, (number + 1) * size)
        assert_same_batch(collate([dataset[i] for i in rows]), batch)
    # several images in a row, and a text-only row
    assert [b["num_images"].tolist() for b in batches[1:]] == [[1, 1, 2], [0, 1, 1]]


def test_shards_hold_the_record_and_the_original_image_bytes(converted):
    _, images, shards = converted
    with tarfile.open(shards / "shard-000001.tar") as tar:
        names = tar.getnames()
        assert names[:4] == [
            "00000004.json",
            "00000004.img0.png",
            "00000005.json",
            "00000005.img0.png",
        ]
        assert "00000005.img1.jpg" in names
        wide = tar.extractfile("00000005.img1.jpg").read()
    assert wide == (images / "wide.jpg").read_bytes()


def test_conversion_is_reproducible(tmp_path, converted):
    data, images, shards = converted
    again = convert_llava(data, tmp_path / "again", image_folder=images, shard_size=4)
    assert again.samples == len(RECORDS) and again.images == 9
    for shard in shards.glob("*.tar"):
        assert (tmp_path / "again" / shard.name).read_bytes() == shard.read_bytes()


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (record("lost", "<image>\\nwhat", "a cat", image="gone.png"), r"sample 'lost'.*not found"),
        (record("out", "<image>\\nwhat", "a cat", image="../data.json"), "leaves the image folder"),
        (record("tags", "<image> <image>", "a cat", image="red.png"), "2 <image> tag.*1 image"),
        (record("broken", "<image>", "a cat", image="broken.png"), "sample 'broken'.*corrupt"),
    ],
)
def test_bad_samples_stop_the_conversion_with_file_and_id(tmp_path, bad, message):
    data, images = make_data(tmp_path, [*RECORDS[:2], bad])
    (images / "broken.png").write_bytes(b"not a png")
    with pytest.raises(BadSampleError, match=message) as err:
        convert_llava(data, tmp_path / "out", image_folder=images)
    assert str(data) in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out*"))  # the staging folder is gone too


def test_malformed_json_names_file_and_line(tmp_path):
    data, images = make_data(tmp_path, RECORDS[:2])
    data.write_text(data.read_text().replace('"gpt"', '"gpt",,', 1))
    with pytest.raises(BadSampleError, match=r"data\.json: line \d+.*malformed JSON"):
        convert_llava(data, tmp_path / "out", image_folder=images)


def test_skip_lists_every_bad_sample_and_keeps_the_rest(tmp_path):
    bad = [record("lost", "<image>", "a", image="gone.png"), record("role", "hello", "x")]
    bad[1]["conversations"][0]["from"] = "robot"
    data, images = make_data(tmp_path, [RECORDS[0], *bad, RECORDS[1]])
    report = convert_llava(data, tmp_path / "out", image_folder=images, on_bad_input="skip")
    assert report.samples == 2
    assert [(p.kind, p.sample) for p in report.problems] == [
        ("missing_image", "lost"),
        ("unknown_role", "role"),
    ]
    assert "2 bad sample(s) skipped" in report.summary()


def test_cli_converts_and_reports_bad_input_in_one_line(tmp_path, capsys):
    data, images = make_data(tmp_path, RECORDS[:3])
    args = ["data", "convert", "--data-path", str(data), "--image-folder", str(images)]
    assert main([*args, "--output", str(tmp_path / "out"), "--shard-size", "2"]) == 0
    assert "wrote 3 samples (3 images) in 2 shard(s)" in capsys.readouterr().out
    assert main([*args, "--output", str(tmp_path / "out")]) != 0
    assert "exists and is not empty" in capsys.readouterr().err
    write_json(data, [record("lost", "<image>", "a", image="gone.png")])
    assert main([*args, "--output", str(tmp_path / "new")]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "sample 'lost'" in err and "Traceback" not in err


@pytest.mark.parametrize("overwrite", [False, True])
def test_output_that_is_a_file_is_one_clear_line(tmp_path, overwrite):
    data, images = make_data(tmp_path, RECORDS[:1])
    (tmp_path / "out").write_text("not a folder")
    with pytest.raises(DataError, match="is a file, not a dataset folder"):
        convert_llava(data, tmp_path / "out", image_folder=images, overwrite=overwrite)
    assert (tmp_path / "out").read_text() == "not a folder"


def test_unprepared_folder_is_one_clear_line(tmp_path, converted):
    _, _, shards = converted
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "shard-000000.tar").write_bytes((shards / "shard-000000.tar").read_bytes())
    with pytest.raises(DataError, match=r"not a prepared energon dataset \(no \.nv-meta folder\)"):
        energon_module(bare)
    with pytest.raises(DataError, match="no such energon dataset folder"):
        energon_module(tmp_path / "nowhere")


def test_missing_energon_is_one_clear_line(tmp_path):
    code = (
        "import sys; sys.modules['megatron'] = None\n"
        "from optica.data.energon import require_energon\n"
        "try:\n    require_energon()\nexcept Exception as err:\n    print(err)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == (
        "Energon shards need megatron-energon, which is not installed: "
        "pip install 'optica[energon]' (or megatron-energon>=7)"
    )
