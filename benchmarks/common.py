"""Helpers every benchmark shares: the machine and versions a result was measured on, honest
resident-memory readings, medians, a plain-text table, and appending to ``RESULTS.md``.

Peak RSS comes from the kernel (``VmHWM`` in ``/proc/self/status``); writing ``5`` to
``/proc/self/clear_refs`` resets it, so a benchmark can report the peak of the measured phase
alone, without the imports and model loading before it.
"""

from __future__ import annotations

import datetime
import os
import platform
import resource
import shlex
import statistics
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
_PACKAGES = ("torch", "transformers", "lightning", "optica")


def cpu_name() -> str:
    """The processor's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, str]:
    """Machine, OS, Python and package versions: what a result needs to be comparable."""
    info = {
        "date": datetime.date.today().isoformat(),
        "cpu": f"{cpu_name()}, {os.cpu_count()} cores",
        "memory": f"{_total_memory_gib():.0f} GiB",
        "python": platform.python_version(),
    }
    for package in _PACKAGES:
        info[package] = _version(package)
    return info


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _total_memory_gib() -> float:
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return pages / 2**30


def _status_kib(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return float(line.split()[1])
    except OSError:
        return None
    return None


def rss_mib() -> float:
    """This process's resident memory now."""
    kib = _status_kib("VmRSS")
    return (kib or 0.0) / 1024


def reset_peak_rss() -> bool:
    """Starts a new peak-RSS window (Linux); False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_mib() -> float:
    """Peak resident memory since the last :func:`reset_peak_rss` (or process start)."""
    kib = _status_kib("VmHWM")
    if kib is None:  # not Linux: ru_maxrss is KiB on Linux, bytes on macOS
        scale = 1 if sys.platform.startswith("linux") else 1 / 1024
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    return kib / 1024


def median(values: Sequence[float]) -> float:
    """The median (0.0 for no values, so a failed run still prints a table)."""
    return statistics.median(values) if values else 0.0


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table (readable as plain text too)."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def command_line() -> str:
    """The command that ran this benchmark, as a user would type it."""
    return " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv])


def machine_block(info: dict[str, str] | None = None) -> str:
    """The machine and versions as one Markdown line."""
    info = info or machine_info()
    return "; ".join(f"{k} {v}" for k, v in info.items())


def append_results(title: str, body: str, *, command: str, path: Path = RESULTS) -> None:
    """Appends a ``## title`` section (machine, command, body) to ``RESULTS.md``; never rewrites
    what is there, so every benchmark's history stays."""
    section = f"\n## {title}\n\n- Machine: {machine_block()}\n- Command: `{command}`\n\n{body}\n"
    with path.open("a", encoding="utf-8") as file:
        file.write(section)
