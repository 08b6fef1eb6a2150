"""Every test gets its own ``$OPTICA_HOME`` (experiments never land in ``~/.optica``), no model
hub (``HF_HUB_OFFLINE=1`` fails a hub lookup at once instead of retrying for ~46 s), a
``PYTHONPATH`` with the repository root so tasks launched in subprocesses can import ``tests.*``,
and a fresh process-wide import allowlist (``--allow-import`` in one test must not leak into the
next one that runs in the same worker).
"""

import os
from pathlib import Path

import pytest
from hypothesis import settings

from optica.run import allowlist

# CI must not fail on an example no developer has seen: derandomize there (same examples each
# run); locally hypothesis keeps exploring new ones.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path, monkeypatch):
    home = tmp_path / "optica_home"
    monkeypatch.setenv("OPTICA_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    paths = [str(REPO_ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(dict.fromkeys(paths)))
    monkeypatch.setattr(allowlist, "_user_prefixes", [])
    return home
