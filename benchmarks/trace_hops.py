"""The stops a swept value makes through the project's code, counted from the real calls (sys.setprofile).

    python benchmarks/trace_hops.py name [--sweep mask_prob] [--cluster dcu128]
        A sweep's name from jobs.launcher.submit (a --dry-run submission: nothing is written or submitted)
        to the sbatch text and the run folder.
    python benchmarks/trace_hops.py mask.prob [--sweep mask_prob_smoke] [--value 0.25]
        mask.prob from the sweep file (jobs.launcher.load_for_cluster) through the job callable to
        mst/masking.py: the cell with that value is pre-trained in this process on cluster `local` until its
        first mask is drawn (mst.masking.make_mask), then stopped by SIGTERM at the next step boundary (the job's own stop path).

A stop is a function of mst/, jobs/ or analysis/ called with an argument that carries the value: for the
name, a string or path holding it; for mask.prob, a `prob` argument equal to the value, a mapping with the
key "mask.prob", or an object or mapping whose `mask` holds `prob` (searched 4 levels deep through
mappings, sequences, dataclasses and project objects). A return is a stop in a file the walk had left
before. Each function counts once, in the order it is first called (a loop over runs or cells calls many
again); the number of calls in all is printed beside.
Prints every stop (file:line function) and the counts; the numbers depend on the code only.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path, PurePath
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PROJECT = tuple(str(ROOT / package) + os.sep for package in ("mst", "jobs", "analysis"))
MASKING = os.path.join("mst", "masking.py")
DEPTH, WIDTH = 4, 64  # how deep and how wide an argument is searched for the value


def carries(obj: Any, match: Callable[[Any], bool], depth: int = DEPTH, seen: set[int] | None = None) -> bool:
    """Whether `obj` is or holds (within `depth` levels) something `match` accepts."""
    if match(obj):
        return True
    seen = set() if seen is None else seen
    if depth == 0 or id(obj) in seen or isinstance(obj, (str, bytes, int, float, PurePath)):
        return False
    seen.add(id(obj))
    if isinstance(obj, dict):
        children = [x for kv in list(obj.items())[:WIDTH] for x in kv]
    elif isinstance(obj, (list, tuple, set, frozenset)):
        children = list(obj)[:WIDTH]
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        children = [getattr(obj, f.name, None) for f in dataclasses.fields(obj)]
    elif type(obj).__module__.split(".")[0] in ("mst", "jobs", "analysis") and hasattr(obj, "__dict__"):
        children = list(vars(obj).values())[:WIDTH]
    else:
        return False
    return any(carries(child, match, depth - 1, seen) for child in children)


def name_match(name: str) -> Callable[[Any], bool]:
    return lambda obj: (isinstance(obj, str) and name in obj) or (isinstance(obj, PurePath) and name in str(obj))


def prob_match(value: float) -> Callable[[Any], bool]:
    def holds(v: Any) -> bool:
        return v == value if isinstance(v, float) else isinstance(v, (list, tuple)) and value in v

    def match(obj: Any) -> bool:
        if isinstance(obj, dict):
            mask = obj.get("mask")
            return holds(obj.get("mask.prob")) or (isinstance(mask, dict) and holds(mask.get("prob")))
        mask = getattr(obj, "mask", None) if not isinstance(obj, (str, bytes, int, float)) else None
        return mask is not None and not isinstance(mask, dict) and holds(getattr(mask, "prob", None))
    return match


class Walk:
    """The stops, in call order."""

    def __init__(self, carried: Callable[[dict[str, Any]], bool], until: Callable[[str, str], bool] | None = None
                 ) -> None:
        self.carried, self.until = carried, until
        self.stops: list[tuple[str, int, str]] = []
        self.reached = False

    def profile(self, frame: Any, event: str, arg: Any) -> None:
        if event != "call" or not frame.f_code.co_filename.startswith(PROJECT):
            return
        code = frame.f_code
        args = {n: frame.f_locals.get(n) for n in code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]}
        if not self.carried(args):
            return
        rel = os.path.relpath(code.co_filename, ROOT)
        if self.reached and rel != MASKING:  # past the goal: only the calls inside mst/masking.py still count
            return
        self.stops.append((rel, frame.f_lineno, getattr(code, "co_qualname", code.co_name)))
        if self.until and not self.reached and self.until(rel, code.co_name):
            self.reached = True
            os.kill(os.getpid(), signal.SIGTERM)  # the job's stop flag: save at the next step boundary

    def run(self, fn: Callable[[], Any]) -> Any:
        sys.setprofile(self.profile)
        try:
            return fn()
        finally:
            sys.setprofile(None)

    def report(self, what: str) -> None:
        first: dict[tuple[str, str], int] = {}  # (file, function) -> its line, in the order first called
        for rel, line, func in self.stops:
            first.setdefault((rel, func), line)
        files: list[str] = []
        returns, previous = 0, None
        for (rel, func), line in first.items():
            returns += rel != previous and rel in files
            files += [] if rel in files else [rel]
            previous = rel
            print(f"  {rel}:{line} {func}")
        print(f"{what}: {len(first)} stops in {len(files)} files, {returns} of them returns to a file already "
              f"left ({len(self.stops)} calls in all)")


def trace_name(sweep: str, cluster: str) -> None:
    from jobs.launcher import submit

    walk = Walk(lambda args: any(carries(v, name_match(sweep)) for v in args.values()))
    with tempfile.TemporaryDirectory() as runs:
        walk.run(lambda: submit(sweep, cluster, runs_root=runs, dry_run=True, out=lambda line: None))
    walk.report(f"sweep name '{sweep}', jobs.launcher.submit --dry-run on {cluster}")


def trace_prob(sweep: str, value: float) -> None:
    from jobs.launcher import load_for_cluster
    from jobs.stage_job import stage_job
    from mst.train import Interrupted

    match = prob_match(value)
    walk = Walk(lambda args: any((n == "prob" and v == value) or carries(v, match) for n, v in args.items()),
                until=lambda rel, func: rel == MASKING and func == "make_mask")

    def one_cell() -> None:
        _, profile, runs = load_for_cluster(sweep, "local")
        run = next(r for r in runs if r.config.mask.prob == value)
        with tempfile.TemporaryDirectory() as root:
            try:
                stage_job(run, "pretrain", profile, Path(root))()
            except Interrupted:
                pass

    walk.run(one_cell)
    if not walk.reached:
        sys.exit(f"error: mask.prob {value} never reached mst/masking.py; pick a value the sweep's cells hold")
    walk.report(f"mask.prob = {value} of sweep '{sweep}', sweep file to mst/masking.py")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["name", "mask.prob"])
    parser.add_argument("--sweep", help="sweep name (default: mask_prob; mask_prob_smoke for mask.prob)")
    parser.add_argument("--cluster", default="dcu128", help="profile of the dry-run submission (name)")
    parser.add_argument("--value", type=float, default=0.25, help="the mask.prob value to follow (mask.prob)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if args.what == "name":
        trace_name(args.sweep or "mask_prob", args.cluster)
    else:
        trace_prob(args.sweep or "mask_prob_smoke", args.value)


if __name__ == "__main__":
    main()
