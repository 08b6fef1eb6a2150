"""Training step: optica against transformers on the same model, batch and optimizer.

transformers builds each model from a config (random init) and saves it; optica imports that
checkpoint with ``import_ckpt``, so both sides hold identical weights. Each side then runs in a
subprocess of its own (so the peak RSS it reports is its own) and trains on the same batch with
AdamW, as each framework builds it by default (optica's ``build_optimizer``; transformers'
``Trainer`` default ``adamw_torch_fused``). The parent interleaves the steps (A B, B A, ...) so
both see the same machine load, checks that the first step's losses agree (identical weights and
batch must give the same loss), and reports the median step time after warm-up and the peak RSS
of the training phase (reset after loading), in fp32 and in bf16 autocast, with the ratios.

Each side's process starts as its users' would: optica's with the process defaults its command
and launchers give every training process (:mod:`optica.run.runtime`: CPU tensors of 2 MB or
more on transparent huge pages), transformers' without them. ``--reference-process-defaults``
gives transformers' process the same defaults, to show how much of the difference they make.
``--step-in-backward`` has optica update each parameter inside the backward pass and free its
gradient (``optim.step_in_backward``; same updates, lower peak); ``--compile`` compiles its layers.

Models: a scaled-down LLaVA-1.5 (CLIP-like tower, feature layer -2, class token dropped, 2-layer
GELU projector, Llama-like LM with LLaVA's 32064-token vocabulary; the tower frozen as in
LLaVA-1.5's fine-tune) and a ViT-B/16 with fewer layers. ``--tiny`` shrinks both so a test can
run the whole code path in seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import median, peak_rss_mib, reset_peak_rss, rss_mib, table
from optica.run.runtime import PROCESS_DEFAULTS, with_process_defaults

MODELS = ("llava", "vit")
PRECISIONS = ("fp32", "bf16")
SIDES = ("optica", "transformers")
LR = 1e-5
MARK = "@@bench "  # result lines from a worker; anything else it prints is passed through

# transformers config kwargs and batch sizes, per model and size.
SHAPES: dict[str, dict[str, dict[str, Any]]] = {
    "llava": {
        "full": {
            "vision": dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=6,
                           num_attention_heads=8, image_size=112, patch_size=14),
            "text": dict(vocab_size=32064, hidden_size=768, intermediate_size=2048,
                         num_hidden_layers=6, num_attention_heads=12, num_key_value_heads=12,
                         max_position_embeddings=512),
            "batch": 2, "text_tokens": 48, "image_token": 32000,
        },
        "tiny": {
            "vision": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, image_size=28, patch_size=14),
            "text": dict(vocab_size=256, hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=128),
            "batch": 2, "text_tokens": 16, "image_token": 255,
        },
    },
    "vit": {
        "full": {
            "model": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=4,
                          num_attention_heads=12, image_size=224, patch_size=16, num_labels=1000),
            "batch": 2,
        },
        "tiny": {
            "model": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, image_size=32, patch_size=8, num_labels=10),
            "batch": 2,
        },
    },
}  # fmt: skip


# --- the shared model and batch (parent) -----------------------------------------------------


def build_hf_model(model: str, shape: dict[str, Any]) -> torch.nn.Module:
    """transformers' model for ``shape``, randomly initialised from seed 0."""
    import transformers as tf

    torch.manual_seed(0)
    if model == "vit":
        config = tf.ViTConfig(**shape["model"], layer_norm_eps=1e-6)
        return tf.ViTForImageClassification(config)
    vision = tf.CLIPVisionConfig(**shape["vision"])
    patches = (vision.image_size // vision.patch_size) ** 2
    config = tf.LlavaConfig(
        vision_config=vision,
        text_config=tf.LlamaConfig(**shape["text"], rms_norm_eps=1e-5),
        image_token_index=shape["image_token"],
        image_seq_length=patches,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
    )
    return tf.LlavaForConditionalGeneration(config)


def make_batch(model: str, shape: dict[str, Any]) -> dict[str, dict[str, torch.Tensor]]:
    """The same samples in each side's spelling: ``{"optica": {...}, "transformers": {...}}``."""
    generator = torch.Generator().manual_seed(1)
    batch = shape["batch"]
    if model == "vit":
        size, classes = shape["model"]["image_size"], shape["model"]["num_labels"]
        images = torch.randn(batch, 3, size, size, generator=generator)
        labels = torch.randint(0, classes, (batch,), generator=generator)
        return {
            "optica": {"images": images, "labels": labels},
            "transformers": {"pixel_values": images, "labels": labels},
        }
    return _llava_batch(shape, generator)


def _llava_batch(shape: dict[str, Any], generator: torch.Generator) -> dict[str, dict]:
    """One image per row after a 4-token prefix; the first 8 text tokens are the (unlearned)
    prompt. transformers gets each image written out as ``patches`` <image> tokens."""
    vision, batch, length = shape["vision"], shape["batch"], shape["text_tokens"]
    patches = (vision["image_size"] // vision["patch_size"]) ** 2
    image_token, where = shape["image_token"], 4
    ids = torch.randint(2, image_token, (batch, length), generator=generator)
    ids[:, where] = -200
    labels = ids.clone()
    labels[:, :8] = -100
    images = torch.randn(batch, 3, vision["image_size"], vision["image_size"], generator=generator)
    image_ids = torch.full((batch, patches), image_token)
    hf_ids = torch.cat([ids[:, :where], image_ids, ids[:, where + 1 :]], dim=1)
    hf_labels = torch.cat([labels[:, :where], image_ids * 0 - 100, labels[:, where + 1 :]], dim=1)
    return {
        "optica": {"input_ids": ids, "images": images, "labels": labels},
        "transformers": {"input_ids": hf_ids, "pixel_values": images, "labels": hf_labels},
    }


def prepare(model: str, size: str, workdir: Path) -> None:
    """Writes ``hf/`` (transformers), ``optica/`` (its import) and ``batch.pt`` to ``workdir``."""
    from optica.checkpoint import import_ckpt

    shape = SHAPES[model][size]
    build_hf_model(model, shape).save_pretrained(workdir / "hf")
    import_ckpt(None, workdir / "hf", output_path=workdir / "optica")
    torch.save(make_batch(model, shape), workdir / "batch.pt")


# --- one side (worker subprocess) -------------------------------------------------------------


@dataclass(frozen=True)
class OpticaOptions:
    """What optica's side may turn on that transformers has no counterpart for.

    Args:
        compile: ``torch.compile`` each transformer layer.
        step_in_backward: ``optim.step_in_backward``: each parameter is updated as soon as its
            gradient is complete, which is then freed (the same updates, less memory).
    """

    compile: bool = False
    step_in_backward: bool = False

    def flags(self) -> list[str]:
        return [f"--{name.replace('_', '-')}" for name, on in vars(self).items() if on]

    def label(self) -> str:
        names = {"compile": "compiled", "step_in_backward": "optimizer in backward"}
        on = [names[name] for name, value in vars(self).items() if value]
        return f" ({', '.join(on)})" if on else ""


def optica_step(
    workdir: Path, model: str, options: OpticaOptions
) -> Callable[[dict], torch.Tensor]:
    """optica's step: ``optica.load``, the training module's loss, ``build_optimizer``."""
    from optica.checkpoint import load
    from optica.models.modules.transformer import TransformerLayer
    from optica.train.backward_step import step_in_backward
    from optica.train.module import TrainingModule
    from optica.train.optim import OptimizerConfig, build_optimizer
    from optica.train.peft import freeze

    net = load(workdir / "optica").train()
    if model == "llava":
        freeze(net, vision_model=True)
    if options.compile:
        for layer in (m for m in net.modules() if isinstance(m, TransformerLayer)):
            layer.compile()
    module = TrainingModule(net, optim=OptimizerConfig(name="adamw", lr=LR, weight_decay=0.0))
    optimizer = build_optimizer(module.optim, net)
    if options.step_in_backward:
        step_in_backward(optimizer)
    return _step_fn(module.loss, optimizer)


def transformers_step(workdir: Path, model: str) -> Callable[[dict], torch.Tensor]:
    """transformers' step: ``from_pretrained``, the model's own loss, fused AdamW (Trainer's
    default ``adamw_torch_fused``)."""
    import transformers as tf

    cls = tf.ViTForImageClassification if model == "vit" else tf.LlavaForConditionalGeneration
    net = cls.from_pretrained(workdir / "hf").train()
    if model == "llava":
        net.model.vision_tower.requires_grad_(False)
    trainable = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=LR, weight_decay=0.0, fused=True)
    return _step_fn(lambda batch: net(**batch).loss, optimizer)


def _step_fn(loss_of: Callable, optimizer: torch.optim.Optimizer) -> Callable:
    def step(batch: dict, autocast: Any) -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = loss_of(batch)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step


def serve(args: argparse.Namespace) -> None:
    """A worker: loads its side, then runs one step per ``step`` line on stdin and answers with
    a result line; ``stop`` answers with its memory readings."""
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    workdir = Path(args.dir)
    import_side(args.side)
    libraries = rss_mib()
    if args.side == "optica":
        options = OpticaOptions(compile=args.compile, step_in_backward=args.step_in_backward)
        step = optica_step(workdir, args.model, options)
    else:
        step = transformers_step(workdir, args.model)
    batch = torch.load(workdir / "batch.pt")[args.side]
    bf16 = torch.autocast("cpu", dtype=torch.bfloat16)
    autocast = bf16 if args.precision == "bf16" else nullcontext()
    loaded = rss_mib()
    reset_peak_rss()
    _answer({"ready": True})
    for line in sys.stdin:
        if line.strip() != "step":
            break
        start = time.perf_counter()
        loss = float(step(batch, autocast))
        _answer({"seconds": time.perf_counter() - start, "loss": loss})
    _answer(
        {"libraries_rss_mib": libraries, "loaded_rss_mib": loaded, "peak_rss_mib": peak_rss_mib()}
    )


def import_side(side: str) -> None:
    """Imports everything a side's step uses, so the RSS measured next is the libraries' alone
    (optica's stack includes Lightning, transformers' its model code)."""
    if side == "optica":
        import optica.checkpoint
        import optica.train.module
        import optica.train.peft  # noqa: F401
    else:
        import transformers

        _ = transformers.LlavaForConditionalGeneration, transformers.ViTForImageClassification


def _answer(payload: dict) -> None:
    print(MARK + json.dumps(payload), flush=True)


class Worker:
    """The parent's handle on one side's subprocess."""

    def __init__(
        self,
        side: str,
        model: str,
        workdir: Path,
        precision: str,
        options: OpticaOptions,
        threads: int,
        reference_defaults: bool = False,
    ):
        command = [sys.executable, "-m", "benchmarks.train_step", "worker", "--side", side]
        command += ["--model", model, "--dir", str(workdir), "--precision", precision]
        command += ["--threads", str(threads)]
        command += options.flags() if side == "optica" else []
        self.side = side
        root = Path(__file__).resolve().parent.parent
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        if side == "optica" or reference_defaults:  # as optica starts its training processes
            env = with_process_defaults(env)
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=root, env=env
        )
        self._read()  # ready

    def step(self) -> dict:
        return self._send("step")

    def finish(self) -> dict:
        result = self._send("stop")
        self.process.wait(timeout=60)
        return result

    def _send(self, line: str) -> dict:
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        return self._read()

    def _read(self) -> dict:
        for line in self.process.stdout:
            if line.startswith(MARK):
                return json.loads(line[len(MARK) :])
            sys.stderr.write(line)
        raise RuntimeError(f"the {self.side} worker exited (code {self.process.wait()})")


