"""A real LoRA run of a tiny LLaVA on synthetic shapes, started from an optica checkpoint
(``resume.restore_config``): beside each Lightning checkpoint it writes an adapters folder (the
small artifact), those adapters loaded onto the base give the run's model, and
``optica export RUN --merge-lora`` writes a Hugging Face checkpoint whose logits equal the model
with adapters applied (optica's import and transformers' ``LlavaForConditionalGeneration``).
"""

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import LlavaForConditionalGeneration

import optica
from optica import run
from optica.checkpoint import save
from optica.cli.main import main
from optica.data.shapes import ShapesConfig, shapes_sample
from optica.data.synthetic import ShapesDataModule
from optica.generate import Generator
from optica.generate.loading import load_source, write_prompt_format
from optica.models import IMAGE_TOKEN_INDEX, LlamaConfigTiny, LlavaConfigTiny, LlavaModel, load_hf
from optica.run.context import running
from optica.train.adapters import ADAPTER_CONFIG, ADAPTER_WEIGHTS
from optica.train.api import finetune
from optica.train.exp_manager import CheckpointConfig, ExpManager, RestoreConfig, ResumeConfig
from optica.train.optim import OptimizerConfig
from optica.train.peft import LoRA, LoRALinear
from optica.train.trainer import TrainerConfig

IMG = IMAGE_TOKEN_INDEX
INPUT_IDS = torch.tensor([[IMG, 5, 6, 7, 8, 9], [3, 4, IMG, 10, 11, 12]])


def model_config(vocab_size: int) -> run.Config:
    language = run.Config(LlamaConfigTiny, hidden_size=96, ffn_hidden_size=256,
                          vocab_size=vocab_size)  # fmt: skip
    # image_token_id: the <image> id a Hugging Face export needs (the last row, as the default)
    return run.Config(LlavaConfigTiny, image_token_id=vocab_size - 1,
                      language_transformer_config=language)  # fmt: skip


