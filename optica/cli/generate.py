"""``optica generate``: answer prompts (with images) from a checkpoint or a training run.

    optica generate --ckpt runs/shapes/v/checkpoints/last.ckpt --image cat.png --prompt "What?"

One prompt streams its answer as it is generated; several are answered as one batch, one line
each. Checkpoint, template and sampling options are shared with ``optica chat``.
"""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    description = "answer prompts (with images) with a checkpoint or a training run"
    parser = subparsers.add_parser("generate", help=description, description=description)
    add_model_arguments(parser)
    parser.add_argument("--prompt", action="append", required=True, help="repeat for a batch")
    parser.add_argument(
        "--image", action="append", default=[], help="image for every prompt (repeatable)"
    )
    add_sampling_arguments(parser, max_new_tokens=64)
    parser.set_defaults(func=generate_command)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--ckpt`` and how prompts are formatted (shared with ``optica chat``)."""
    parser.add_argument(
        "--ckpt",
        required=True,
        help="optica checkpoint (dir or imported name), training run dir, or a .ckpt in one",
    )
    parser.add_argument(
        "--template",
        "--conv-template",
        dest="template",
        default=None,
        help="conversation template (v1, llama_3, ...; raw: none); default: the checkpoint's",
    )
    parser.add_argument("--system-prompt", default=None, help="replace the default system prompt")
    parser.add_argument("--merge-lora", action="store_true", help="merge LoRA adapters first")
    parser.add_argument(
        "--adapters",
        metavar="DIR",
        default=None,
        help="adapters folder of a LoRA run (checkpoints/<name>.adapters) to apply to --ckpt",
    )
    parser.add_argument("--device", default="cpu")


def add_sampling_arguments(parser: argparse.ArgumentParser, *, max_new_tokens: int) -> None:
    parser.add_argument("--max-new-tokens", type=int, default=max_new_tokens)
    parser.add_argument("--temperature", type=float, default=0.0, help="0: greedy (default)")
    parser.add_argument("--top-k", type=int, default=0)
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--repetition-penalty", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--stop", action="append", default=[], help="extra stop string")


def load_generator(args: argparse.Namespace):
    from optica.generate import Generator

    if getattr(args, "adapters", None) is not None:
        return _with_adapters(args)
    return Generator.from_source(
        args.ckpt,
        template=args.template,
        system_prompt=args.system_prompt,
        device=args.device,
        merge_lora=args.merge_lora,
    )


def sampling(args: argparse.Namespace):
    from optica.generate import SamplingConfig

    return SamplingConfig(
        args.temperature, args.top_k, args.top_p, args.repetition_penalty, args.seed
    )


def generate_command(args: argparse.Namespace) -> int:
    generator = load_generator(args)
    settings = {"max_new_tokens": args.max_new_tokens, "sampling": sampling(args)}
    if len(args.prompt) == 1:
        for piece in generator.stream(args.prompt[0], args.image, stop=args.stop, **settings):
            print(piece, end="", flush=True)
        print()
        return 0
    images = [list(args.image)] * len(args.prompt)
    for answer in generator.generate(args.prompt, images, stop=args.stop, **settings):
        print(answer.replace("\n", " "))
    sys.stdout.flush()
    return 0


def _with_adapters(args: argparse.Namespace):
    """A generator for the base at ``--ckpt`` with a LoRA run's ``--adapters`` folder applied
    (merged with ``--merge-lora``); the base's tokenizer, template and image processor."""
    from optica.generate import Generator
    from optica.generate.loading import load_source
    from optica.train.adapters import load_adapters
    from optica.train.peft import merge_lora

    loaded = load_source(args.ckpt, device=args.device)
    load_adapters(loaded.model, args.adapters)
    if args.merge_lora:
        merge_lora(loaded.model)
    return Generator(
        loaded.model.eval(),
        loaded.tokenizer,
        template=args.template if args.template is not None else loaded.template,
        system_prompt=args.system_prompt
        if args.system_prompt is not None
        else loaded.system_prompt,
        image_processor=loaded.image_processor,
    )
