"""Context for the method table: k-NN of the untrained network and of raw pixels on the sweep's own images.

For each repeat of a sweep (default method_smoke), the knn stage's baselines (mst/eval/baselines.py, the same
code that writes `baselines` into the knn records under eval.baselines): the weighted k-NN (the sweep's k values
and temperature) on
  - the class token of the backbone at random initialisation: exactly the weights that repeat's runs start
    from (every arm of a repeat starts from the same backbone: same seed, backbone built first);
  - raw pixels (the normalised evaluation image, flattened; the same for every repeat),
on the same training subset (k-NN bank) and test subset as the sweep's knn stage. With --runs, they are read
from (or added to) that runs root's baselines cache, and the loss balance each finished pre-training recorded
(final L_rec, L_dino and the gradient-norm ratio of v1 L_rec to v2 L_dino on the backbone) is added, per cell.
Writes a markdown file.

    python benchmarks/method_context.py [--sweep method_smoke] [--runs DIR] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from analysis.stats import summarize
from jobs.sweep import load_sweep
from mst.atomic import atomic_write_text
from mst.eval.baselines import baselines_for

RESULTS = Path(__file__).resolve().parent / "results"


def balance_lines(sweep, runs: Path) -> list[str]:
    """Per cell, mean ± s.e. over the finished pre-trainings of the recorded final losses and balance."""
    keys = ("loss_rec", "loss_dino", "grad_norm_rec", "grad_norm_dino", "grad_ratio_rec_dino")
    by_cell: dict[str, dict[str, list[float]]] = {}
    for run in sweep.expand():
        path = runs / sweep.name / run.run_id / "pretrain" / "result.json"
        if not path.is_file():
            continue
        record = json.loads(path.read_text())
        if record.get("status") != "done":
            continue
        label = ", ".join(f"{k}={v}" for k, v in run.cell.items())
        cell = by_cell.setdefault(label, {k: [] for k in keys})
        for k in keys:
            if record["metrics"].get(k) is not None:
                cell[k].append(float(record["metrics"][k]))

    def text(values: list[float]) -> str:
        if not values:
            return "—"
        s = summarize(values)
        return f"{s.mean:.3g} ± {s.se:.2g}" if s.se is not None else f"{s.mean:.3g}"
    intro = ("Loss balance at the last step of each pre-training (mean ± s.e. over the finished seeds; the "
             "gradient norms are of v1 L_rec and v2 L_dino on the student backbone; — where a loss is off):")
    lines = [intro, "", "| cell | n | L_rec | L_dino | ‖∇ v1 L_rec‖ | ‖∇ v2 L_dino‖ | ratio rec / dino |",
             "|---|---|---|---|---|---|---|"]
    for label, cell in by_cell.items():
        lines.append(f"| {label} | {len(cell['loss_dino'])} | " + " | ".join(text(cell[k]) for k in keys) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sweep", default="method_smoke", help="sweep name or .yaml path (default: method_smoke)")
    p.add_argument("--runs", default=None, help="runs root of the sweep: add the pre-trainings' loss balance")
    p.add_argument("--out", default=None, help="markdown file (default: benchmarks/results/<sweep>_context.md)")
    args = p.parse_args(argv)
    sweep = load_sweep(args.sweep)
    firsts = {}
    for run in sweep.expand():            # one config per repeat: its seed fixes the initial backbone
        firsts.setdefault(run.repeat, run.config)
    cfg = firsts[0]
    e = cfg.eval
    with tempfile.TemporaryDirectory(prefix="method-context-") as scratch:
        root = Path(args.runs) if args.runs else Path(scratch)  # a runs root's cache is read and kept
        init, raw = {}, {}
        for repeat, c in sorted(firsts.items()):
            found = baselines_for("knn", c, root)
            init[c.train.seed], raw = found["random init"], found["raw pixels"]
            print(f"repeat {repeat} (seed {c.train.seed}): random init top-1@10 "
                  f"{init[c.train.seed]['top1@10']:.2f}", flush=True)
    ks = [k for k in e.knn_ks if k in (10, 20)] or list(e.knn_ks[:2])
    lines = [f"# Context for sweep {sweep.name}: untrained network and raw pixels", "",
             (f"Weighted k-NN (T = {e.knn_temperature}) on the sweep's {cfg.data.train_subset or 'all'} training (bank) / "
              f"{cfg.data.test_subset or 'all'} test Fashion-MNIST images, top-1 (%)."), "",
             "| features | " + " | ".join(f"top-1 @{k}" for k in ks) + " |",
             "|---|" + "---|" * len(ks)]
    for seed, res in init.items():
        lines.append(f"| random init, seed {seed} | " + " | ".join(f"{res[f'top1@{k}']:.2f}" for k in ks) + " |")
    cells = []
    for k in ks:
        s = summarize([r[f"top1@{k}"] for r in init.values()])
        cells.append(f"{s.mean:.2f} ± {s.se:.2f}" if s.se is not None else f"{s.mean:.2f}")
    lines.append(f"| random init, mean ± s.e. (n = {len(init)}) | " + " | ".join(cells) + " |")
    lines.append("| raw pixels | " + " | ".join(f"{raw[f'top1@{k}']:.2f}" for k in ks) + " |")
    if args.runs:
        lines += ["", *balance_lines(sweep, Path(args.runs))]
    runs_arg = " --runs RUNS" if args.runs else ""   # RUNS: the runs root the sweep was run into
    lines += ["", f"- command: `python benchmarks/method_context.py --sweep {sweep.name}{runs_arg}`", ""]
    out = Path(args.out) if args.out else RESULTS / f"{sweep.name}_context.md"
    atomic_write_text(out, "\n".join(lines))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
