"""The baselines cache entry, typed: `<runs root>/.baselines/<key>/baselines.json` (mst/eval/baselines.py).

One frozen dataclass is the format: `write_entry` encodes it with the shared codec's encoder, `read_entry`
decodes it with the codec and then checks it against what the reading stage expects (its key, and the metric
names the stage registry gives it). Entries written before this module (schema 1, the same fields) read as
they are. Torch-free: no network, no tensor, nothing unpickled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_json, read_json
from ..config.codec import DecodeError, WrittenError, decode, encode, written
from ..stages import STAGES as REGISTRY
from ..stages import get_stage

SCHEMA_VERSION = 1
"""The entry format's version; an entry of any other is recomputed."""
STAGES = tuple(name for name, spec in REGISTRY.items() if spec.frozen_probe)
"""The stages that have baselines (knn, linear_cls, linear_dino): the registry's frozen-backbone probes."""
LABELS = ("random init", "raw pixels")
"""The baselines of an entry, in the order a record shows them."""
CACHE_FOLDER = ".baselines"   # hidden: the report and status never take it for a sweep
CACHE_NAME = "baselines.json"


def _labels_checked(value: Any) -> Any:
    """The written `baselines` mapping, refused unless it holds exactly LABELS."""
    if isinstance(value, dict) and set(value) != set(LABELS):
        raise WrittenError(f"must hold exactly {', '.join(LABELS)}")
    return value


@dataclass(frozen=True, kw_only=True)
class BaselinesEntry:
    """One cached entry, its fields in the order they are written."""

    version: int
    """The entry format's version, SCHEMA_VERSION."""
    key: str
    """The cache key (mst/eval/baselines.py `cache_key` of `inputs`), the name of the entry's folder."""
    inputs: dict[str, Any] = field(default_factory=dict)
    """What the values depend on (stage, backbone shape, images, evaluation settings, seed, device, versions);
    written for whoever inspects the cache, not read back."""
    baselines: dict[str, dict[str, int | float]] = field(metadata=written(_labels_checked))
    """Baseline label (LABELS) -> metric name -> value, under the stage's own metric names (best_epoch is an
    integer and stays one, as in the stage's record)."""
    wall_time_s: float | None = None
    """Seconds the two baselines took to compute (None: not recorded)."""
    computed_at: str | None = None
    """When they were computed, UTC, e.g. 2026-01-31T12:00:00Z (None: not recorded)."""


def expected_metrics(stage: str, knn_ks: tuple[int, ...] | list[int]) -> set[str]:
    """The metric names `stage` reports with these k-NN k values (mst.stages): what its cached baselines hold."""
    return set(get_stage(stage).metric_names(knn_ks))


def decode_entry(data: Any, key: str, names: set[str]) -> BaselinesEntry | str:
    """The entry `data` (parsed JSON) when it is a usable one for `key` with metrics `names`; else why not."""
    if not isinstance(data, dict):
        return "not a JSON object"
    if data.get("version") != SCHEMA_VERSION or data.get("key") != key:  # before the fields: another schema's
        return f"version {data.get('version')!r} / key {data.get('key')!r}, expected {SCHEMA_VERSION} / {key}"
    try:
        entry = decode(BaselinesEntry, data, "entry")
    except DecodeError as err:
        return str(err)
    for label, metrics in entry.baselines.items():
        if set(metrics) != names:
            return f"'{label}' does not hold the metrics {', '.join(sorted(names))}"
    return entry


def read_entry(path: Path, key: str, names: set[str]) -> tuple[dict | None, str | None]:
    """(the cached baselines, None) when usable; (None, why not) when the file is there but unusable;
    (None, None) when there is no file."""
    if not path.is_file():
        return None, None
    data = read_json(path)
    found = "not a JSON object (or not a regular file)" if data is None else decode_entry(data, key, names)
    return (None, found) if isinstance(found, str) else (found.baselines, None)


def write_entry(path: Path, entry: BaselinesEntry) -> None:
    """Write `entry` atomically, in the codec's plain form (the bytes main's hand-built dict gave)."""
    atomic_write_json(path, encode(entry))
