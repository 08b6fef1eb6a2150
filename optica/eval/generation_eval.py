"""Answer accuracy of a VLM by generation: each question of a LLaVA-format eval file is asked
(earlier turns of its conversation as history, with their reference answers), the generated
answer compared with the reference, and the results written as JSON and printed as a table.

Two scores: ``exact_match`` (the normalised answer equals the normalised reference: case,
surrounding spaces and final punctuation ignored) and ``accuracy`` (the reference appears in the
answer as whole words, VQA's lenient reading of a longer answer). ``shapes`` evaluates the
synthetic shapes questions without any file (``shapes:N`` for N held-out images), per question
kind as well.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optica.data.conversation import Message, parse_conversation
from optica.generate.errors import GenerationError

_PUNCTUATION = re.compile(r"[\s.!?,;:\"']+$|^[\s\"']+")


def normalize(text: str) -> str:
    """Lower case, single spaces, no leading quotes or trailing punctuation."""
    return _PUNCTUATION.sub("", " ".join(text.lower().split()))


def contains_answer(answer: str, reference: str) -> bool:
    """Whether ``reference`` appears in ``answer`` as whole words (after normalising both)."""
    wanted = normalize(reference)
    return bool(wanted) and re.search(rf"\b{re.escape(wanted)}\b", normalize(answer)) is not None


@dataclass
class Question:
    """One question to ask: its conversation so far, images, reference and kind."""

    id: str
    history: list[Message]
    images: list[Any]
    reference: str
    kind: str = "all"


@dataclass
class Report:
    """Per-question results and their totals."""

    results: list[dict[str, Any]] = field(default_factory=list)

    def add(self, question: Question, answer: str) -> None:
        self.results.append(
            {
                "id": question.id,
                "kind": question.kind,
                "question": question.history[-1].content,
                "reference": question.reference,
                "answer": answer,
                "exact_match": normalize(answer) == normalize(question.reference),
                "correct": contains_answer(answer, question.reference),
            }
        )

    def scores(self) -> dict[str, dict[str, float]]:
        """``{kind: {questions, exact_match, accuracy}}`` with an ``all`` row."""
        groups: dict[str, list[dict]] = defaultdict(list)
        for result in self.results:
            groups["all"].append(result)
            if result["kind"] != "all":
                groups[result["kind"]].append(result)
        return {kind: _score(rows) for kind, rows in groups.items()}

    def to_json(self, **about: Any) -> str:
        return json.dumps({**about, "scores": self.scores(), "results": self.results}, indent=2)

    def table(self) -> str:
        lines = [f"{'kind':<10} {'questions':>9} {'exact_match':>11} {'accuracy':>8}"]
        for kind, score in self.scores().items():
            lines.append(
                f"{kind:<10} {score['questions']:>9} {score['exact_match']:>11.3f} "
                f"{score['accuracy']:>8.3f}"
            )
        return "\n".join(lines)


def _score(rows: list[dict]) -> dict[str, float]:
    count = len(rows)
    return {
        "questions": count,
        "exact_match": sum(r["exact_match"] for r in rows) / count if count else 0.0,
        "accuracy": sum(r["correct"] for r in rows) / count if count else 0.0,
    }


def questions_from_records(records: list[dict], image_folder: Path) -> list[Question]:
    """Every assistant turn of every record becomes a question (images resolved in the folder;
    all of a record's images go with each of its questions, as its tags do)."""
    found = []
    for index, record in enumerate(records):
        conversation = parse_conversation(
            record, default_id=str(index), where=f"record {index}", image_tag="<image>",
            images_to_front=True,
        )  # fmt: skip
        images = [image_folder / name for name in conversation.images]
        messages = list(conversation.messages)
        for turn, message in enumerate(messages):
            if message.role == "assistant":
                kind = record.get("kind", "all")
                qid = f"{conversation.id}:{turn}"
                found.append(Question(qid, messages[:turn], images, message.content, kind))
    return found


def load_eval_file(path: str | Path, image_folder: str | Path | None = None) -> list[Question]:
    """Questions of a LLaVA JSON (a list of records) or JSONL file."""
    file = Path(path)
    try:
        text = file.read_text()
        stripped = text.lstrip()
        if stripped.startswith("["):
            records = json.loads(text)
        else:
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
    except (OSError, json.JSONDecodeError) as err:
        raise GenerationError(f"cannot read eval file {file}: {err}") from None
    return questions_from_records(records, Path(image_folder) if image_folder else file.parent)


SHAPES_FILE = "optica_shapes.json"  # in a checkpoint trained on shapes: what it saw


def write_shapes_config(checkpoint: Path, config: Any) -> Path:
    """Records the shapes generator's settings a checkpoint was trained with (the demo does), so
    ``optica eval --data shapes`` asks questions about the same kind of images."""
    path = Path(checkpoint) / SHAPES_FILE
    path.write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")
    return path


def shapes_config_of(checkpoint: str | Path | None) -> Any:
    """The shapes settings recorded in ``checkpoint``, else the generator's defaults."""
    from optica.data.shapes import ShapesConfig

    path = Path(checkpoint) / SHAPES_FILE if checkpoint else None
    if path is None or not path.is_file():
        return ShapesConfig()
    fields = json.loads(path.read_text())
    return ShapesConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})


def shapes_questions(count: int, split: str = "val", config: Any = None) -> list[Question]:
    """The shapes questions of ``count`` held-out images, with their kinds (``config``: the
    generator's settings, :func:`shapes_config_of` a checkpoint; default: its defaults)."""
    from optica.data.shapes import ShapesConfig, shapes_sample

    config = config or ShapesConfig()
    found = []
    for index in range(count):
        sample = shapes_sample(config, split, index)
        for turn, qa in enumerate(sample.qa):
            history = [Message("user", qa.question)]
            found.append(
                Question(f"shapes-{index}:{turn}", history, [sample.image], qa.answer, qa.kind)
            )
    return found


def evaluate(
    generator, questions: list[Question], *, batch_size: int = 16, max_new_tokens: int = 16
) -> Report:
    """Asks every question (greedy, in batches) and scores the answers."""
    report = Report()
    for start in range(0, len(questions), batch_size):
        chunk = questions[start : start + batch_size]
        answers = generator.generate(
            [q.history for q in chunk],
            [q.images for q in chunk],
            max_new_tokens=max_new_tokens,
        )
        for question, answer in zip(chunk, answers):
            report.add(question, answer)
    return report
