"""Downstream evaluation: weighted k-NN, linear probes, the supervised baseline and attention maps.

The stage entry points are imported on first use, so `mst.eval.knn` alone stays a light import.
"""

from __future__ import annotations

import importlib

_ENTRY_POINTS = {
    "run_knn": "knn_stage",
    "run_linear": "linear",
    "run_supervised": "supervised",
    "run_attention": "attention",
    "weighted_knn": "knn",
}

__all__ = ["run_attention", "run_knn", "run_linear", "run_supervised", "weighted_knn"]


def __getattr__(name: str):
    if name in _ENTRY_POINTS:
        return getattr(importlib.import_module(f"{__name__}.{_ENTRY_POINTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
