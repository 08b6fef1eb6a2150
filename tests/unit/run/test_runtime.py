"""optica's process defaults (``optica.run.runtime``): in the environment of every process it
starts, before torch, and never over a value the user set."""

import subprocess
import sys

import pytest

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


_REUSE = """
import resource, sys
from optica.run.runtime import apply_process_defaults
if sys.argv[1] == "1":
    apply_process_defaults()
import torch
torch.empty(64 << 20, dtype=torch.uint8).fill_(1)  # freed at once
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
torch.empty(64 << 20, dtype=torch.uint8).fill_(1)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_a_freed_block_is_reused_without_page_faults(monkeypatch):
    """In a running process (``apply_process_defaults``, as the ``optica`` command calls it) the
    second 64 MiB block reuses the first one's pages: no fresh page faults, where glibc's
    default maps and faults it in again (16k faults on 4 KB pages)."""
    for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("THP_MEM_ALLOC_ENABLE", "0")  # 4 KB pages both times: reuse alone counts

    def faults(apply: str) -> int:
        run = [sys.executable, "-c", _REUSE, apply]
        return int(subprocess.run(run, capture_output=True, text=True, check=True).stdout)

    assert faults("1") < 100 and faults("0") > 10_000
