"""Which checkpoint a run resumes from: files (one process) and directories (distributed)."""

import os

from optica.train.exp_manager import latest_checkpoint


def _touch(path, mtime, directory=False):
    path.mkdir() if directory else path.write_bytes(b"x")
    os.utime(path, (mtime, mtime))
    return path


def test_a_distributed_checkpoint_directory_is_resumed_from(tmp_path):
    _touch(tmp_path / "step=2.ckpt", 100)
    newest = _touch(tmp_path / "step=4.ckpt", 200, directory=True)
    assert latest_checkpoint(tmp_path) == newest


def test_an_unfinished_save_is_never_the_latest(tmp_path):
    good = _touch(tmp_path / "step=2.ckpt", 100, directory=True)
    _touch(tmp_path / ".step=4.ckpt.partial", 300, directory=True)
    _touch(tmp_path / ".step=4.ckpt", 300)
    assert latest_checkpoint(tmp_path) == good


def test_last_wins_and_an_empty_folder_has_none(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    assert latest_checkpoint(tmp_path / "missing") is None
    _touch(tmp_path / "step=9.ckpt", 300)
    last = _touch(tmp_path / "last.ckpt", 100, directory=True)
    assert latest_checkpoint(tmp_path) == last
