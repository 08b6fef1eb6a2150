"""Data throughput: optica's LLaVA preprocessing vs transformers' ``LlavaProcessor``.

Both sides do what a training loop needs per sample — read the conversation, load and decode the
JPEG, resize / centre-crop / normalise it to CLIP's 336x336, tokenize the LLaVA-1.5 (``v1``)
prompt, and collate micro-batches — on the same synthetic samples (images and a JSON file made in
a temporary folder), one pass each, in one process, timed batch by batch in turn:

* optica: :class:`~optica.data.llava.LlavaDataset` (lazy index, template, per-segment
  tokenization with labels), each micro-batch fetched as torch's DataLoader fetches one, and
  :class:`~optica.data.collate.Collator`.
* reference: what a user of transformers writes — open each image with PIL, format the prompt by
  hand, call ``LlavaProcessor`` (``CLIPImageProcessorPil`` + a Llama-like fast tokenizer made
  here) on each micro-batch with padding. It computes no labels (optica does), which favours it.

Both must produce the same thing: the same ``input_ids`` once the reference's 576 image tokens
are folded back into optica's one -200, and the same pixels (within ``PIXEL_TOLERANCE``).

    python -m benchmarks.data_throughput [--samples 2000] [--batch-size 8] [--record]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
WORDS = "the a cat dog red blue green circle square what is colour of how many shapes are there "
WORDS += "picture describe image left right small large one two three four near far above below"
PIXEL_TOLERANCE = 1e-4
IMAGE_SIZE, PATCH = 336, 14


def make_samples(folder: Path, count: int, seed: int = 0) -> tuple[Path, Path]:
    """``count`` LLaVA records (one image each, 1-2 turns) and their JPEGs of varied sizes."""
    rng = np.random.default_rng(seed)
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    words = WORDS.split()
    records = []
    for index in range(count):
        height, width = (int(v) for v in rng.integers(200, 640, size=2))
        base = rng.integers(0, 255, size=(1, 1, 3))
        noise = rng.integers(0, 64, size=(height // 8, width // 8, 3))
        pixels = np.clip(base + np.kron(noise, np.ones((8, 8, 1))), 0, 255).astype(np.uint8)
        name = f"{index:05d}.jpg"
        Image.fromarray(pixels).save(images / name, quality=90)
        records.append(_record(index, name, rng, words))
    data = folder / "data.json"
    data.write_text(json.dumps(records))
    return data, images


def _record(index: int, image: str, rng, words: list[str]) -> dict:
    def sentence(low: int, high: int) -> str:
        return " ".join(rng.choice(words, size=int(rng.integers(low, high))))

    turns = [{"from": "human", "value": f"<image>\n{sentence(4, 16)}?"}]
    turns.append({"from": "gpt", "value": sentence(3, 40) + "."})
    if rng.random() < 0.5:
        turns += [{"from": "human", "value": sentence(3, 10) + "?"},
                  {"from": "gpt", "value": sentence(2, 20) + "."}]  # fmt: skip
    return {"id": f"s{index}", "image": image, "conversations": turns}


def make_tokenizer():
    """A Llama-like fast tokenizer (SentencePiece-style ``▁``, BPE) trained on the vocabulary."""
    from tokenizers import (
        AddedToken,
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    special = ["<unk>", "<s>", "</s>", "<pad>"]
    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=special, show_progress=False)
    corpus = [WORDS, SYSTEM, "USER: ASSISTANT: ? . \n", *WORDS.split()]
    backend.train_from_iterator(corpus, trainer)
    backend.add_special_tokens([AddedToken("<image>", special=True)])
    bos = backend.token_to_id("<s>")
    backend.post_processor = processors.TemplateProcessing(  # Llama: one BOS in front
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", bos)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
    )


def optica_pipeline(data: Path, images: Path, tokenizer, batch_size: int):
    """optica's data set + collate; yields batches."""
    from optica.data import Collator, ImageDataConfig, LlavaDataset, MultiModalSampleConfig
    from optica.data.build import make_encoder
    from optica.data.images import clip_processor

    processor = clip_processor(IMAGE_SIZE, aspect_ratio="crop")  # CLIP: shortest side, crop
    encoder = make_encoder(
        tokenizer=tokenizer,
        data_config=ImageDataConfig(image_folder=images, conv_template="v1"),
        sample_config=MultiModalSampleConfig(),
        seq_length=4096,
        image_token_len=(IMAGE_SIZE // PATCH) ** 2,
        image_processor=processor,
    )
    dataset = LlavaDataset(data, encoder=encoder, image_folder=images)
    collate = Collator(tokenizer.pad_token_id, processor.size, 1, encoder.image_token_len)
    for start in range(0, len(dataset), batch_size):
        yield collate(fetch(dataset, range(start, min(start + batch_size, len(dataset)))))


def fetch(dataset, rows) -> list:
    """A batch's samples as torch's DataLoader fetches them: ``__getitems__`` when the dataset
    has one (``LlavaDataset`` does: its images land in one buffer), else one ``dataset[i]`` each."""
    getitems = getattr(dataset, "__getitems__", None)
    return getitems(list(rows)) if getitems else [dataset[i] for i in rows]


def reference_processor(tokenizer):
    from transformers import CLIPImageProcessorPil, LlavaProcessor

    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": IMAGE_SIZE},
        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=PATCH,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )


