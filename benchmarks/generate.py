"""Generation speed: optica's KV-cached greedy decoding vs transformers' ``generate`` on the same
Llama (~41M parameters, random weights made by transformers, imported into optica, so the two
hold identical weights), CPU, batch 1, a 32-token prompt, 200 new tokens, one timed run each
after a short warm-up; and optica with the cache vs recomputing the whole sequence every step.

    python -m benchmarks.run generate [--new-tokens 200] [--record]

Both generate exactly ``new_tokens`` tokens (no EOS) and must agree token for token.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import append_results, command_line, machine_info, table

SHAPE = {  # a tiny-but-not-trivial Llama: 8 layers, GQA, a 16k vocabulary
    "vocab_size": 16000,
    "hidden_size": 512,
    "intermediate_size": 1408,
    "num_hidden_layers": 8,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "max_position_embeddings": 1024,
}


def _models(directory: Path):
    from transformers import LlamaConfig, LlamaForCausalLM

    from optica.models import load_hf

    torch.manual_seed(0)
    reference = LlamaForCausalLM(LlamaConfig(**SHAPE)).eval()
    reference.save_pretrained(directory)
    return reference, load_hf(directory).eval()


def _optica_tokens(model, prompt: torch.Tensor, new_tokens: int, use_cache: bool):
    from optica.generate import CausalModel, Decoding, SamplingConfig

    mask = torch.ones_like(prompt, dtype=torch.bool)
    decoding = Decoding(CausalModel(model), prompt, mask, None, max_new_tokens=new_tokens,
                        sampling=SamplingConfig(), stop_ids=[], pad_id=0,
                        use_cache=use_cache)  # fmt: skip
    return torch.stack(list(decoding), dim=1)


def _reference_tokens(model, prompt: torch.Tensor, new_tokens: int) -> torch.Tensor:
    with torch.inference_mode():
        out = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt),
                             max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                             do_sample=False, use_cache=True, pad_token_id=0,
                             eos_token_id=None)  # fmt: skip
    return out[:, prompt.shape[1] :]


def _timed(fn) -> tuple[Any, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def run(new_tokens: int = 200, prompt_tokens: int = 32, uncached_tokens: int = 50) -> dict:
    """Tokens/s of each engine; ``uncached_tokens`` bounds the slow no-cache run."""
    prompt = torch.randint(3, SHAPE["vocab_size"], (1, prompt_tokens),
                           generator=torch.Generator().manual_seed(0))  # fmt: skip
    with tempfile.TemporaryDirectory() as directory:
        reference, model = _models(Path(directory))
    params = sum(p.numel() for p in model.parameters())
    _reference_tokens(reference, prompt, 8), _optica_tokens(model, prompt, 8, True)  # warm-up
    theirs, t_ref = _timed(lambda: _reference_tokens(reference, prompt, new_tokens))
    ours, t_ours = _timed(lambda: _optica_tokens(model, prompt, new_tokens, True))
    short, t_short = _timed(lambda: _optica_tokens(model, prompt, uncached_tokens, True))
    slow, t_slow = _timed(lambda: _optica_tokens(model, prompt, uncached_tokens, False))
    return {
        "params_m": params / 1e6,
        "new_tokens": new_tokens,
        "tokens_identical": bool(torch.equal(ours, theirs)) and bool(torch.equal(short, slow)),
        "optica_tok_s": new_tokens / t_ours,
        "transformers_tok_s": new_tokens / t_ref,
        "ratio": t_ref / t_ours,
        "uncached_tokens": uncached_tokens,
        "cached_tok_s": uncached_tokens / t_short,
        "uncached_tok_s": uncached_tokens / t_slow,
        "cache_speedup": t_slow / t_short,
    }


def report(result: dict) -> str:
    rows = [
        ["optica (KV cache)", result["new_tokens"], result["optica_tok_s"]],
        ["transformers generate (KV cache)", result["new_tokens"], result["transformers_tok_s"]],
        ["optica (KV cache)", result["uncached_tokens"], result["cached_tok_s"]],
        ["optica (no cache, full recompute)", result["uncached_tokens"], result["uncached_tok_s"]],
    ]
    body = table(["engine", "new tokens", "tokens/s"], rows)
    return (
        f"Llama {result['params_m']:.1f}M params, batch 1, greedy, fp32, CPU; tokens identical: "
        f"{result['tokens_identical']}\n\n{body}\n\n"
        f"optica / transformers tokens/s: **{result['ratio']:.2f}x** (target >= 1x); "
        f"KV cache vs no cache: **{result['cache_speedup']:.1f}x**"
    )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="benchmarks.generate", description=__doc__)
    parser.add_argument("--new-tokens", type=int, default=200)
    parser.add_argument("--uncached-tokens", type=int, default=50)
    parser.add_argument("--record", action="store_true", help="append to benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    result = run(args.new_tokens, uncached_tokens=args.uncached_tokens)
    text = report(result)
    print(machine_info())
    print(text)
    if args.record:
        append_results("Generation", text, command=command_line())
    return result


if __name__ == "__main__":
    main()
