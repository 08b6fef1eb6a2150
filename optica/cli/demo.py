"""``optica demo``: fine-tune the tiny LLaVA on synthetic shapes on this CPU, then show it answer.

It runs the ``llava_tiny`` recipe (the same task as ``optica finetune --factory llava_tiny``),
measures the held-out answer accuracy before and after (exact match of the greedy answer), draws
the loss curve, saves an optica checkpoint with its tokenizer, asks that checkpoint a few
questions through ``optica.generate``, and prints where everything is and what to try next.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

TARGET = 0.9


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    description = "fine-tune a tiny LLaVA on synthetic shapes on this CPU and show it answering"
    parser = subparsers.add_parser("demo", help=description, description=description)
    parser.add_argument("--dir", default="./optica_experiments", help="experiment directory")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps (recipe: 900)")
    parser.add_argument("--examples", type=int, default=4, help="example answers to show")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument(
        "--target", type=float, default=TARGET, help="accuracy to reach (exit 1 below it)"
    )
    parser.set_defaults(func=demo_command)


def demo_command(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(args.threads)
    result = run_demo(Path(args.dir), steps=args.steps, examples=args.examples)
    print(report(result))
    if result["after"] < args.target:
        print(
            f"accuracy {result['after']:.1%} is below the {args.target:.0%} target", file=sys.stderr
        )
        return 1
    return 0


def run_demo(exp_dir: Path, *, steps: int | None, examples: int) -> dict:
    """Trains, evaluates and saves; returns what :func:`report` prints."""
    from optica import run
    from optica.data.shapes import shapes_sample
    from optica.recipes import llava_tiny

    task = llava_tiny.finetune_recipe(name="demo", dir=str(exp_dir))
    if steps is not None:
        task.trainer.max_steps = task.trainer.val_check_interval = steps
    task.resume.resume_if_exists = False  # every demo is a fresh run
    task.trainer.enable_model_summary = False
    built = run.build(task)
    model, data, seed = built.keywords["model"], built.keywords["data"], built.keywords["trainer"]
    model.init_weights(seed.seed)  # the weights training would start from, to score them first
    before = held_out_accuracy(model, data)
    start = time.perf_counter()
    run_dir = built()
    seconds = time.perf_counter() - start
    (run_dir / "config.yaml").write_text(run.to_yaml(task))
    checkpoint = save_checkpoint(model, data, run_dir / "model")
    shapes_sample(data.shapes, "val", 0).image.save(run_dir / "example.png")
    return {
        "run_dir": run_dir,
        "before": before,
        "after": held_out_accuracy(model, data),
        "seconds": seconds,
        "steps": task.trainer.max_steps,
        "curve": plot_loss(run_dir),
        "checkpoint": checkpoint,
        "examples": ask_examples(checkpoint, data, examples),
    }


def held_out_accuracy(model, data) -> float:
    """Exact-match answer accuracy on the validation split (images the training never saw)."""
    from optica.eval.vqa import answer_accuracy

    data.setup()
    return answer_accuracy(
        model, (data.consume(b, training=False) for b in data.val_dataloader())
    ).value


def save_checkpoint(model, data, path: Path) -> Path:
    """An optica checkpoint that ``optica.load`` / ``optica generate`` use as is: weights, the
    shapes tokenizer, the image processor's settings and the prompt format of training."""
    from optica.checkpoint import save
    from optica.eval.generation_eval import write_shapes_config
    from optica.generate.loading import write_prompt_format

    with tempfile.TemporaryDirectory() as assets:
        data.tokenizer.save_pretrained(assets)
        (Path(assets) / "preprocessor_config.json").write_text(processor_json(data.image_processor))
        saved = save(model, path, carry_from=assets, overwrite=True)
    write_prompt_format(saved, "v1", system_prompt="")
    write_shapes_config(saved, data.shapes)  # optica eval --data shapes asks about such images
    return saved


def processor_json(processor) -> str:
    """Hugging Face's ``preprocessor_config.json`` spelling of an optica ``ImageProcessor``."""
    height, width = processor.size
    settings = {
        "size": {"height": height, "width": width},
        "image_mean": list(processor.mean),
        "image_std": list(processor.std),
        "resample": int(processor.resample),
        "rescale_factor": processor.rescale_factor,
    }
    return json.dumps(settings, indent=2) + "\n"


def ask_examples(checkpoint: Path, data, count: int) -> list[tuple[str, str, str, str]]:
    """(scene, question, reference, answer) for the first held-out images, answered by the saved
    checkpoint through ``optica.generate``."""
    import optica
    from optica.data.shapes import shapes_sample

    samples = [shapes_sample(data.shapes, "val", i) for i in range(count)]
    samples = [s for s in samples if s.qa]
    answers = optica.generate(
        str(checkpoint),
        [s.qa[0].question for s in samples],
        images=[[s.image] for s in samples],
        max_new_tokens=4,
    )
    return [
        (describe(s.objects), s.qa[0].question, s.qa[0].answer, answer)
        for s, answer in zip(samples, answers)
    ]


def describe(objects) -> str:
    return " and ".join(f"a {o.colour} {o.kind}" for o in objects) or "nothing"


def plot_loss(run_dir: Path) -> Path:
    """``loss.png``: the training loss per step, from ``metrics.csv``."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    with open(run_dir / "metrics.csv") as file:
        rows = [r for r in csv.DictReader(file) if r.get("reduced_train_loss")]
    figure, axes = pyplot.subplots(figsize=(6, 3.5))
    axes.plot([int(r["step"]) for r in rows], [float(r["reduced_train_loss"]) for r in rows])
    axes.set(xlabel="step", ylabel="reduced_train_loss", title="tiny LLaVA on shapes")
    axes.set_yscale("log")
    figure.tight_layout()
    path = run_dir / "loss.png"
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
    return path


def report(result: dict) -> str:
    run_dir, checkpoint = result["run_dir"], result["checkpoint"]
    lines = [
        "",
        f"trained {result['steps']} steps in {result['seconds']:.0f} s",
        f"held-out answer accuracy: {result['before']:.1%} before -> {result['after']:.1%} after",
        "",
        "example answers (held-out images):",
    ]
    for scene, question, reference, answer in result["examples"]:
        mark = "ok " if answer.strip() == reference else "BAD"
        lines.append(f"  [{mark}] {scene}: {question} -> {answer.strip()!r} (ref {reference!r})")
    lines += [
        "",
        f"run directory:   {run_dir}",
        f"loss curve:      {result['curve']}",
        f"TensorBoard:     tensorboard --logdir {run_dir}",
        f"checkpoint:      {checkpoint}",
        "",
        "next:",
        f"  optica generate --ckpt {checkpoint} --image {run_dir / 'example.png'} \\",
        "      --prompt 'What shape is the red object?' --prompt 'How many circles are there?'",
        f"  optica chat --ckpt {checkpoint} --image {run_dir / 'example.png'}",
        "  optica finetune --factory llava_tiny peft=lora      # LoRA adapters only",
        "  optica finetune --factory vit_tiny                  # a ViT classifier on shapes",
    ]
    return "\n".join(lines)
