"""Lazy, indexed access to LLaVA conversation files (JSON list or JSONL).

LLaVA-665k is one ~1 GB JSON list; loading it with ``json.load`` costs several GB of Python
objects in every DataLoader worker. Instead one streaming pass over a memory map records the byte
span of each top-level object (JSONL: each non-blank line) in two int64 arrays; a sample is parsed
only when it is read. The scan jumps from bracket to bracket with a regular expression that skips
whole strings, so Python only runs per bracket, not per byte.
"""

from __future__ import annotations

import json
import mmap
import os
import re
from bisect import bisect_right
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from optica.data.errors import DataError, bad_sample

SUFFIXES = (".json", ".jsonl")
# Everything up to the next bracket, with strings (and brackets inside them) skipped whole.
_SKIP = re.compile(rb'(?:[^"{}\[\]]+|"[^"\\]*(?:\\.[^"\\]*)*")*', re.DOTALL)
_GAP = re.compile(rb"[\s,]*")
_SPACE = re.compile(rb"\s*")
_OPEN, _CLOSE = b"{["[0], b"}]"[0]
_OPENS, _CLOSES = frozenset(b"{["), frozenset(b"}]")


def line_of(buffer: bytes | mmap.mmap, offset: int) -> int:
    """1-based line number of a byte offset (only called to word an error)."""
    return buffer[:offset].count(b"\n") + 1


def _object_end(buf: mmap.mmap, pos: int, path: Path) -> int:
    """Byte just after the object or array that opens at ``pos``."""
    depth, size = 0, len(buf)
    while pos < size:
        char = buf[pos]
        if char in _OPENS:
            depth += 1
        elif char in _CLOSES:
            depth -= 1
            if depth == 0:
                return pos + 1
        else:  # the skip pattern stopped at a quote: a string that never ends
            raise DataError(f"{path}: line {line_of(buf, pos)}: unterminated string")
        pos = _SKIP.match(buf, pos + 1).end()
    raise DataError(f"{path}: line {line_of(buf, size)}: file ends inside an object")


def scan_json_list(buf: mmap.mmap, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Byte spans [start, end) of the objects of a top-level JSON list."""
    pos = _SPACE.match(buf, 3 if buf[:3] == b"\xef\xbb\xbf" else 0).end()
    if buf[pos : pos + 1] != b"[":
        raise DataError(f"{path}: expected a JSON list of samples or JSONL (one per line)")
    starts, ends = [], []
    pos += 1
    while True:
        pos = _GAP.match(buf, pos).end()
        char = buf[pos : pos + 1]
        if char == b"]":
            break
        if char != b"{":
            found = repr(char.decode(errors="replace")) if char else "end of file"
            raise DataError(
                f"{path}: line {line_of(buf, pos)}: expected a sample object, found {found}"
            )
        end = _object_end(buf, pos, path)
        starts.append(pos)
        ends.append(end)
        pos = end
    return np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64)


def scan_jsonl(buf: mmap.mmap) -> tuple[np.ndarray, np.ndarray]:
    """Byte spans of the non-blank lines."""
    data = np.frombuffer(buf, dtype=np.uint8)
    breaks = np.flatnonzero(data == ord("\n"))
    starts = np.concatenate([[0], breaks + 1])
    ends = np.concatenate([breaks, [len(data)]])
    keep = [bool(buf[s:e].strip()) if e - s < 8 else True for s, e in zip(starts, ends)]
    keep = np.asarray(keep, dtype=bool) & (ends > starts)
    return starts[keep].astype(np.int64), ends[keep].astype(np.int64)


def _open_map(path: Path) -> mmap.mmap | bytes:
    with open(path, "rb") as file:
        if os.fstat(file.fileno()).st_size == 0:
            return b""
        return mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)


class ConversationFile:
    """One indexed file. Picklable: the memory map is reopened in each process."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"{self.path}: no such data file")
        buf = _open_map(self.path)
        first = _SPACE.match(buf).end() if len(buf) else 0
        self.jsonl = self.path.suffix == ".jsonl" or buf[first : first + 1] == b"{"
        self.starts, self.ends = scan_jsonl(buf) if self.jsonl else scan_json_list(buf, self.path)
        self._buf, self._pid = buf, os.getpid()

    def __len__(self) -> int:
        return len(self.starts)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_buf": None, "_pid": None}

    def _buffer(self) -> mmap.mmap | bytes:
        if self._buf is None or self._pid != os.getpid():
            self._buf, self._pid = _open_map(self.path), os.getpid()
        return self._buf

    def where(self, index: int) -> str:
        """``file[index]``: cheap, unlike a line number (which reads the file up to the sample),
        so it is used for every note; malformed JSON, rare and fatal, gets the line too."""
        return f"{self.path}[{index}]"

    def load(self, index: int) -> dict:
        """Parses sample ``index``; malformed JSON is a bad sample (file and line)."""
        start, end = int(self.starts[index]), int(self.ends[index])
        try:
            record = json.loads(self._buffer()[start:end])
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            line = line_of(self._buffer(), start) + getattr(err, "lineno", 1) - 1
            raise bad_sample(
                "malformed_json",
                f"#{index}",
                f"{self.path}: line {line}",
                f"malformed JSON ({getattr(err, 'msg', err)}) near byte "
                f"{start + getattr(err, 'pos', 0)}",
            ) from None
        if not isinstance(record, dict):
            message = "not a JSON object"
            raise bad_sample("malformed_json", f"#{index}", self.where(index), message)
        return record


def data_files(paths: str | Path | Sequence[str | Path]) -> list[Path]:
    """Expands files and folders (their ``*.json`` / ``*.jsonl``, sorted) into a file list."""
    items = [paths] if isinstance(paths, (str, Path)) else list(paths)
    files: list[Path] = []
    for item in map(Path, items):
        if item.is_dir():
            found = sorted(p for p in item.iterdir() if p.suffix in SUFFIXES and p.is_file())
            if not found:
                raise DataError(f"{item}: folder has no .json or .jsonl files")
            files += found
        elif item.exists():
            files.append(item)
        else:
            raise DataError(f"{item}: no such data file or folder")
    if not files:
        raise DataError("no data files given")
    return files


class ConversationIndex:
    """All samples of several files, addressed by one global index."""

    def __init__(self, paths: str | Path | Sequence[str | Path]):
        self.files = [ConversationFile(path) for path in data_files(paths)]
        self._offsets = np.cumsum([0, *map(len, self.files)]).tolist()

    def __len__(self) -> int:
        return self._offsets[-1]

    def locate(self, index: int) -> tuple[ConversationFile, int]:
        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} out of range (0..{len(self) - 1})")
        which = bisect_right(self._offsets, index) - 1
        return self.files[which], index - self._offsets[which]

    def load(self, index: int) -> tuple[dict, ConversationFile, int]:
        """The raw record of sample ``index``, with its file and index within that file."""
        file, local = self.locate(index)
        return file.load(local), file, local
