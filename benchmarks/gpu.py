"""Training steps on one GPU (an H200-class part): LLaVA-1.5-7B LoRA and full fine-tune, and
ViT-B/16 images/s, each with model TFLOPS and MFU. Installs nothing; prints a table.

    python -m benchmarks.run gpu                # on the GPU machine
    python -m benchmarks.run gpu --tiny         # tiny models on the CPU: the code path only

Every case runs optica's own training pieces — the lazy model materialised on the device
(``init_weights``), LoRA from ``optica.train.peft``, the training module's loss (logits only at
learned positions), ``build_optimizer`` (fused AdamW) and activation checkpointing /
``torch.compile`` from the parallel plans' building blocks — on random weights (speed does not
depend on their values). FLOPs and MFU come from ``optica.train.throughput`` (the autoconfig
formulas); the peak is the GPU preset's dense bf16 figure (H200: 989 TFLOPS).

What fits one 141 GB GPU without sharding: LoRA keeps the 7B base in bf16 (14 GB) with bf16
adapters; the full fine-tune holds bf16 weights, gradients and fused-AdamW states (56 GB) — the
fp32 master copy of mixed precision (112 GB with its states) would need FSDP over several GPUs.
``--step-in-backward`` applies each update inside the backward pass and frees its gradient at
once (``optim.step_in_backward``): up to the 14 GB of bf16 gradients less at the full fine-tune's
peak. LLaVA-1.5's CLIP tower stays frozen in both, as in its fine-tune. ViT-B/16 trains in bf16
autocast over fp32 weights (mixed precision).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from benchmarks.common import peak_rss_mib, reset_peak_rss, table

IMAGE = -200


@dataclass(frozen=True)
class Case:
    """One benchmarked training step.

    Args:
        name: Row label.
        method: ``lora`` or ``full`` (LLaVA), ``vit``.
        batch: Micro-batch size.
        seq_length: LLaVA tokens per sample, the image's included (ignored for ViT).
    """

    name: str
    method: str
    batch: int
    seq_length: int = 0


CASES = (
    Case("llava15_7b lora", "lora", batch=4, seq_length=2048),
    Case("llava15_7b full", "full", batch=4, seq_length=2048),
    Case("vit_b16", "vit", batch=256),
)
TINY_CASES = (
    Case("llava tiny lora", "lora", batch=2, seq_length=80),
    Case("llava tiny full", "full", batch=2, seq_length=80),
    Case("vit tiny", "vit", batch=4),
)


def build_model(case: Case, *, tiny: bool, device: torch.device) -> nn.Module:
    """The case's model on ``device``: bf16 for LLaVA, fp32 (autocast) for ViT."""
    from optica.models import (
        Llava15Config7B,
        LlavaConfigTiny,
        LlavaModel,
        ViTB16Config,
        ViTClassificationModel,
        ViTConfigTiny,
    )
    from optica.train.peft import LoRA, freeze

    if case.method == "vit":
        config = ViTConfigTiny() if tiny else ViTB16Config()
        return ViTClassificationModel(config).init_weights(0, device=device)
    config = LlavaConfigTiny() if tiny else Llava15Config7B()
    model = LlavaModel(config).init_weights(0, device=device, dtype=torch.bfloat16)
    freeze(model, vision_model=True)
    if case.method == "lora":
        LoRA(dim=32, alpha=32).apply(model)
    return model


