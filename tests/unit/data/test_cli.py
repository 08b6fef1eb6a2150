"""``optica data inspect`` / ``stats`` through the parser that ``add_parser`` builds."""

import argparse
import json

import pytest

from optica.cli import data as data_cli
from optica.data.errors import DataConfigError
from tests.unit.data.helpers import llama_like_tokenizer, record, solid_image, write_json


@pytest.fixture
def setup(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    solid_image(images / "red.png")
    tokenizer_dir = tmp_path / "tok"
    llama_like_tokenizer().save_pretrained(tokenizer_dir)
    records = [
        record("one", "what is it? <image>", "a cat", image="red.png"),
        record("two", "hello there", "a dog " * 30),
        record("bad", "<image>", "a cat", image="missing.png"),
        {"id": "role", "conversations": [{"from": "bot", "value": "x"}]},
    ]
    return write_json(tmp_path / "d.json", records), images, tokenizer_dir


def run(capsys, *argv):
    parser = argparse.ArgumentParser(prog="optica")
    data_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    assert args.func(args) == 0
    return capsys.readouterr().out


def test_inspect_prints_one_json_object_per_sample(setup, capsys):
    path, images, tokenizer = setup
    out = run(
        capsys,
        "data",
        "inspect",
        "--data-path",
        str(path),
        "--image-folder",
        str(images),
        "--tokenizer",
        str(tokenizer),
        "--conv-template",
        "v1",
        "--system-prompt",
        "",
        "--limit",
        "2",
        "--image-token-len",
        "4",
    )
    first, second = (json.loads(line) for line in out.splitlines())
    assert first["id"] == "one" and -200 in first["input_ids"] and -100 in first["labels"]
    assert first["text"] == "<s> USER: <image>\nwhat is it? ASSISTANT:[[ a cat</s>]]"
    assert first["images"] == 1 and first["length"] == len(first["input_ids"]) + 3
    assert second["text"].endswith("ASSISTANT:[[" + " a dog" * 30 + "</s>]]")


def test_inspect_reports_bad_samples_and_checks_images(setup, capsys):
    path, images, tokenizer = setup
    out = run(
        capsys,
        "data",
        "inspect",
        "--data-path",
        str(path),
        "--image-folder",
        str(images),
        "--tokenizer",
        str(tokenizer / "tokenizer.json"),
        "--start",
        "2",
        "--check-images",
    )
    missing, role = (json.loads(line) for line in out.splitlines())
    assert missing["id"] == "bad" and "image not found" in missing["error"]
    assert "unknown role 'bot'" in role["error"]


def test_stats_counts_everything(setup, capsys):
    path, images, tokenizer = setup
    out = run(
        capsys,
        "data",
        "stats",
        "--data-path",
        str(path),
        "--image-folder",
        str(images),
        "--tokenizer",
        str(tokenizer),
        "--seq-length",
        "40",
        "--image-token-len",
        "4",
        "--check-images",
        "--system-prompt",
        "",
    )
    stats = json.loads(out)
    assert stats["samples"] == 4 and stats["usable"] == 2
    assert stats["skipped"] == {"missing_image": 1, "unknown_role": 1}
    assert stats["truncated"] == 1 and stats["text_only"] == 1
    assert stats["images_per_sample"] == {"0": 1, "1": 1}
    assert sum(stats["length"].values()) == 2 and stats["tokenization_differs"] == 0


def test_unknown_template_and_tokenizer_are_one_line_errors(setup, capsys):
    path, _, tokenizer = setup
    with pytest.raises(DataConfigError, match="did you mean 'llama_2'"):
        run(
            capsys,
            "data",
            "inspect",
            "--data-path",
            str(path),
            "--tokenizer",
            str(tokenizer),
            "--conv-template",
            "llama2",
        )
    with pytest.raises(DataConfigError, match="cannot load tokenizer"):
        run(
            capsys, "data", "stats", "--data-path", str(path), "--tokenizer", str(path.parent / "x")
        )


def test_data_command_is_wired_into_the_optica_cli(setup, capsys):
    from optica.cli.main import main

    path, images, tokenizer = setup
    code = main(
        [
            "data",
            "stats",
            "--data-path",
            str(path),
            "--tokenizer",
            str(tokenizer),
            "--image-folder",
            str(images),
            "--seq-length",
            "64",
            "--image-token-len",
            "4",
        ]
    )
    assert code == 0
    assert json.loads(capsys.readouterr().out)["samples"] == 4


@pytest.mark.parametrize("start", ["-1", "4"])
def test_inspect_start_out_of_range_is_one_line(setup, capsys, start):
    path, _, tokenizer = setup
    args = ["data", "inspect", "--data-path", str(path), "--tokenizer", str(tokenizer)]
    with pytest.raises(DataConfigError, match=r"--start .*4 samples"):
        run(capsys, *args, "--start", start)