# --- the comparison (parent) -------------------------------------------------------------------


def compare(
    model: str,
    workdir: Path,
    precision: str,
    *,
    steps: int,
    warmup: int,
    options: OpticaOptions = OpticaOptions(),
    threads: int = 1,
    reference_defaults: bool = False,
) -> dict[str, Any]:
    """Runs both sides interleaved; returns times, losses and memory per side."""
    workers = [
        Worker(side, model, workdir, precision, options, threads, reference_defaults)
        for side in SIDES
    ]
    times: dict[str, list[float]] = {side: [] for side in SIDES}
    first_loss: dict[str, float] = {}
    try:
        for index in range(warmup + steps):
            for worker in workers if index % 2 == 0 else workers[::-1]:
                result = worker.step()
                first_loss.setdefault(worker.side, result["loss"])
                if index >= warmup:
                    times[worker.side].append(result["seconds"])
        memory = {w.side: w.finish() for w in workers}
    finally:
        for worker in workers:
            worker.process.kill()
    return _summary(model, precision, times, first_loss, memory, options)


def _summary(model, precision, times, first_loss, memory, options) -> dict[str, Any]:
    step = {side: median(times[side]) for side in SIDES}
    # the fastest step: on a shared machine noise only ever adds time
    best = {side: min(times[side], default=0.0) for side in SIDES}
    peak = {side: memory[side]["peak_rss_mib"] for side in SIDES}
    # what the model and its training add on top of the imported libraries
    own = {side: peak[side] - memory[side]["libraries_rss_mib"] for side in SIDES}
    tolerance = 1e-4 if precision == "fp32" else 2e-2
    difference = abs(first_loss["optica"] - first_loss["transformers"])
    return {
        "model": model,
        "precision": precision,
        "optica_options": options.label(),
        "step_s": step,
        "step_ratio": step["optica"] / step["transformers"],
        "best_s": best,
        "best_ratio": best["optica"] / best["transformers"],
        "peak_rss_mib": peak,
        "rss_ratio": peak["optica"] / peak["transformers"],
        "training_mib": own,
        "training_ratio": own["optica"] / own["transformers"],
        "loaded_rss_mib": {side: memory[side]["loaded_rss_mib"] for side in SIDES},
        "first_loss": first_loss,
        "loss_match": difference <= tolerance * max(1.0, abs(first_loss["transformers"])),
        "times_s": times,
    }