def make_batch(case: Case, model: nn.Module, device: torch.device) -> dict[str, torch.Tensor]:
    """Random inputs of the case's shape: one image per LLaVA sample, after a 64-token prompt
    that (with the image) learns nothing."""
    config = model.config
    generator = torch.Generator().manual_seed(0)
    if case.method == "vit":
        images = torch.randn(case.batch, 3, config.img_h, config.img_w, generator=generator)
        labels = torch.randint(0, config.num_classes, (case.batch,), generator=generator)
        return {"images": images.to(device), "labels": labels.to(device)}
    vision = config.vision_transformer_config
    text = case.seq_length - config.num_image_tokens + 1
    vocab = config.language_transformer_config.vocab_size
    ids = torch.randint(0, vocab, (case.batch, text), generator=generator)
    ids[:, 1] = IMAGE
    labels = ids.clone()
    labels[:, : min(64, text // 2)] = -100
    images = torch.randn(case.batch, 3, vision.img_h, vision.img_w, generator=generator)
    return {"input_ids": ids.to(device), "images": images.to(device), "labels": labels.to(device)}


def speedups(model: nn.Module, *, checkpointing: str, compile_layers: bool) -> None:
    """Activation checkpointing (``none``/``selective``/``full``) and ``torch.compile`` of each
    transformer layer, applied from outside the model as the strategy does."""
    from optica.models.modules.parallel import ParallelConfig, apply_activation_checkpointing
    from optica.models.modules.transformer import TransformerLayer

    layers = [m for m in model.modules() if isinstance(m, TransformerLayer)]
    trained = [layer for layer in layers if any(p.requires_grad for p in layer.parameters())]
    apply_activation_checkpointing(trained, ParallelConfig(activation_checkpointing=checkpointing))
    if compile_layers:
        for layer in layers:
            layer.compile()


def training_step(model: nn.Module, *, in_backward: bool = False) -> Callable[[dict], torch.Tensor]:
    """optica's step: the training module's loss under bf16 autocast, backward, fused AdamW
    (``in_backward``: stepped inside the backward pass, ``optim.step_in_backward``)."""
    from optica.train.backward_step import step_in_backward
    from optica.train.module import TrainingModule
    from optica.train.optim import OptimizerConfig, build_optimizer

    module = TrainingModule(model, optim=OptimizerConfig(name="adamw", lr=1e-5))
    optimizer = build_optimizer(module.optim, model)
    if in_backward:
        step_in_backward(optimizer)
    device_type = next(model.parameters()).device.type

    def step(batch: dict) -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type, dtype=torch.bfloat16):
            loss = module.loss(batch)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step


def seconds_per_step(step: Callable, batch: dict, *, warmup: int, steps: int) -> float:
    """Mean wall time of ``steps`` steps after ``warmup``; the device is synchronised only
    around the timed window."""
    for _ in range(warmup):
        step(batch)
    _synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step(batch)
    _synchronize()
    return (time.perf_counter() - start) / steps


def _synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def peak_tflops_of(device: torch.device) -> float | None:
    """The GPU preset's dense bf16 peak for this device's name (``optica.autoconfig``), if known."""
    if device.type != "cuda":
        return None
    from optica.autoconfig.hardware import GPUS

    name = torch.cuda.get_device_name(device).lower()
    found = [spec.peak_tflops for key, spec in GPUS.items() if key.split("-")[0] in name]
    return found[0] if found else None


def measure(case: Case, *, tiny: bool, device: torch.device, options: argparse.Namespace) -> dict:
    """One case: time, throughput, FLOPs, MFU and peak memory."""
    from optica.train.throughput import batch_work, model_shape, rates, training_of

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    reset_peak_rss()
    model = build_model(case, tiny=tiny, device=device).train()
    speedups(model, checkpointing=options.activation_checkpointing, compile_layers=options.compile)
    batch = make_batch(case, model, device)
    seconds = seconds_per_step(
        training_step(model, in_backward=options.step_in_backward),
        batch,
        warmup=options.warmup,
        steps=options.steps,
    )
    work = batch_work(model_shape(model), batch, training_of(model, "bf16-mixed"))
    peak = options.peak_tflops or peak_tflops_of(device)
    found = rates(work, seconds, dp=1, peak_tflops=peak)
    memory = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    del model, batch
    return {
        "case": case.name,
        "batch": case.batch,
        "seq_length": case.seq_length or None,
        "step_s": seconds,
        "samples_per_s": found["throughput/samples_per_s"],
        "tokens_per_s": found["throughput/tokens_per_s"],
        "tflops": found["throughput/tflops_per_device"],
        "mfu": found.get("throughput/mfu"),
        "peak_gib": memory if memory is not None else peak_rss_mib() / 1024,
    }


def run(*, tiny: bool = False, options: argparse.Namespace | None = None) -> dict[str, Any]:
    """Every case on the GPU (or, with ``tiny``, on whatever device there is)."""
    options = options or parse([])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type != "cuda" and not tiny:
        return {"rows": [], "device": "cpu", "skipped": "no GPU here (--tiny runs the code path)"}
    cases = TINY_CASES if tiny else CASES
    chosen = [c for c in cases if not options.cases or c.method in options.cases]
    rows = [measure(case, tiny=tiny, device=device, options=options) for case in chosen]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {"rows": rows, "device": name}


def report(result: dict[str, Any]) -> str:
    """The cases as a table (MFU "n/a" without a known peak)."""
    if result.get("skipped"):
        return f"gpu: skipped: {result['skipped']}"
    headers = ["case", "batch", "seq", "s/step", "samples/s", "tokens/s", "TFLOPS", "MFU", "GiB"]
    rows = [
        [r["case"], r["batch"], r["seq_length"] or "-", r["step_s"], r["samples_per_s"],
         r["tokens_per_s"], r["tflops"], "n/a" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%",
         r["peak_gib"]]
        for r in result["rows"]
    ]  # fmt: skip
    return f"device: {result['device']}\n" + table(headers, rows)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run gpu")
    parser.add_argument("--tiny", action="store_true", help="tiny models on any device")
    parser.add_argument("--cases", nargs="*", choices=("lora", "full", "vit"), default=[])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="torch.compile each layer")
    parser.add_argument(
        "--step-in-backward",
        action="store_true",
        help="update each parameter inside the backward pass (optim.step_in_backward)",
    )
    parser.add_argument(
        "--activation-checkpointing", choices=("none", "selective", "full"), default="none"
    )
    parser.add_argument("--peak-tflops", type=float, help="override the device's peak")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    options = parse(argv)
    result = run(tiny=options.tiny, options=options)
    print(report(result))
    return result


if __name__ == "__main__":
    main()
