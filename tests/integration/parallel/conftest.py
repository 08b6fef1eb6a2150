"""Fixtures shared by the parallel-layout tests."""

from __future__ import annotations

import os

import pytest

from tests.conftest import REPO_ROOT


@pytest.fixture(scope="module")
def environment(tmp_path_factory):
    """What ``tests/conftest.py`` gives each test, for module-scoped launches; yields the
    directory the runs write to."""
    home = tmp_path_factory.mktemp("optica_home")
    paths = [str(REPO_ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OPTICA_HOME", str(home))
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("PYTHONPATH", os.pathsep.join(dict.fromkeys(paths)))
        yield tmp_path_factory.mktemp("runs")