def llava_prompt(record: dict) -> str:
    """LLaVA-1.5's ``v1`` prompt as LLaVA's ``conv_vicuna_v1`` renders it (``SeparatorStyle.TWO``:
    ``system + " "``, then ``role + ": " + message`` followed by ``" "`` or ``"</s>"``)."""
    text = SYSTEM + " "
    for turn in record["conversations"]:
        value = turn["value"]
        if turn["from"] == "human":
            if "<image>" in value:
                value = "<image>\n" + value.replace("<image>", "").strip()
            text += f"USER: {value} "
        else:
            text += f"ASSISTANT: {value}</s>"
    return text


def reference_pipeline(data: Path, images: Path, processor, batch_size: int):
    """transformers' processor on each micro-batch; yields batches."""
    records = json.loads(data.read_text())
    for start in range(0, len(records), batch_size):
        chunk = records[start : start + batch_size]
        pictures = [Image.open(images / r["image"]).convert("RGB") for r in chunk]
        prompts = [llava_prompt(r) for r in chunk]
        yield processor(images=pictures, text=prompts, padding=True, return_tensors="pt")


def interleaved(ours, theirs, image_id: int) -> tuple[float, float, dict]:
    """Times each pipeline batch by batch, alternately (who goes first swaps every batch, so a
    busy neighbour slows both alike), checks each pair and drops it, as a training loop would:
    keeping all 2000 batches (2.7 GB of pixels per side) made both sides page-fault fresh memory
    for every batch, a cost of the benchmark, not of preprocessing."""
    seconds, check = [0.0, 0.0], _Check(image_id)
    iterators = [iter(ours), iter(theirs)]
    for index in itertools.count():
        pair = [None, None]
        for side in (index % 2, 1 - index % 2):
            start = time.perf_counter()
            pair[side] = next(iterators[side], None)
            seconds[side] += time.perf_counter() - start
        if pair[0] is None or pair[1] is None:
            if pair[0] is not pair[1]:
                raise RuntimeError("the pipelines made different numbers of batches")
            return seconds[0], seconds[1], check.result()
        check.add(*pair)


def fold_images(ids: list[int], image_id: int) -> list[int]:
    """The reference's run of image tokens per image → one -200, as optica writes it."""
    folded: list[int] = []
    for token in ids:
        if token == image_id:
            if not folded or folded[-1] != -200:
                folded.append(-200)
        else:
            folded.append(token)
    return folded


