"""``optica data inspect | stats | convert``: look at LLaVA conversation data the way training
will, and turn it into Energon shards.

``inspect`` prints one JSON object per sample (``id``, ``input_ids`` with -200 at images,
``labels`` with -100 where nothing is learned, ``text`` with learned spans in ``[[...]]``);
``stats`` prints one JSON object of counts; ``convert`` writes WebDataset tar shards prepared for
megatron-energon. None imports Lightning or a model.
"""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    description = "inspect LLaVA conversation data as training sees it"
    parser = subparsers.add_parser("data", help=description, description=description)
    commands = parser.add_subparsers(dest="data_command", required=True)
    inspect = commands.add_parser("inspect", help="each processed sample as JSON")
    _common(inspect)
    inspect.add_argument("--limit", type=int, default=10, help="samples to show (default 10)")
    inspect.add_argument("--start", type=int, default=0, help="first sample index")
    inspect.set_defaults(func=inspect_command)
    stats = commands.add_parser("stats", help="counts, lengths, truncations, images per sample")
    _common(stats)
    stats.add_argument("--limit", type=int, default=None, help="only the first N samples")
    stats.set_defaults(func=stats_command)
    _add_convert(commands)


def _add_convert(commands: argparse._SubParsersAction) -> None:
    convert = commands.add_parser(
        "convert", help="LLaVA JSON + images -> Energon/WebDataset shards, ready to load"
    )
    convert.add_argument("--data-path", nargs="+", required=True, help="JSON/JSONL files, folders")
    convert.add_argument("--image-folder", default=None, help="base of relative image paths")
    convert.add_argument("--output", required=True, help="dataset folder to create")
    convert.add_argument("--shard-size", type=int, default=1000, help="samples per tar shard")
    convert.add_argument(
        "--on-bad-input",
        choices=("error", "skip"),
        default="error",
        help="stop at the first bad sample (default) or leave bad samples out and list them",
    )
    convert.add_argument(
        "--split-ratio", default="1,0,0", help="train,val,test shares of the shards (1,0,0)"
    )
    convert.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    convert.set_defaults(func=convert_command)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-path", nargs="+", required=True, help="JSON/JSONL files, folders")
    parser.add_argument("--image-folder", default=None, help="base of relative image paths")
    parser.add_argument("--tokenizer", required=True, help="tokenizer folder or tokenizer.json")
    parser.add_argument(
        "--conv-template",
        default="v1",
        help="v1, vicuna_v1, plain, llama_2, llama_3, mistral, chatml, nvgpt, or 'tokenizer' "
        "for the tokenizer's own chat_template",
    )
    parser.add_argument("--system-prompt", default=None, help="replace the default system prompt")
    parser.add_argument("--seq-length", type=int, default=2048)
    parser.add_argument("--image-token-len", type=int, default=576, help="tokens per image")
    parser.add_argument("--check-images", action="store_true", help="open every image too")


def _dataset(args: argparse.Namespace):
    from optica.data.build import load_tokenizer, make_encoder
    from optica.data.config import ImageDataConfig, MultiModalSampleConfig
    from optica.data.llava import LlavaDataset

    tokenizer = load_tokenizer(args.tokenizer)
    template = None if args.conv_template == "tokenizer" else args.conv_template
    config = ImageDataConfig(
        image_folder=args.image_folder, conv_template=template, system_prompt=args.system_prompt
    )
    encoder = make_encoder(
        tokenizer=tokenizer,
        data_config=config,
        sample_config=MultiModalSampleConfig(conversation_template_config=None),
        seq_length=args.seq_length,
        image_token_len=args.image_token_len,
        image_processor=None,
    )
    return LlavaDataset(args.data_path, encoder=encoder, image_folder=args.image_folder)


def inspect_command(args: argparse.Namespace) -> int:
    from optica.data.diagnose import describe
    from optica.data.errors import DataConfigError

    dataset = _dataset(args)
    if not 0 <= args.start < len(dataset):
        raise DataConfigError(
            f"--start {args.start}: the data has {len(dataset)} samples (0..{len(dataset) - 1})"
        )
    end = min(len(dataset), args.start + max(0, args.limit))
    for index in range(args.start, end):
        print(json.dumps(describe(dataset, index, check_images=args.check_images)))
    return 0


def stats_command(args: argparse.Namespace) -> int:
    from optica.data.diagnose import collect_stats

    stats = collect_stats(_dataset(args), limit=args.limit, check_images=args.check_images)
    print(json.dumps(stats, indent=2))
    return 0


def _split_ratio(text: str) -> tuple[float, float, float]:
    from optica.data.errors import DataConfigError

    try:
        parts = tuple(float(x) for x in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or min(parts) < 0 or sum(parts) <= 0:
        raise DataConfigError(f"--split-ratio {text!r}: expected three shares like 1,0,0 or 8,1,1")
    return parts


def convert_command(args: argparse.Namespace) -> int:
    import sys

    from optica.data.energon.convert import convert_llava

    report = convert_llava(
        args.data_path,
        args.output,
        image_folder=args.image_folder,
        shard_size=args.shard_size,
        on_bad_input=args.on_bad_input,
        split_ratio=_split_ratio(args.split_ratio),
        overwrite=args.overwrite,
    )
    for problem in report.problems:
        print(f"skipped: {problem}", file=sys.stderr)
    print(report.summary())
    return 0
