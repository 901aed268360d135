"""`mst-report`: appendix tables, sweep status and plots from the `result.json` records.

    mst-report tables [--cluster NAME | --runs DIR] [--sweep NAME [--budget B]] [--format term|md|latex|csv]
                      [--out DIR] [--test]
    mst-report status [--cluster NAME | --runs DIR] [--sweep NAME [--budget B]]
    mst-report plot   [--cluster NAME | --runs DIR] [--sweep NAME [--budget B]] [--out DIR]
    mst-report curve  [--cluster NAME | --runs DIR] [--sweep NAME [--budget B] | --run DIR] [--metric top1@10]
                      [--out DIR]

Imports stay inside the commands so that `--help` is instant; nothing here ever imports torch.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn

from mst.boundary import console_script, print_error
from mst.echo import shown

FORMATS = ("term", "md", "latex", "csv")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not argparse's usage block
        _fail(f"{message}; see {self.prog} --help")


def _fail(message: str) -> NoReturn:
    print_error(message, 2)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mst-report", description="Appendix tables, sweep status and plots from result.json "
                     "records (mean \u00b1 s.e. over seeds beside the paper's numbers).")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--runs", type=Path, help="runs root holding <sweep>/<run_id>/<stage>/ (default: the "
                       "--cluster profile's storage.run_root, else runs)")
        p.add_argument("--cluster", metavar="NAME|PATH.yaml", help="cluster profile whose storage.run_root holds "
                       "the records (dcu128, v100x32, ... or a profile file); --runs overrides it")
        p.add_argument("--sweep", action="append", metavar="NAME",
                       help="sweep name (sweeps/NAME.yaml) or a sweep .yaml path; repeatable (default: every "
                       "sweep folder under --runs)")
        p.add_argument("--budget", metavar="NAME", help="the named budget the --sweep sweeps ran at (e.g. smoke; "
                       "the same as naming them <name>_<budget>)")

    t = sub.add_parser("tables", help="render the appendix tables")
    common(t)
    t.add_argument("--format", default="term", help=f"one of {', '.join(FORMATS)} (default: term)")
    t.add_argument("--out", type=Path, help="write one file per sweep into this folder instead of printing")
    t.add_argument("--test", action="store_true", help="add a p-value per row against its reference row "
                   "(paired t-test over seeds when the seeds match, Welch otherwise)")
    s = sub.add_parser("status", help="done / running / failed / preempted / queued / missing per sweep and stage")
    common(s)
    p = sub.add_parser("plot", help="one PNG per sweep: metric vs swept value with s.e. bars and the paper's points")
    common(p)
    p.add_argument("--out", type=Path, help="folder for the PNGs (default: <runs>/plots)")
    c = sub.add_parser("curve", help="learning curves (eval.curve_steps): k-NN vs pre-training step per cell, "
                       "mean \u00b1 s.e. over seeds, beside the random-init and raw-pixel lines")
    common(c)
    c.add_argument("--run", type=Path, metavar="DIR", help="one run instead of sweeps: its pretrain folder "
                   "(mst-pretrain --out) or the run folder holding pretrain/")
    c.add_argument("--metric", default="top1@10", help="k-NN metric of the curve (default: top1@10)")
    c.add_argument("--out", type=Path, help="folder for the PNGs (default: <runs>/plots; with --run, DIR)")
    return parser


def _resolve_runs(args: argparse.Namespace) -> None:
    """args.runs: --runs, else the --cluster profile's run root, else ./runs (what mst-sweep wrote to)."""
    if args.runs is not None:
        return
    if args.cluster is None:
        args.runs = Path("runs")
        return
    from jobs.profiles import ProfileError, load_profile  # torch-free: YAML and the codec

    try:
        args.runs = Path(load_profile(args.cluster).storage.run_root)
    except ProfileError as err:
        _fail(str(err))


def _load_sweeps(args: argparse.Namespace) -> list:
    """The sweeps to report: named ones, or every sweep folder under --runs that has a sweep file."""
    from jobs.sweep import SweepError, budgeted, load_sweep

    from .collect import sweeps_in

    if not args.runs.is_dir():
        _fail(f"runs folder {args.runs} does not exist; pass --runs DIR (where mst-sweep wrote the runs)")
    if args.budget and not args.sweep:
        _fail("--budget needs --sweep NAME (every sweep folder under --runs already names its budget)")
    if args.sweep:
        try:
            return [load_sweep(budgeted(name, args.budget) if args.budget else name) for name in args.sweep]
        except SweepError as err:
            _fail(str(err))
    names = sweeps_in(args.runs)
    if not names:
        _fail(f"no sweep folders under {args.runs}; run `mst-sweep submit SWEEP` first or pass --runs DIR")
    sweeps = []
    for name in names:
        try:
            sweeps.append(load_sweep(name))
        except SweepError as err:
            print(shown(f"warning: runs/{name} skipped: {err}"), file=sys.stderr)
    if not sweeps:
        _fail(f"none of the sweep folders under {args.runs} ({', '.join(names)}) has a valid sweeps/*.yaml; "
              f"pass --sweep PATH.yaml")
    return sweeps


