"""optica's process defaults (``optica.run.runtime``): in the environment of every process it
starts, before torch, and never over a value the user set."""

import subprocess
import sys

from optica.run.runtime import PROCESS_DEFAULTS, with_process_defaults


def test_defaults_fill_in_and_the_users_values_win():
    assert with_process_defaults({})["THP_MEM_ALLOC_ENABLE"] == "1"
    assert with_process_defaults({"THP_MEM_ALLOC_ENABLE": "0"})["THP_MEM_ALLOC_ENABLE"] == "0"
    assert with_process_defaults({"A": "b"}) == {**PROCESS_DEFAULTS, "A": "b"}


def _cli_environment(env: dict[str, str]) -> str:
    """What ``optica`` sets in its own process before torch starts (``optica --version`` runs
    ``main`` without importing torch)."""
    code = (
        "import os, sys; from optica.cli.main import main; main(['--version']); "
        "print(os.environ.get('THP_MEM_ALLOC_ENABLE'), 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    return out.stdout.splitlines()[-1]


def test_the_optica_command_sets_them_before_torch():
    import os

    base = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    assert _cli_environment(base) == "1 False"
    assert _cli_environment({**base, "THP_MEM_ALLOC_ENABLE": "0"}) == "0 False"


def test_launched_and_direct_tasks_get_them(isolated_environment, tmp_path, monkeypatch):
    from optica import run

    monkeypatch.delenv("THP_MEM_ALLOC_ENABLE", raising=False)
    for direct in (False, True):
        out = tmp_path / f"env-{direct}.txt"
        script = run.Script(inline=f'echo "$THP_MEM_ALLOC_ENABLE" > {out}')
        run.run(script, executor=run.LocalExecutor(), name="env", direct=direct)
        assert out.read_text().strip() == "1"
