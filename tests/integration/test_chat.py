"""Generation from a real training run: a tiny LLaVA fine-tuned with LoRA on synthetic shapes for
a few steps (config.yaml and a Lightning checkpoint, as ``optica finetune`` writes them), then
asked through ``optica generate``, ``optica chat`` (driven through its stdin) and ``optica eval``;
adapters applied and merged give the same answers.

A few CPU steps teach the model the answer format, not the answers (the demo trains for minutes
to reach its accuracy), so these tests check the mechanics, not the accuracy.
"""

import io
import json
import sys

import pytest
import torch

from optica import run
from optica.cli.main import main
from optica.data.shapes import ShapesConfig, shapes_sample
from optica.data.synthetic import ShapesDataModule
from optica.generate import Generator
from optica.models import LlamaConfigTiny, LlavaConfigTiny, LlavaModel
from optica.run.context import running
from optica.train.api import finetune
from optica.train.exp_manager import CheckpointConfig, ExpManager, ResumeConfig
from optica.train.optim import OptimizerConfig
from optica.train.peft import LoRA, LoRALinear
from optica.train.trainer import TrainerConfig

QUESTION = "What colour is the square?"


def lora_task(exp_dir: str, vocab_size: int) -> run.Partial:
    language = run.Config(LlamaConfigTiny, hidden_size=96, ffn_hidden_size=256,
                          vocab_size=vocab_size)  # fmt: skip
    return run.Partial(
        finetune,
        model=run.Config(LlavaModel, config=run.Config(
            LlavaConfigTiny, image_token_id=None, language_transformer_config=language)),
        data=run.Config(ShapesDataModule, num_train_samples=64, num_val_samples=0,
                        micro_batch_size=8, global_batch_size=8),
        trainer=run.Config(TrainerConfig, max_steps=3, log_every_n_steps=1,
                           enable_progress_bar=False, enable_model_summary=False),
        log=run.Config(ExpManager, exp_dir=exp_dir, name="shapes", version="v",
                       tensorboard=False, ckpt=run.Config(CheckpointConfig, monitor=None)),
        optim=run.Config(OptimizerConfig, lr=1e-2),
        resume=run.Config(ResumeConfig, resume_if_exists=False),
        peft=run.Config(LoRA, dim=4, alpha=8),
    )  # fmt: skip


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    exp_dir = tmp_path_factory.mktemp("exp")
    vocab = len(ShapesDataModule(num_train_samples=1, num_val_samples=0).tokenizer)
    task = lora_task(str(exp_dir), vocab)
    with running(task):
        return run.build(task)()


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    path = tmp_path_factory.mktemp("images") / "shape.png"
    shapes_sample(ShapesConfig(), "val", 2).image.save(path)  # a yellow square
    return path


def test_lora_run_generates_with_adapters_and_merged(run_dir, image):
    direct = Generator.from_source(run_dir)
    adapters = [m for m in direct.model.module.modules() if isinstance(m, LoRALinear)]
    assert adapters and any(bool(m.lora_b.weight.abs().sum() > 0) for m in adapters)
    merged = Generator.from_source(run_dir, merge_lora=True)
    assert not any(isinstance(m, LoRALinear) for m in merged.model.module.modules())
    questions = [QUESTION, "How many squares are there?"]
    answers = direct.generate(questions, [image, image], max_new_tokens=4)
    assert answers == merged.generate(questions, [image, image], max_new_tokens=4)
    assert len(answers) == 2 and all(isinstance(answer, str) for answer in answers)


def test_optica_generate_cli_prints_the_answer(run_dir, image, capsys):
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    argv = ["generate", "--ckpt", str(ckpt), "--image", str(image), "--prompt", QUESTION,
            "--max-new-tokens", "4"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out.strip()
    expected = Generator.from_source(run_dir).generate(QUESTION, image, max_new_tokens=4)
    assert printed == expected[0]


def test_chat_through_stdin(run_dir, image, tmp_path, monkeypatch, capsys):
    broken = tmp_path / "broken.png"
    broken.write_text("not a picture")
    lines = [f"/image {image}", QUESTION, "How many squares are there?", "/reset",
             f"/image {broken}", "/nonsense", "/exit", "never read"]  # fmt: skip
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(lines) + "\n"))
    assert main(["chat", "--ckpt", str(run_dir), "--max-new-tokens", "4"]) == 0
    out = capsys.readouterr().out.splitlines()
    generator = Generator.from_source(run_dir)
    first = generator.generate(QUESTION, image, max_new_tokens=4)[0]
    assert out[0] == f"(image attached: {image})"
    assert out[1] == first  # streamed to the terminal, token by token
    assert out[3] == "(conversation reset)"
    assert out[4].startswith("error: image") and "broken.png does not open" in out[4]
    assert out[5].startswith("unknown command /nonsense")
    assert len(out) == 6  # /exit ended the chat


def test_eval_writes_json_and_prints_a_table(run_dir, tmp_path, capsys):
    output = tmp_path / "results.json"
    argv = ["eval", "--ckpt", str(run_dir), "--data", "shapes:4", "--output", str(output)]
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split() == ["kind", "questions", "exact_match", "accuracy"]
    results = json.loads(output.read_text())
    assert results["scores"]["all"]["questions"] == len(results["results"]) >= 4
    first = results["results"][0]
    assert set(first) >= {"question", "reference", "answer", "exact_match", "correct"}
    assert (
        torch.tensor([r["exact_match"] for r in results["results"]]).float().mean().item()
        == (results["scores"]["all"]["exact_match"])
    )
