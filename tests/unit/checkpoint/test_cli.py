"""``optica import`` / ``optica export`` through the real ``optica`` entry point, with this
module's parser added the way ``optica.cli.main`` adds built-in commands."""

from __future__ import annotations

import argparse

import pytest
import torch
from transformers import AutoModelForCausalLM

from optica.cli import checkpoint as checkpoint_cli
from optica.cli import main as cli_main
from tests.unit.checkpoint.helpers import make_hf_cache, token_ids

REPO = "tiny-org/tiny-llama"


@pytest.fixture(autouse=True)
def wired(monkeypatch):
    """Adds ``import`` and ``export`` to the built-in parser unless main already has them."""
    original = cli_main._builtin_parser

    def parser() -> argparse.ArgumentParser:
        built = original()
        subparsers = next(a for a in built._actions if isinstance(a, argparse._SubParsersAction))
        if "import" not in subparsers.choices:
            checkpoint_cli.add_parser(subparsers)
        return built

    monkeypatch.setattr(cli_main, "_builtin_parser", parser)


def optica_cli(capsys, *argv):
    """Runs ``optica *argv``; returns (exit code, stdout lines, stderr lines)."""
    code = cli_main.main(list(argv))
    out, err = capsys.readouterr()
    return code, out.splitlines(), err.splitlines()


def test_import_then_export(llama, hub_cache, isolated_environment, capsys):
    source, hf_model = llama
    make_hf_cache(hub_cache, REPO, source)
    code, out, err = optica_cli(capsys, "import", f"hf://{REPO}")
    checkpoint = isolated_environment / "models" / "tiny-org" / "tiny-llama"
    assert (code, out, err) == (0, [str(checkpoint)], [])
    code, out, err = optica_cli(capsys, "import", f"hf://{REPO}", "--model", "llama")
    assert (code, out, err) == (
        0,
        [str(checkpoint)],
        ["already imported (--overwrite imports again)"],
    )
    code, out, _ = optica_cli(capsys, "export", REPO)
    assert (code, out) == (0, [str(checkpoint / "hf")])
    reloaded = AutoModelForCausalLM.from_pretrained(checkpoint / "hf")
    ids = token_ids()
    with torch.no_grad():
        assert torch.equal(reloaded(input_ids=ids).logits, hf_model(input_ids=ids).logits)


def test_output_and_overwrite(llama, tmp_path, capsys):
    source, _ = llama
    out_dir = tmp_path / "ckpt"
    assert optica_cli(capsys, "import", str(source), "--output", str(out_dir))[0] == 0
    code, out, _ = optica_cli(
        capsys, "import", str(source), "--output", str(out_dir), "--overwrite"
    )
    assert (code, out) == (0, [str(out_dir)])
    export = tmp_path / "export"
    assert optica_cli(capsys, "export", str(out_dir), "--output", str(export))[0] == 0
    code, _, err = optica_cli(capsys, "export", str(out_dir), "--output", str(export))
    assert code == 2
    assert err == [
        f"error: {export} already exists; pass overwrite=True (optica export --overwrite) to "
        "replace it"
    ]
    assert (
        optica_cli(capsys, "export", str(out_dir), "--output", str(export), "--overwrite")[0] == 0
    )


def test_mistakes_are_one_line(hf_dirs, tmp_path, capsys):
    source, _ = hf_dirs("mistral")
    cases = {
        ("import", "hf://nobody/nothing"): "error: hf://nobody/nothing: not in the local Hugging",
        ("import", str(source), "--model", "llama"): "error: " + str(source) + " holds a Mistral",
        ("import", str(source), "--model", "mistrl"): "error: unknown model 'mistrl'; did you",
        ("export", str(tmp_path / "none")): "error: no optica checkpoint",
        ("export", str(source)): f"error: {source} is not an optica checkpoint",
    }
    for argv, start in cases.items():
        code, out, err = optica_cli(capsys, *argv)
        assert (code, out, len(err)) == (2, [], 1), argv
        assert err[0].startswith(start), err


def test_config_mismatch_is_a_warning_line(llama, capsys):
    source, _ = llama
    code, out, err = optica_cli(capsys, "import", str(source), "--model", "llama2_7b")
    assert code == 0 and len(out) == 1
    assert len(err) == 1 and err[0].startswith("warning: ")
    assert (
        "differs from the given Llama2Config7B in vocab_size (given 32000, checkpoint 250)"
        in err[0]
    )


def test_help_names_the_options(capsys):
    with pytest.raises(SystemExit):
        cli_main.main(["import", "--help"])
    text = capsys.readouterr().out
    assert all(word in text for word in ("SOURCE", "--model FAMILY_OR_PRESET", "--output PATH"))