def run(
    models: tuple[str, ...] = MODELS,
    precisions: tuple[str, ...] = PRECISIONS,
    *,
    tiny: bool = False,
    steps: int = 5,
    warmup: int = 2,
    options: OpticaOptions = OpticaOptions(),
    threads: int = 1,
    reference_defaults: bool = False,
) -> dict[str, Any]:
    """Every (model, precision) comparison; ``{"rows": [summary, ...], "shapes": {...}}``.

    ``threads`` per side: 1 by default, because on a shared machine OpenMP threads spin while
    their partner waits for a core, and the same step then takes 1x to 10x its time.
    """
    size = "tiny" if tiny else "full"
    rows = []
    for model in models:
        with tempfile.TemporaryDirectory(prefix=f"optica-bench-{model}-") as tmp:
            prepare(model, size, Path(tmp))
            for precision in precisions:
                print(f"train_step: {model} {precision} ...", file=sys.stderr, flush=True)
                rows.append(
                    compare(model, Path(tmp), precision, steps=steps, warmup=warmup,
                            options=options, threads=threads,
                            reference_defaults=reference_defaults)
                )  # fmt: skip
    shapes = {m: SHAPES[m][size] for m in models}
    return {"rows": rows, "shapes": shapes, "size": size, "steps": steps, "warmup": warmup,
            "threads": threads, "reference_defaults": reference_defaults}  # fmt: skip


