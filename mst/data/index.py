"""The file list of an ImageNet-style folder, listed once and cached as JSON.

Listing 1.28M files on a shared filesystem from every rank of a 128-device job costs minutes and loads the
file server; the list is written once (atomically, as plain JSON: data, never code) to a cache folder, keyed by
the folder's resolved path and the modification times of the folder and of each class folder (adding or
removing a file changes its folder's mtime, so a stale list is never used). A class folder without images is
reported in one line and keeps its label.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from mst.atomic import atomic_write_json, read_json

log = logging.getLogger(__name__)
VERSION = 1


def default_cache_dir() -> Path:
    """$MST_CACHE_DIR, else $XDG_CACHE_HOME/mst, else ~/.cache/mst."""
    if os.environ.get("MST_CACHE_DIR"):
        return Path(os.environ["MST_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mst"


def _walk(folder: Path, extensions: tuple[str, ...]) -> list[str]:
    """Image files under `folder` (recursively, links followed as ImageFolder does), sorted, relative paths."""
    found = []
    for dirpath, _, names in os.walk(folder, followlinks=True):
        found += [os.path.relpath(os.path.join(dirpath, n), folder) for n in names if n.lower().endswith(extensions)]
    return sorted(found)


def index_key(folder: Path, classes: list[str]) -> str:
    stamp = [str(folder), os.stat(folder).st_mtime_ns] + [[c, os.stat(folder / c).st_mtime_ns] for c in classes]
    return hashlib.sha256(json.dumps([VERSION, stamp]).encode()).hexdigest()[:24]


def list_images(folder: str | Path, class_to_idx: dict[str, int], extensions: tuple[str, ...],
                cache_dir: str | Path | None = None) -> list[tuple[str, int]]:
    """(path, label) of every image of every class folder, from the cache when it is current."""
    given, folder = Path(folder), Path(folder).resolve()
    classes = sorted(class_to_idx, key=class_to_idx.get)
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    path = cache / f"folder-index-{index_key(folder, classes)}.json"
    cached = read_json(path)
    if (isinstance(cached, dict) and cached.get("folder") == str(folder) and cached.get("classes") == classes
            and isinstance(cached.get("files"), list) and len(cached["files"]) == len(classes)
            and all(isinstance(files, list) and all(isinstance(f, str) for f in files) for files in cached["files"])):
        per_class = cached["files"]
    else:
        per_class = [_walk(folder / c, extensions) for c in classes]
        try:
            atomic_write_json(path, {"version": VERSION, "folder": str(folder), "classes": classes,
                                     "files": per_class})
        except OSError as err:     # a read-only cache only costs the next job another listing
            log.warning("could not write the folder index %s: %s", path, err)
    for name, files in zip(classes, per_class):
        if not files:
            log.warning("class folder %s has no images; its label %d gets no samples", folder / name,
                        class_to_idx[name])
    return [(str(given / c / f), class_to_idx[c]) for c, files in zip(classes, per_class) for f in files]
