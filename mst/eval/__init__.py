"""Downstream evaluation: weighted k-NN, linear probes, the supervised baseline and attention maps.

`mst.eval.run_<stage>` is the entry point the stage registry (mst/stages.py) names for each evaluation stage,
imported on first use, so `mst.eval.knn` alone stays a light import.
"""

from __future__ import annotations

import importlib

from ..stages import STAGES

# run_<stage> -> its module, from the registry's "module:function" entries inside this package
_ENTRY_POINTS = {function: module
                 for module, _, function in (spec.entry.partition(":") for spec in STAGES.values())
                 if module.startswith(__name__ + ".")}

__all__ = list(_ENTRY_POINTS)


def __getattr__(name: str):
    if name in _ENTRY_POINTS:
        return getattr(importlib.import_module(_ENTRY_POINTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
