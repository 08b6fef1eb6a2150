"""``optica demo``, shortened, and what users do with its model right after: it trains, scores
before and after, plots, saves a checkpoint, and that checkpoint answers held-out shapes questions
through ``optica generate``, ``optica chat`` (driven through its stdin) and ``optica eval``.

Chance is about 1/4 for colour, 1/3 for shape and count questions; 250 steps give ~70% (the full
demo's 900 reach ~95%), so the bars below sit well above chance and well below what is reached.
"""

import io
import json
import re
import sys

import pytest
import torch

import optica
from optica.cli.main import main
from optica.data.shapes import shapes_sample
from optica.eval.generation_eval import shapes_config_of

STEPS = 250
HELD_OUT = range(12)  # validation images the training never saw


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """(printed report, run directory) of one shortened demo."""
    root = tmp_path_factory.mktemp("demo")
    threads = torch.get_num_threads()
    capture = io.StringIO()
    stdout, sys.stdout = sys.stdout, capture
    try:
        code = main(["demo", "--dir", str(root), "--steps", str(STEPS), "--examples", "3",
                     "--target", "0.0"])  # fmt: skip
    finally:
        sys.stdout = stdout
        torch.set_num_threads(threads)
    assert code == 0
    (run_dir,) = (root / "demo").iterdir()
    return capture.getvalue(), run_dir


@pytest.fixture(scope="module")
def questions(demo, tmp_path_factory):
    """(image path, question, reference answer) of the first question of held-out images drawn
    like the demo's training images."""
    folder = tmp_path_factory.mktemp("held_out")
    config = shapes_config_of(demo[1] / "model")
    found = []
    for index in HELD_OUT:
        sample = shapes_sample(config, "val", index)
        path = folder / f"{index}.png"
        sample.image.save(path)
        found.append((path, sample.qa[0].question, sample.qa[0].answer))
    return found


def _correct(answers, questions) -> int:
    return sum(answer.strip().rstrip(".").lower() == ref for answer, (_, _, ref) in
               zip(answers, questions, strict=True))  # fmt: skip


@pytest.mark.slow
def test_demo_learns_and_leaves_its_files(demo):
    out, run_dir = demo
    before, after = map(float, re.search(r"([\d.]+)% before -> ([\d.]+)% after", out).groups())
    assert after >= 50.0 and after > before + 30
    for name in ("loss.png", "metrics.csv", "config.yaml", "example.png"):
        assert (run_dir / name).is_file(), name
    assert f"tensorboard --logdir {run_dir}" in out and str(run_dir / "loss.png") in out
    assert len(re.findall(r"\[(ok |BAD)\]", out)) == 3  # answers from the saved checkpoint
    model = optica.load(run_dir / "model")
    assert not model.training and model.config.language_transformer_config.vocab_size > 0


@pytest.mark.slow
def test_demo_model_answers_through_optica_generate(demo, questions, capsys):
    answers = []
    for image, question, _ in questions:
        argv = ["generate", "--ckpt", str(demo[1] / "model"), "--image", str(image),
                "--prompt", question, "--max-new-tokens", "4"]  # fmt: skip
        assert main(argv) == 0
        answers.append(capsys.readouterr().out.strip())
    assert _correct(answers, questions) >= len(questions) // 2, answers


@pytest.mark.slow
def test_demo_model_answers_in_optica_chat(demo, questions, monkeypatch, capsys):
    lines = []
    for image, question, _ in questions:
        lines += [f"/image {image}", question, "/reset"]
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join([*lines, "/exit"]) + "\n"))
    assert main(["chat", "--ckpt", str(demo[1] / "model"), "--max-new-tokens", "4"]) == 0
    out = capsys.readouterr().out.splitlines()
    answers = [out[i + 1] for i, line in enumerate(out) if line.startswith("(image attached")]
    assert len(answers) == len(questions)
    assert _correct(answers, questions) >= len(questions) // 2, answers


@pytest.mark.slow
def test_optica_eval_scores_the_demo_model_on_its_kind_of_images(demo, tmp_path, capsys):
    output = tmp_path / "eval.json"
    argv = ["eval", "--ckpt", str(demo[1] / "model"), "--data", "shapes:20",
            "--output", str(output)]  # fmt: skip
    assert main(argv) == 0
    scores = json.loads(output.read_text())["scores"]
    assert scores["all"]["questions"] >= 20 and scores["all"]["accuracy"] >= 0.5, scores
