"""Submission speed and scheduler load on the local Slurm cluster (clusters/local-slurm/start.sh).

1. The time `mst-sweep submit` takes for a 100-run sweep (one 100-task job array), end to end as a user
   sees it (interpreter start, sweep expansion, config files, sbatch), and inside `submit()` alone. Goal <= 5 s.
2. The scheduler calls `mst-sweep status` makes over a minute while someone runs it every 2 s: every sacct
   and squeue call is counted at the process boundary (logging wrappers first on PATH).

The submitted jobs are cancelled at once; nothing trains.

    python benchmarks/bench_submit.py [--cluster local-slurm] [--tasks 100] [--status-seconds 60]
Writes benchmarks/results/submit.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results" / "submit.md"
SWEEP = """name: {name}
table: A10
preset: tiny
repeats: {tasks}
base_seed: 0
stages: [pretrain]
overrides: {{train.epochs: 1}}
grid: {{}}
"""


def cancel_all(runs: Path, name: str, env: dict[str, str]) -> None:
    from jobs import rundir
    from mst.inputs import read_jsonl

    manifest = rundir.SweepFolder(runs, name).manifest
    ids = sorted({str(r["job_id"]).split("_")[0] for r in read_jsonl(manifest)})
    if ids:
        subprocess.run(["scancel", *ids], env=env, check=False, capture_output=True, timeout=60)


def shim(bin_dir: Path, log: Path) -> None:
    """sacct/squeue wrappers that log each call, then run the real tool."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for tool in ("sacct", "squeue"):
        real = shutil.which(tool)
        script = bin_dir / tool
        script.write_text(f'#!/bin/sh\necho "{tool} $*" >> {log}\nexec {real} "$@"\n')
        script.chmod(0o755)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cluster", default="local-slurm")
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--status-seconds", type=float, default=60.0)
    parser.add_argument("--status-every", type=float, default=2.0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    from jobs.launcher import LaunchError, check_cluster, submit
    from jobs.profiles import load_profile

    profile = load_profile(args.cluster)
    try:
        check_cluster(profile)
    except LaunchError as err:
        print(f"bench_submit: skipped, {err}")
        return 0
    env = {**os.environ, **({"SLURM_CONF": profile.slurm_conf} if profile.slurm_conf else {})}
    mst_sweep = str(Path(sys.executable).parent / "mst-sweep")
    tmp = Path(tempfile.mkdtemp(prefix="bench-submit-"))
    runs = tmp / "runs"
    try:
        # 1a. end to end, as a user runs it
        cli_sweep = tmp / "bench_cli.yaml"
        cli_sweep.write_text(SWEEP.format(name="bench_cli", tasks=args.tasks))
        t0 = time.perf_counter()
        proc = subprocess.run([mst_sweep, "submit", str(cli_sweep), "--cluster", args.cluster, "--runs", str(runs)],
                              check=False, capture_output=True, text=True, timeout=300)
        cli_s = time.perf_counter() - t0
        cancel_all(runs, "bench_cli", env)
        if proc.returncode != 0:
            print(f"bench_submit: mst-sweep submit failed: {proc.stderr.strip()}")
            return 1
        # 1b. inside submit() (imports already done)
        api_sweep = tmp / "bench_api.yaml"
        api_sweep.write_text(SWEEP.format(name="bench_api", tasks=args.tasks))
        t0 = time.perf_counter()
        records = submit(str(api_sweep), args.cluster, str(runs), out=lambda _: None)
        api_s = time.perf_counter() - t0
        cancel_all(runs, "bench_api", env)
        arrays = sorted({r["job_id"].split("_")[0] for r in records})

        # 2. status every few seconds for a minute, new process each time; count scheduler calls
        log = tmp / "scheduler_calls.log"
        shim(tmp / "bin", log)
        shim_env = {**os.environ, "PATH": f"{tmp / 'bin'}:{os.environ['PATH']}"}
        invocations = 0
        end = time.time() + args.status_seconds
        while time.time() < end:
            subprocess.run([mst_sweep, "status", str(cli_sweep), "--runs", str(runs)], env=shim_env, check=False,
                           capture_output=True, timeout=120)
            invocations += 1
            time.sleep(args.status_every)
        calls = log.read_text().splitlines() if log.exists() else []
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    lines = [
        "# Submission speed and scheduler load (benchmarks/bench_submit.py)",
        "",
        (f"Cluster profile `{args.cluster}` (the local Slurm cluster of clusters/local-slurm/start.sh), "
        f"{platform.node()}, {os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f} from other work), "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}."),
        "",
        "| measurement | value | goal |",
        "|---|---|---|",
        f"| `mst-sweep submit` of a {args.tasks}-run sweep, end to end | {cli_s:.2f} s | <= 5 s |",
        f"| `submit()` alone ({len(records)} runs -> {len(arrays)} array job) | {api_s:.2f} s | <= 5 s |",
        (f"| `mst-sweep status` invocations in {args.status_seconds:.0f} s (one every {args.status_every:.0f} s) "
        f"| {invocations} | |"),
        f"| scheduler calls (sacct/squeue) they made | {len(calls)} | <= 1 per minute |",
        f"| scheduler calls per status invocation | {len(calls) / max(invocations, 1):.3f} | |",
        "",
        "The jobs were cancelled right after submission; status answered from one cached sacct poll.",
    ]
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