def lora_task(exp_dir: str, base: str, vocab_size: int) -> run.Partial:
    return run.Partial(
        finetune,
        model=run.Config(LlavaModel, config=model_config(vocab_size)),
        data=run.Config(ShapesDataModule, num_train_samples=48, num_val_samples=0,
                        micro_batch_size=8, global_batch_size=8),
        trainer=run.Config(TrainerConfig, max_steps=3, log_every_n_steps=1,
                           enable_progress_bar=False, enable_model_summary=False),
        log=run.Config(ExpManager, exp_dir=exp_dir, name="shapes", version="v",
                       tensorboard=False, ckpt=run.Config(CheckpointConfig, monitor=None)),
        optim=run.Config(OptimizerConfig, lr=1e-2),
        resume=run.Config(ResumeConfig, resume_if_exists=False,
                          restore_config=run.Config(RestoreConfig, path=base)),
        peft=run.Config(LoRA, dim=4, alpha=8, freeze_vision_model=True),
    )  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(base checkpoint dir, run dir) of a 3-step LoRA run from that base; the base carries the
    shapes tokenizer, prompt format and image settings, as an imported checkpoint would."""
    root = tmp_path_factory.mktemp("lora")
    tokenizer = ShapesDataModule(num_train_samples=1, num_val_samples=0).tokenizer
    vocab = len(tokenizer)
    base = save(LlavaModel(run.build(model_config(vocab))).init_weights(0), root / "base")
    tokenizer.save_pretrained(base)
    write_prompt_format(base, "v1", "")
    processor = {"size": {"height": 32, "width": 32}, "image_mean": [0.5] * 3,
                 "image_std": [0.5] * 3}  # fmt: skip
    (base / "preprocessor_config.json").write_text(json.dumps(processor))
    task = lora_task(str(root / "exp"), str(base), vocab)
    with running(task):
        return base, run.build(task)()


def logits(model: torch.nn.Module) -> torch.Tensor:
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return model(input_ids=INPUT_IDS, images=pixels)


def test_each_checkpoint_has_an_adapters_folder_with_the_lora_config(trained):
    base, run_dir = trained
    checkpoints = run_dir / "checkpoints"
    saved = sorted(p.name.removesuffix(".ckpt") for p in checkpoints.glob("*.ckpt"))
    folders = sorted(p.name.removesuffix(".adapters") for p in checkpoints.glob("*.adapters"))
    assert saved == folders and "last" in saved
    folder = checkpoints / "last.adapters"
    config = json.loads((folder / ADAPTER_CONFIG).read_text())
    assert config["base_model"] == str(base.resolve())
    peft = config["peft"]
    assert (peft["kind"], peft["dim"], peft["alpha"], peft["freeze_vision_model"]) == (
        "lora", 4, 8, True)  # fmt: skip
    assert len(config["adapted_modules"]) == 8  # 2 layers x (qkv, proj, fc1, fc2)
    tensors = load_file(folder / ADAPTER_WEIGHTS)
    lora = [k for k in tensors if ".lora_" in k]
    assert len(lora) == 16 and all(k.startswith("language_model.") for k in lora)
    rest = {k.split(".")[0] for k in tensors if ".lora_" not in k}
    assert rest == {"vision_projection"}  # LoRA's unfrozen part; the towers stay frozen
    assert any(tensors[k].abs().sum() > 0 for k in lora if ".lora_b." in k)  # really trained
    full = (checkpoints / "last.ckpt").stat().st_size
    small = (folder / ADAPTER_WEIGHTS).stat().st_size
    print(f"[adapters] tiny LLaVA: adapters {small} B vs full checkpoint {full} B "
          f"({small / full:.1%})")  # fmt: skip
    assert small < full / 4


def test_adapters_on_the_base_give_the_runs_model(trained):
    base, run_dir = trained
    from_run = load_source(run_dir).model
    on_base = optica.load(base, adapters=run_dir / "checkpoints" / "last.adapters")
    assert any(isinstance(m, LoRALinear) for m in on_base.modules())
    torch.testing.assert_close(logits(on_base), logits(from_run), atol=0, rtol=0)
    assert not torch.equal(logits(optica.load(base)), logits(from_run))  # adapters matter


def test_optica_generate_applies_an_adapters_folder_to_the_base(trained, tmp_path, capsys):
    base, run_dir = trained
    image = tmp_path / "shape.png"
    shapes_sample(ShapesConfig(), "val", 2).image.save(image)
    question = "What colour is the square?"
    expected = Generator.from_source(run_dir).generate(question, image, max_new_tokens=4)[0]
    for merge in ([], ["--merge-lora"]):
        argv = ["generate", "--ckpt", str(base), "--image", str(image), "--prompt", question,
                "--adapters", str(run_dir / "checkpoints" / "last.adapters"),
                "--max-new-tokens", "4", *merge]  # fmt: skip
        assert main(argv) == 0
        assert capsys.readouterr().out.strip() == expected


def test_export_refuses_adapters_without_merge_lora(trained, capsys):
    _, run_dir = trained
    assert main(["export", str(run_dir)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "holds LoRA adapters" in err[0] and "--merge-lora" in err[0], err


def test_merged_export_equals_the_model_with_adapters(trained, tmp_path, capsys):
    _, run_dir = trained
    out = tmp_path / "hf"
    assert main(["export", str(run_dir), "--merge-lora", "--output", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    expected = logits(load_source(run_dir).model)
    merged = load_hf(out)
    assert not any(isinstance(m, LoRALinear) for m in merged.modules())
    optica_diff = (logits(merged) - expected).abs().max().item()
    hf = LlavaForConditionalGeneration.from_pretrained(out).eval()
    hf_diff = hf_logit_diff(hf, merged.config, expected)
    print(f"[lora export] merged vs adapters: optica import {optica_diff:.1e}, "
          f"transformers {hf_diff:.1e}")  # fmt: skip
    assert optica_diff <= 1e-5 and hf_diff <= 1e-5


def hf_logit_diff(hf: torch.nn.Module, config, expected: torch.Tensor) -> float:
    """transformers' logits on :data:`INPUT_IDS` with each -200 written out as the image's
    tokens (same length per row here, so no padding), against ``expected``."""
    rows = []
    for row in INPUT_IDS.tolist():
        image = [config.image_token_id] * config.num_image_tokens
        rows.append([token for t in row for token in (image if t == IMG else [t])])
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        theirs = hf(input_ids=torch.tensor(rows), pixel_values=pixels).logits
    assert theirs.shape == expected.shape
    return (theirs - expected).abs().max().item()
