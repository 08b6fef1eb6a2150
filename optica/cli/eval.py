"""``optica eval``: a VLM's answer accuracy on a LLaVA-format eval file or the shapes questions.

    optica eval --ckpt runs/shapes/v --data shapes:200 --output results.json
    optica eval --ckpt my-llava --data eval.json --image-folder images/

Prints a table (exact match and accuracy, per question kind when known) and writes every
question, reference and answer as JSON.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from optica.cli.generate import add_model_arguments


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    description = "VLM answer accuracy / exact match on a LLaVA-format eval file or shapes"
    parser = subparsers.add_parser("eval", help=description, description=description)
    add_model_arguments(parser)
    parser.add_argument(
        "--data", required=True, help="LLaVA JSON/JSONL eval file, or shapes[:N] (default 100)"
    )
    parser.add_argument("--image-folder", default=None, help="base of relative image paths")
    parser.add_argument("--output", default="eval_results.json", help="JSON results file")
    parser.add_argument("--limit", type=int, default=None, help="only the first N questions")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.set_defaults(func=eval_command)


def eval_command(args: argparse.Namespace) -> int:
    from optica.cli.generate import load_generator
    from optica.eval.generation_eval import evaluate

    questions = _questions(args.data, args.image_folder, args.ckpt)[: args.limit]
    report = evaluate(
        load_generator(args),
        questions,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
    )
    output = Path(args.output)
    output.write_text(report.to_json(checkpoint=str(args.ckpt), data=args.data) + "\n")
    print(report.table())
    print(f"results: {output}")
    return 0


def _questions(data: str, image_folder: str | None, checkpoint: str | None):
    from optica.eval.generation_eval import load_eval_file, shapes_config_of, shapes_questions
    from optica.generate.errors import GenerationError

    if data == "shapes" or data.startswith("shapes:"):
        count = data.partition(":")[2] or "100"
        if not count.isdigit():
            raise GenerationError(f"--data {data}: write shapes:N with N a number of images")
        return shapes_questions(int(count), config=shapes_config_of(checkpoint))
    return load_eval_file(data, image_folder)