class _Check:
    """Ids equal sample by sample (images folded), and the largest pixel difference."""

    def __init__(self, image_id: int):
        self.image_id, self.mismatched, self.pixel_diff, self.samples = image_id, 0, 0.0, 0

    def add(self, ours: dict, theirs) -> None:
        for row in range(len(ours["input_ids"])):
            mine = ours["input_ids"][row][ours["attention_mask"][row]].tolist()
            other = theirs["input_ids"][row][theirs["attention_mask"][row].bool()].tolist()
            self.mismatched += int(mine != fold_images(other, self.image_id))
            self.samples += 1
        pixels = theirs["pixel_values"].to(ours["images"].dtype)
        self.pixel_diff = max(self.pixel_diff, float((ours["images"] - pixels).abs().max()))

    def result(self) -> dict:
        keys = ("samples", "ids_mismatched", "max_pixel_diff")
        return dict(zip(keys, (self.samples, self.mismatched, self.pixel_diff)))


def run(samples: int = 2000, batch_size: int = 8, folder: str | Path | None = None) -> dict:
    """One timed pass of each pipeline over the same ``samples``; returns the figures."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(folder or scratch)
        data, images = make_samples(root, samples)
        tokenizer = make_tokenizer()
        processor = reference_processor(tokenizer)
        # warm-up: imports and first-call costs are not throughput
        list(optica_pipeline(_head(data, root), images, tokenizer, batch_size))
        list(reference_pipeline(_head(data, root), images, processor, batch_size))
        optica_s, reference_s, check = interleaved(
            optica_pipeline(data, images, tokenizer, batch_size),
            reference_pipeline(data, images, processor, batch_size),
            tokenizer.convert_tokens_to_ids("<image>"),
        )
    return {
        "samples": samples,
        "batch_size": batch_size,
        "optica_samples_per_s": samples / optica_s,
        "reference_samples_per_s": samples / reference_s,
        "ratio": reference_s / optica_s,
        **{f"check_{k}": v for k, v in check.items()},
        "same_output": check["ids_mismatched"] == 0 and check["max_pixel_diff"] <= PIXEL_TOLERANCE,
    }


def _head(data: Path, root: Path, count: int = 16) -> Path:
    head = root / "head.json"
    head.write_text(json.dumps(json.loads(data.read_text())[:count]))
    return head


def report(result: dict) -> str:
    from benchmarks.common import table

    rows = [
        ["optica (LlavaDataset + Collator)", result["optica_samples_per_s"], result["ratio"]],
        ["transformers LlavaProcessor", result["reference_samples_per_s"], 1.0],
    ]
    same = "yes" if result["same_output"] else "NO"
    return (
        table(["pipeline", "samples/s", "x reference"], rows)
        + f"\n\n{result['samples']} samples, micro-batch {result['batch_size']}, one pass each, "
        + "timed batch by batch in turn, each batch checked and dropped. "
        + f"Same output: {same} (ids differing in {result['check_ids_mismatched']} samples, "
        + f"max pixel difference {result['check_max_pixel_diff']:.2g}). Target: at least 2x."
    )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="benchmarks.data_throughput", description=__doc__)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--record", action="store_true", help="append to benchmarks/RESULTS.md")
    args, _ = parser.parse_known_args(argv)
    result = run(args.samples, args.batch_size)
    print(report(result))
    print(f"ratio: {result['ratio']:.2f}x")
    if args.record:
        from benchmarks.common import append_results

        append_results("Data", report(result), command=_command())
    return result


def _command() -> str:
    """The command as typed (``benchmarks.run`` rewrites ``sys.argv[0]`` to its own name)."""
    import shlex
    import sys

    name = sys.argv[0].split()
    module = "benchmarks.run data" if name[0] == "benchmarks.run" else "benchmarks.data_throughput"
    return f"python -m {module} {shlex.join(sys.argv[1:])}".strip()


if __name__ == "__main__":
    main()
