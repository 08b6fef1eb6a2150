"""``optica import SOURCE`` and ``optica export PATH``: the command-line side of
:mod:`optica.checkpoint` (``export`` also takes a training run's distributed checkpoint). Each
prints the checkpoint directory it wrote (or found) on stdout."""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings
from collections.abc import Iterator


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Adds the ``import`` and ``export`` commands."""
    _add_import(subparsers)
    _add_export(subparsers)


def _add_import(subparsers: argparse._SubParsersAction) -> None:
    description = "convert a Hugging Face checkpoint into optica's format (once)"
    parser = subparsers.add_parser("import", help=description, description=description)
    parser.add_argument(
        "source",
        metavar="SOURCE",
        help="hf://org/name[@revision] (local Hugging Face cache, offline) or a local directory",
    )
    parser.add_argument(
        "--model",
        metavar="FAMILY_OR_PRESET",
        help="family (llama), size preset (llama2_7b) or family:size; default: from config.json",
    )
    parser.add_argument(
        "--output", metavar="PATH", help="default: $OPTICA_HOME/models/<org>/<name>"
    )
    parser.add_argument("--overwrite", action="store_true", help="import again over the output")
    parser.set_defaults(func=import_command)


def _add_export(subparsers: argparse._SubParsersAction) -> None:
    description = "convert an optica checkpoint or a training checkpoint to Hugging Face format"
    parser = subparsers.add_parser("export", help=description, description=description)
    parser.add_argument(
        "path",
        metavar="PATH",
        help="optica checkpoint directory or imported name (org/name); or a distributed training "
        "checkpoint (trainer.strategy=parallel, any layout) or a run directory (its latest)",
    )
    parser.add_argument("--target", default="hf", help="output format (default: hf)")
    parser.add_argument("--output", metavar="PATH", help="default: PATH/<target>")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument(
        "--merge-lora",
        action="store_true",
        help="a LoRA run: fold the adapters into the base weights and export the merged model",
    )
    parser.set_defaults(func=export_command)


def import_command(args: argparse.Namespace) -> int:
    from optica.checkpoint import import_checkpoint

    with _warnings_as_lines():
        result = import_checkpoint(
            args.model, args.source, output_path=args.output, overwrite=args.overwrite
        )
    if not result.created:
        print("already imported (--overwrite imports again)", file=sys.stderr)
    print(result.path)
    return 0


def export_command(args: argparse.Namespace) -> int:
    from optica.checkpoint import export_ckpt

    with _warnings_as_lines():
        path = export_ckpt(
            args.path,
            target=args.target,
            output_path=args.output,
            overwrite=args.overwrite,
            merge_lora=args.merge_lora,
        )
    print(path)
    return 0


@contextlib.contextmanager
def _warnings_as_lines() -> Iterator[None]:
    """Prints the warnings raised in the block as ``warning: ...`` lines on stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for warning in caught:
                print(f"warning: {warning.message}", file=sys.stderr)
