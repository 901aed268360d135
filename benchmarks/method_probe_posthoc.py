"""Post-hoc (exploratory, not the declared test): the method comparison's arms under another linear probe.

The method sweep's declared secondary metric is its class-token probe as the sweep ran it. When that probe turns
out too weak to rank features, the same pre-trainings can be probed again with another recipe, e.g. standardised
inputs (`eval.linear_norm=batchnorm`), one `mst-eval linear` folder per run:

    for d in RUNS/method_smoke/*-r*; do mst-eval linear --checkpoint $d/pretrain --out OUT/$(basename $d) \
        --set eval.linear_norm=batchnorm --set eval.linear_lr=1.0; done
    python benchmarks/method_probe_posthoc.py OUT [--results FILE.md]

Reads every OUT/<run id>/result.json, groups the runs by their sweep cell (the arm) and repeat, and writes each
arm's mean ± s.e., its distance to the random-init probe, the per-seed values and the paired t-test of every arm
against DINO alone (the reference row of the sweep's table). Nothing here enters the declared primary test.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from analysis.stats import Summary, format_p, paired_t, summarize
from mst.atomic import atomic_write_text
from mst.inputs import InputError, read_json_file

ARMS = {  # (mask.strategy, loss.restore_weight) -> the label the method table gives the arm
    ("none", 0.0): "DINO (no mask, no restoration)",
    ("none", 0.6): "DINO + restoration, no mask",
    ("random", 0.6): "MST, random mask",
    ("attention", 0.6): "MST, attention-guided mask",
}
REFERENCE = ARMS[("none", 0.0)]


def read_runs(folder: Path) -> tuple[dict[str, dict[int, float]], dict[str, dict[int, float]], str]:
    """({arm: {repeat: top-1 last}}, {baseline: {repeat: top-1 last}}, the probe's recipe in words)."""
    arms: dict[str, dict[int, float]] = defaultdict(dict)
    baselines: dict[str, dict[int, float]] = defaultdict(dict)
    recipe = ""
    for path in sorted(folder.glob("*-r*/result.json")):
        try:
            record = read_json_file(path, "probe record")
        except InputError as err:
            sys.exit(str(err))
        if not isinstance(record, dict) or record.get("status") != "done":
            sys.exit(f"{path}: not a finished probe record; rerun its mst-eval command")
        cfg, repeat = record["config"], int(path.parent.name.rsplit("-r", 1)[1])
        cell = (cfg["mask"]["strategy"], float(cfg["loss"]["restore_weight"]))
        arms[ARMS[cell]][repeat] = record["metrics"]["top1_last"]
        for name, metrics in (record.get("baselines") or {}).items():
            baselines[name][repeat] = metrics["top1_last"]
        e = cfg["eval"]
        recipe = (f"linear_norm {e.get('linear_norm', 'none')}, lr {e['linear_lr']}, {e['linear_epochs']} epochs, "
                  f"batch {e['linear_batch_size']}, {record.get('mode')}")
    if not arms:
        sys.exit(f"no <run id>/result.json under {folder}; give the folder the mst-eval probes wrote into")
    return arms, baselines, recipe


def cell(s: Summary) -> str:
    return f"{s.mean:.2f}" + (f" ± {s.se:.2f}" if s.se is not None else "")


def report(arms: dict[str, dict[int, float]], baselines: dict[str, dict[int, float]], recipe: str) -> str:
    init = summarize(list(baselines["random init"].values())) if "random init" in baselines else None
    lines = ["# Method comparison, class-token probe re-run post hoc (exploratory)", "",
             (f"Probe: {recipe}. Top-1 (%) at the last epoch on the 10k test split, one probe per pre-training of "
              "`method_smoke`; mean ± s.e. over seeds. Not the declared test (docs/METHOD.md)."), "",
             "| arm | n | linear top-1 | Δ init | vs DINO (paired) |", "|---|---|---|---|---|"]
    ref = arms.get(REFERENCE, {})
    for label in [label for label in ARMS.values() if label in arms]:
        values = arms[label]
        s = summarize(list(values.values()))
        delta = f"{s.mean - init.mean:+.2f}" if init else "n/a"
        versus = "reference"
        seeds = sorted(set(values) & set(ref))
        if label != REFERENCE and len(seeds) < 2:
            versus = f"{len(seeds)} paired seeds: no test"
        elif label != REFERENCE:
            t = paired_t([values[r] for r in seeds], [ref[r] for r in seeds])
            diff = sum(values[r] - ref[r] for r in seeds) / len(seeds)
            versus = f"{diff:+.2f}, t({t.df:g}) = {t.t:.2f}, {format_p(t.p)}"
        lines.append(f"| {label} | {s.n} | {cell(s)} | {delta} | {versus} |")
    for name, values in sorted(baselines.items()):
        s = summarize(list(values.values()))
        lines.append(f"| {name} | {s.n} | {cell(s)} | | |")
    lines += ["", "Per seed (repeat: value):", ""]
    for label, values in [*arms.items(), *baselines.items()]:
        lines.append(f"- {label}: " + ", ".join(f"r{r} {v:.2f}" for r, v in sorted(values.items())))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", type=Path, help="the folder holding one mst-eval linear folder per run id")
    p.add_argument("--results", type=Path, default=None, help="markdown file to write (default: print only)")
    args = p.parse_args(argv)
    text = report(*read_runs(args.folder))
    print(text, end="")
    if args.results:
        atomic_write_text(args.results, text)


if __name__ == "__main__":
    main()
