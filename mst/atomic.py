"""Atomic file writes (temp file, fsync, rename), JSON-lines appends and tolerant JSON reads (through the bounded
readers of mst.inputs); no torch, usable by every layer."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

TEMP_SUFFIX = ".tmp"  # with a leading dot: how remove_stale_temps knows the temp files of atomic writes


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the whole new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        os.fchmod(fd, 0o666 & ~_umask())   # mkstemp makes files owner-only; results are meant to be shared
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def read_json(path: str | Path) -> dict | None:
    """The JSON object at `path`, or None when the file is missing or unusable: unreadable, not JSON, not an
    object, or refused by mst.inputs (not a regular file, too large, too deep, an integer beyond 64 bits).
    Never blocks."""
    from .inputs import read_json_file

    try:
        data = read_json_file(path, "file")
    except (OSError, ValueError):  # inputs.InputError is a ValueError
        return None
    return data if isinstance(data, dict) else None


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Delete the temp files that an atomic write killed before its rename left in `folder` (not below it).

    Only safe while no other process writes there: the stage folder's lock holder calls it."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.glob(f".*{TEMP_SUFFIX}") if p.is_file() and not p.is_symlink()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def append_jsonl(path: str | Path, record: dict) -> None:
    """Append one line; a torn last line left by an earlier writer is ended first, so it stays alone."""
    path = Path(path)
    with open(path, "ab+") as f:
        if f.tell() > 0:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                f.write(b"\n")
        f.write((json.dumps(record) + "\n").encode())


def truncate_jsonl(path: str | Path, keep: Callable[[dict], bool]) -> None:
    """Keep only the lines for which `keep(record)` holds: a log resumed from a checkpoint then reads like an
    uninterrupted one (lines written after the checkpoint are dropped). Torn lines are dropped too; a log past
    mst.inputs' bound is one InputError line."""
    from .inputs import read_jsonl

    path = Path(path)
    if path.is_file():
        kept = [json.dumps(r) for r in read_jsonl(path, "metrics log") if keep(r)]
        atomic_write_text(path, "\n".join(kept) + "\n" if kept else "")