def _build(args: argparse.Namespace, test: bool = False) -> list:
    from .assemble import TableError, build_table
    from .collect import collect
    from .tables import spec_of

    sweeps = _load_sweeps(args)
    try:
        specs = [spec_of(sweep) for sweep in sweeps]  # a malformed table block fails before records are read
        records = collect(args.runs, [s.name for s in sweeps])
        return [build_table(spec, s, records, test=test) for spec, s in zip(specs, sweeps)]
    except TableError as err:
        _fail(str(err))


def _console():
    from rich.console import Console

    # piped output (make demo | tee, CI logs) would otherwise be cut to 80 columns
    return Console() if sys.stdout.isatty() else Console(width=200)


def _out_folder(out: Path) -> Path:
    """--out names a folder, new or existing; never a file (it would be replaced by nothing it can hold)."""
    if out.exists() and not out.is_dir():
        _fail(f"--out {out} is a file, not a folder; give a new or existing folder for the output")
    return out


def _write(path: Path, write, *args) -> None:
    """Run `write(*args)` (an atomic write of `path`); a full disk or read-only folder is one line, and the
    atomic write leaves no part of the file behind."""
    try:
        write(*args)
    except OSError as err:
        _fail(f"cannot write {err.filename or path}: {err.strerror or err}; free space or make {path.parent} "
              "writable, or give another --out (nothing was half-written)")
    print(f"wrote {path}")


def cmd_tables(args: argparse.Namespace) -> int:
    if args.format not in FORMATS:
        _fail(f"unknown format '{args.format}'; choose one of {', '.join(FORMATS)}")
    from .render import EXTENSIONS, render, to_rich

    tables = _build(args, test=args.test)
    if not args.sweep:
        _say_tables_without_records(args.runs, {table.spec.id for table in tables})
    if args.out is not None:
        from mst.atomic import atomic_write_text

        out = _out_folder(args.out)
        texts = [(out / f"{table.sweep}.{EXTENSIONS[args.format]}", render(table, args.format)) for table in tables]
        for path, text in texts:  # every table rendered first: a bad one stops before anything is written
            _write(path, atomic_write_text, path, text)
        return 0
    if args.format == "term":
        console = _console()
        for table in tables:
            console.print(to_rich(table))
            console.print()
        return 0
    sys.stdout.write("\n".join(render(table, args.format) for table in tables))
    return 0


def _say_tables_without_records(runs: Path, shown: set[str]) -> None:
    """One line on stderr naming the tables that no sweep folder under `runs` fills (stdout stays the tables)."""
    from .tables import table_sweeps

    missing = [f"{table_id} ({sweep})" for table_id, sweep in sorted(table_sweeps().items()) if table_id not in shown]
    if missing:
        print(f"note: no records under {runs} for table(s) {', '.join(missing)}; `mst-sweep submit SWEEP --budget "
              f"smoke --cluster local --runs {runs}` fills one", file=sys.stderr)


def cmd_status(args: argparse.Namespace) -> int:
    from jobs.rundir import RunFolderError

    from .collect import collect
    from .status import sweep_status, to_rich

    sweeps = _load_sweeps(args)
    records = collect(args.runs, [s.name for s in sweeps])
    try:
        statuses = [(sweep_status(sweep, records, args.runs, specs), len(specs))
                    for sweep, specs in ((s, s.expand()) for s in sweeps)]
    except RunFolderError as err:  # a malformed manifest
        _fail(str(err))
    from rich.markup import escape

    console = _console()
    for status, total in statuses:
        console.print(to_rich(status, total))
    for skipped in records.skipped:
        console.print(f"[red]skipped record[/red] {escape(shown(skipped.path))}: {escape(shown(skipped.reason))}",
                      highlight=False)
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from .plots import plot_table

    tables = _build(args)
    out = _out_folder(args.out if args.out is not None else args.runs / "plots")
    for table in tables:
        path = out / f"{table.sweep}.png"
        _write(path, plot_table, table, path)
    return 0


def cmd_curve(args: argparse.Namespace) -> int:
    from .collect import collect
    from .curves import CurveError, curves_text, plot_curves, run_curves, sweep_curves

    try:
        if args.run is not None:
            if args.sweep:
                _fail("--run and --sweep are exclusive; pass one run folder or sweep names")
            found = [(run_curves(args.run, args.metric), (args.out or args.run) / "curve.png")]
        else:
            sweeps = _load_sweeps(args)
            records = collect(args.runs, [s.name for s in sweeps])
            out = args.out if args.out is not None else args.runs / "plots"
            found = [(sweep_curves(records.frame, s.name, args.metric), out / f"{s.name}_curve.png") for s in sweeps]
    except CurveError as err:
        _fail(str(err))
    for curves, path in found:
        sys.stdout.write(curves_text(curves))
        print(f"wrote {plot_curves(curves, path)}")
    return 0


@console_script
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _resolve_runs(args)
    return {"tables": cmd_tables, "status": cmd_status, "plot": cmd_plot, "curve": cmd_curve}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
