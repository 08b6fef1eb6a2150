"""Shared benchmark helpers: tables, honest peak RSS, appending (never rewriting) RESULTS.md."""

import sys

import pytest

from benchmarks.common import append_results, machine_info, peak_rss_mib, reset_peak_rss, table


def test_table_is_markdown_with_aligned_columns():
    text = table(["name", "ratio"], [["llava", 0.7512], ["vit", 12345.6]])
    lines = text.splitlines()
    assert lines[0] == "| name  | ratio |"
    assert lines[1] == "|-------|-------|"
    assert lines[2:] == ["| llava | 0.751 |", "| vit   | 12346 |"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM and clear_refs are Linux")
def test_peak_rss_window_starts_at_the_reset():
    block = bytearray(300 * 2**20)  # touched: 300 MiB resident
    block[::4096] = b"x" * len(block[::4096])
    with_block = peak_rss_mib()
    del block
    assert reset_peak_rss()
    assert peak_rss_mib() < with_block - 200


def test_results_are_appended_never_rewritten(tmp_path):
    path = tmp_path / "RESULTS.md"
    path.write_text("# Results\n\nkept\n")
    append_results("First", "| a |", command="python -m benchmarks.run x", path=path)
    append_results("Second", "| b |", command="python -m benchmarks.run y", path=path)
    text = path.read_text()
    assert text.startswith("# Results\n\nkept\n")
    assert text.index("## First") < text.index("## Second")
    assert "- Command: `python -m benchmarks.run y`" in text
    assert f"torch {machine_info()['torch']}" in text
