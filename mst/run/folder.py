"""A stage folder opened for one run: checked, locked against a second process, cleared of the temp files
a killed writer leaves behind, and claimed for one config. No torch: the job layer may use it too."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from ..atomic import atomic_write_json, read_json, remove_stale_temps

LOCK_NAME = ".lock"


class StageFolderError(ValueError):
    """The stage folder cannot be used (a file, an empty name); one line saying how to fix it."""


class StageFolderBusy(RuntimeError):
    """Another live process holds the stage folder's lock."""


class RunFolderMismatch(ValueError):
    """The output folder belongs to a run of a different config."""


def check_stage_folder(out: str | Path) -> Path:
    """`out` as a Path when it can be a stage folder; a StageFolderError line otherwise."""
    if str(out).strip() == "":
        raise StageFolderError("the stage folder name is empty (it would train into the current folder); "
                               "give a folder, e.g. --out runs/pretrain")
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise StageFolderError(f"{path} is a file, not a folder; give a new or existing folder")
    return path


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        info = {}
    return f"pid {info.get('pid', '?')} on host {info.get('host', '?')}"


@contextlib.contextmanager
def locked_stage_folder(out: str | Path, wait_s: float = 0.0, main: bool = True) -> Iterator[Path]:
    """Hold an exclusive, non-blocking flock on <out>/.lock while the block runs.

    A second process on the same folder waits up to `wait_s` seconds, then gets StageFolderBusy naming the
    holder; the kernel drops the lock when its holder dies, so a killed run never leaves the folder locked.
    Once the lock is held, temp files left by a killed writer are removed. Ranks other than the main one
    (`main=False`) neither lock nor clean: their rank 0 does both for the whole run.
    """
    path = check_stage_folder(out)
    path.mkdir(parents=True, exist_ok=True)
    if not main:
        yield path
        return
    fd = os.open(path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StageFolderBusy(f"stage folder {path} is in use by {_holder(fd)}; wait for that run "
                                          "to end or stop it, then rerun") from None
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode(), 0)
        remove_stale_temps(path)
        remove_stale_temps(path / "features")
        yield path
    finally:
        os.close(fd)  # releases the lock


def claim_folder(out: Path, chash: str, main: bool = True, check: Callable[[], None] | None = None) -> None:
    """Tie a stage folder to one config: resuming a different config from it would silently mix two runs.
    The main process (`main`) writes the claim, run.json; every process checks it. `check` runs after the
    claim is checked and before it is written (a foreign checkpoint is refused there)."""
    marker = read_json(out / "run.json")
    if marker and marker.get("config_hash") != chash:
        raise RunFolderMismatch(f"{out} holds a run of another config ({marker.get('config_hash')}, this one is "
                                f"{chash}); use a new --out folder or the original settings")
    if check is not None:
        check()
    if marker is None and main:
        atomic_write_json(out / "run.json", {"config_hash": chash})
