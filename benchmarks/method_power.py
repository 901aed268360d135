"""Minimum detectable effect of the method comparison's primary test, from measured paired differences.

The primary test (docs/METHOD.md): attention-guided MST − DINO, k-NN top-1 @10, paired over seeds, two-sided,
alpha = 0.05. For n paired seeds whose differences have standard deviation s, the test rejects when
|mean / (s / sqrt(n))| > t_{1 - alpha/2, n-1}; under a true mean difference d the statistic follows a noncentral
t with n - 1 degrees of freedom and noncentrality d sqrt(n) / s (scipy.stats.nct). The minimum detectable effect
at power 1 - beta is the d where that power is reached (found with scipy.optimize.brentq).

The standard deviations are read from a `mst-report tables --test` markdown file (default:
benchmarks/results/method_smoke.md): each paired footnote gives the mean difference ± its s.e. over n seeds, so
s = s.e. x sqrt(n). Writes benchmarks/results/method_power.md.

    python benchmarks/method_power.py [--table FILE.md] [--seeds 3 5 10 15 20 30] [--power 0.8] [--alpha 0.05]
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from scipy.optimize import brentq
from scipy.stats import nct, norm
from scipy.stats import t as student_t

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mst.atomic import atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results"
# a paired footnote, "- [column: ]pair = mean ± s.e. points over n paired seeds; ..." (a table of one column names
# none)
PAIRED = re.compile(r"^- (?:(?P<column>[^:]+): )?(?P<pair>[^:]+?) = (?P<mean>[+-]?[\d.]+) \u00b1 (?P<se>[\d.]+) "
                    r"points over (?P<n>\d+) paired seeds")
PRIMARY = ("MST, attention-guided mask", "DINO (no mask, no restoration)")
PAPER_GAP = 2.3   # MST 73.9 - DINO 71.6, DeiT-S linear top-1 (appendix Table 4 and §8)


@dataclass(frozen=True)
class Difference:
    pair: str
    mean: float
    sd: float
    n: int


def read_differences(path: Path, column: str) -> list[Difference]:
    """Every paired footnote of a rendered table in `column` (its label starts so; a one-column table names
    none): the pair, the mean difference, its s.d. (s.e. x sqrt(n)), n."""
    found = []
    for line in path.read_text().splitlines():
        m = PAIRED.search(line)
        if m and (m["column"] or column).startswith(column):
            n = int(m["n"])
            found.append(Difference(m["pair"], float(m["mean"]), float(m["se"]) * math.sqrt(n), n))
    return found


def power(effect: float, sd: float, n: int, alpha: float) -> float:
    """Power of the two-sided paired t-test with n seeds when the true mean difference is `effect`."""
    df, nc = n - 1, effect * math.sqrt(n) / sd
    crit = student_t.ppf(1 - alpha / 2, df)
    value = float(nct.sf(crit, df, nc) + nct.cdf(-crit, df, nc))
    # scipy's noncentral t gives nan far in its tail (noncentrality above about 10); the normal limit is exact
    # to the digits printed there
    return value if math.isfinite(value) else float(norm.sf(crit - nc) + norm.cdf(-crit - nc))


def minimum_detectable_effect(sd: float, n: int, alpha: float, target: float) -> float:
    """The mean difference (points) that the test detects with power `target`."""
    high = sd
    while power(high, sd, n, alpha) < target:   # power rises with the effect: bracket the root by doubling
        high *= 2
    return float(brentq(lambda d: power(d, sd, n, alpha) - target, 1e-9, high))


def seeds_needed(effect: float, sd: float, alpha: float, target: float) -> int:
    """The fewest paired seeds whose test detects `effect` with power `target`."""
    n = 2
    while power(effect, sd, n, alpha) < target:
        n += 1
    return n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--table", type=Path, default=RESULTS / "method_smoke.md",
                   help="a `mst-report tables --test --format md` file with paired footnotes")
    p.add_argument("--column", default="k-NN (%)",
                   help="the table column whose paired tests to read (default: k-NN (%%), the primary test's)")
    p.add_argument("--seeds", type=int, nargs="+", default=[3, 5, 10, 15, 20, 30], help="seed counts to tabulate")
    p.add_argument("--power", type=float, default=0.8, help="target power (default 0.8)")
    p.add_argument("--alpha", type=float, default=0.05, help="two-sided level (default 0.05)")
    p.add_argument("--out", type=Path, default=RESULTS / "method_power.md", help="markdown file to write")
    args = p.parse_args(argv)
    if not args.table.is_file():
        print(f"error: {args.table} does not exist; pass --table FILE.md (mst-report tables --test --format md)",
              file=sys.stderr)
        return 2
    if min(args.seeds) < 2 or not 0 < args.power < 1 or not 0 < args.alpha < 1:
        print("error: --seeds must be >= 2 and --power, --alpha in (0, 1); e.g. --seeds 5 10 --power 0.8",
              file=sys.stderr)
        return 2
    diffs = read_differences(args.table, args.column)
    if not diffs:
        print(f"error: {args.table} holds no paired footnotes; render it with mst-report tables --test",
              file=sys.stderr)
        return 2
    seeds = sorted(set(args.seeds))
    n_power = 10 if 10 in seeds else seeds[-1]
    lines = [
        "# Minimum detectable effect of the method comparison (paired t-test, two-sided)",
        "",
        (f"alpha = {args.alpha:g}, power = {args.power:g}; s.d. of the paired differences (column "
         f"{args.column}, points) as measured in `{args.table.name}` (s = s.e. x sqrt(n)); noncentral t "
         f"(scipy.stats.nct). "
         f"The paper's MST - DINO gap: {PAPER_GAP} points."),
        "",
        "| pair | measured mean ± s.d. (n) | " + " | ".join(f"MDE, {n} seeds" for n in seeds)
        + f" | power for {PAPER_GAP} at {n_power} seeds | seeds for {PAPER_GAP} |",
        "|---|---|" + "---|" * len(seeds) + "---|---|",
    ]
    for d in diffs:
        primary = " (primary)" if d.pair.startswith(PRIMARY[0]) and d.pair.endswith(PRIMARY[1]) else ""
        mdes = [minimum_detectable_effect(d.sd, n, args.alpha, args.power) for n in seeds]
        lines.append(f"| {d.pair}{primary} | {d.mean:+.2f} ± {d.sd:.2f} ({d.n}) | "
                     + " | ".join(f"{m:.2f}" for m in mdes)
                     + f" | {power(PAPER_GAP, d.sd, n_power, args.alpha):.2f} | "
                     f"{seeds_needed(PAPER_GAP, d.sd, args.alpha, args.power)} |")
    sd_grid = [1.0, 1.5, 2.0, 2.6, 3.0, 3.5]
    lines += ["", "MDE (points) for other s.d. of the paired differences:", "",
              "| s.d. | " + " | ".join(f"{n} seeds" for n in seeds) + " |", "|---|" + "---|" * len(seeds)]
    for sd in sd_grid:
        lines.append(f"| {sd:.1f} | " + " | ".join(f"{minimum_detectable_effect(sd, n, args.alpha, args.power):.2f}"
                                                  for n in seeds) + " |")
    given = sys.argv[1:] if argv is None else argv
    lines += ["", f"- command: `{' '.join(['python benchmarks/method_power.py', *given])}`", ""]
    text = "\n".join(lines)
    atomic_write_text(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