def report(result: dict[str, Any]) -> str:
    """The comparison as a table (times in seconds, memory in MiB, ratios optica / reference).

    "s/step" is the median of the timed steps, "best" the fastest one (noise from other jobs
    only adds time). "peak" is the process's peak RSS while training; "training" is that peak
    less the RSS of the imported libraries (what the model, its gradients, optimizer states and
    activations add).
    """
    headers = [
        "model",
        "precision",
        "s/step o / t",
        "time ratio",
        "best s/step o / t",
        "best ratio",
        "peak MiB o / t",
        "peak ratio",
        "training MiB o / t",
        "training ratio",
        "first loss o / t",
    ]
    rows = [_row(r) for r in result["rows"]]
    return table(headers, rows) + "\n\n" + describe_shapes(result)


def _pair(values: dict[str, float], spec: str) -> str:
    return f"{values['optica']:{spec}} / {values['transformers']:{spec}}"


def _row(r: dict[str, Any]) -> list[Any]:
    losses = _pair(r["first_loss"], ".5f") + ("" if r["loss_match"] else " MISMATCH")
    return [
        r["model"] + r["optica_options"],
        r["precision"],
        _pair(r["step_s"], ".3f"),
        f"{r['step_ratio']:.2f}x",
        _pair(r["best_s"], ".3f"),
        f"{r['best_ratio']:.2f}x",
        _pair(r["peak_rss_mib"], ".0f"),
        f"{r['rss_ratio']:.2f}x",
        _pair(r["training_mib"], ".0f"),
        f"{r['training_ratio']:.2f}x",
        losses,
    ]


def describe_shapes(result: dict[str, Any]) -> str:
    """The shapes and step counts behind the table, for RESULTS.md."""
    lines = [f"Shapes ({result['size']}), steps: {result['steps']} timed after "
             f"{result['warmup']} warm-up, interleaved, {result.get('threads', 1)} torch "
             "thread(s) per side;"]  # fmt: skip
    defaults = " ".join(f"{k}={v}" for k, v in PROCESS_DEFAULTS.items())
    who = "both sides" if result.get("reference_defaults") else "optica's side only"
    lines[0] += f" optica's process defaults ({defaults}) given to {who}:"
    for model, shape in result["shapes"].items():
        lines.append(f"- {model}: " + json.dumps(shape, sort_keys=True))
    return "\n".join(lines)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run train_step")
    parser.add_argument("role", nargs="?", default="compare", choices=("compare", "worker"))
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    parser.add_argument("--tiny", action="store_true", help="tiny models (tests)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per side")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--compile", action="store_true", help="torch.compile optica's layers")
    parser.add_argument(
        "--step-in-backward",
        action="store_true",
        help="optica steps its optimizer inside the backward pass (optim.step_in_backward)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads per side")
    parser.add_argument(
        "--reference-process-defaults",
        action="store_true",
        help="start transformers' process with optica's process defaults too (optica.run.runtime)",
    )
    # worker-only
    parser.add_argument("--side", choices=SIDES)
    parser.add_argument("--model", choices=MODELS)
    parser.add_argument("--dir")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    args = parse(argv)
    if args.role == "worker":
        serve(args)
        return None
    options = OpticaOptions(compile=args.compile, step_in_backward=args.step_in_backward)
    result = run(tuple(args.models), tuple(args.precisions), tiny=args.tiny, steps=args.steps,
                 warmup=args.warmup, threads=args.threads, options=options,
                 reference_defaults=args.reference_process_defaults)  # fmt: skip
    print(report(result))
    return result


if __name__ == "__main__":
    main()
