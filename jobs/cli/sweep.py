"""mst-sweep: submit a sweep to a cluster profile and return; later `status`, `resubmit` or `cancel` it.

Nothing heavy is imported before a command runs, so `mst-sweep --help` answers at once.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mst.boundary import console_script
from mst.echo import shown

from .common import fail

EPILOG = """examples:
  mst-sweep submit loss_weight --budget smoke --cluster local        run it here, in-process, at smoke scale
  mst-sweep submit loss_weight --cluster dcu128 --dry-run            print every sbatch script
  mst-sweep check --cluster dcu128                                    one short job: versions, devices, all-reduce
  mst-sweep submit loss_weight --cluster dcu128 --preflight           the check first; nothing submitted if it fails
  mst-sweep status loss_weight --cluster dcu128                       markers first, <= 1 scheduler call/min
  mst-sweep resubmit loss_weight --cluster dcu128 [--dry-run]        failed, cancelled or missing runs only
  mst-sweep cancel loss_weight --cluster dcu128
  mst-sweep pool --cluster dcu128                                     move an older root's pre-trainings into its pool
runs root: --runs DIR, else the --cluster profile's storage.run_root"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mst-sweep", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Submit a sweep (sweeps/*.yaml) as Slurm job arrays on a cluster profile "
                    "(clusters/*.yaml) and return at once; runs that are done or in flight are skipped.")
    sub = p.add_subparsers(dest="command", required=True, metavar="{submit,status,resubmit,cancel,check,pool}")
    specs = {
        "submit": "submit every stage that is not done nor queued/running",
        "status": "state of every run and stage (run-folder markers first, one cached scheduler poll)",
        "resubmit": "submit again the failed, cancelled or missing stages only",
        "cancel": "cancel the sweep's queued and running jobs",
    }
    for name, help_text in specs.items():
        s = sub.add_parser(name, help=help_text, description=help_text)
        s.add_argument("sweep", help="sweep name (sweeps/<name>.yaml) or a sweep .yaml path")
        s.add_argument("--budget", metavar="NAME",
                       help="run the sweep at a named budget (sweeps/budgets.yaml, e.g. smoke); the same as "
                            "naming the sweep <name>_<budget>, which is its runs folder")
        s.add_argument("--cluster", required=name == "submit", metavar="NAME|PATH.yaml",
                       help="cluster profile: local, local-slurm, local-dcu, local-v100, dcu128, v100x32 or a "
                            "profile file" + ("" if name == "submit" else " (default: the one last submitted to)"))
        s.add_argument("--runs", metavar="DIR",
                       help="runs root (default: the profile's storage.run_root)")
        if name == "submit":
            s.add_argument("--dry-run", action="store_true",
                           help="print every sbatch script (or the in-process plan) without submitting or writing")
            s.add_argument("--preflight", action="store_true",
                           help="run `mst-sweep check` on the cluster first and submit nothing when it fails")
        if name == "resubmit":
            s.add_argument("--dry-run", action="store_true",
                           help="list each stage that would be resubmitted and why (its state), submitting nothing")
        if name == "status":
            s.add_argument("--all", action="store_true", help="list done stages too")
    check_help = ("preflight: one short job with the profile's node shape (two nodes at most) reports versions, "
                  "devices, a forward/backward in the profile's precision, an all-reduce and the storage; "
                  "cluster local runs it here")
    c = sub.add_parser("check", help=check_help, description=check_help)
    c.add_argument("--cluster", required=True, metavar="NAME|PATH.yaml", help="cluster profile to check")
    c.add_argument("--runs", metavar="DIR", help="runs root to check (default: the profile's storage.run_root)")
    c.add_argument("--wait", type=float, default=900.0, metavar="SECONDS",
                   help="how long to wait for the job to start and end before cancelling it (default 900)")
    pool_help = ("move the pre-trainings that sweeps of a runs root made before the pool hold in their own "
                 "folders into the root's pool, leaving a link (unfinished ones and duplicates stay; "
                 "nothing is lost)")
    q = sub.add_parser("pool", help=pool_help, description=pool_help)
    q.add_argument("--cluster", metavar="NAME|PATH.yaml", help="cluster profile whose storage.run_root to use")
    q.add_argument("--runs", metavar="DIR", help="runs root (default: the profile's storage.run_root)")
    return p


def _pool(cluster: str | None, runs: str | None) -> None:
    from jobs.pool import adopt
    from jobs.profiles import load_profile

    if runs is None and cluster is None:
        fail("mst-sweep pool needs the runs root; pass --runs DIR or --cluster NAME")
    root = Path(runs or load_profile(cluster).storage.run_root)
    if not root.is_dir():
        fail(f"runs root {root} does not exist; pass --runs DIR where the sweeps were submitted")
    adopt(root)


def _preflight(cluster: str, runs: str | None, wait_s: float = 900.0) -> int:
    """Run the preflight check; print each problem on its own line; 0 when there is none."""
    from jobs.profiles import load_profile

    profile = load_profile(cluster)  # before the probe's imports (torch): a bad profile is refused at once
    from jobs.preflight import run_check

    problems = run_check(profile, Path(runs or profile.storage.run_root), wait_s)
    for line in problems:
        print(f"problem: {shown(line)}", file=sys.stderr)
    if problems:
        print(f"error: preflight of {shown(profile.name)} found {len(problems)} problem(s)", file=sys.stderr)
    else:
        print(f"preflight of {profile.name}: all checks passed")
    return 1 if problems else 0


def _cluster_and_root(args: argparse.Namespace) -> tuple[str, Path]:
    from jobs.launcher import manifest_cluster
    from jobs.profiles import load_profile

    cluster = args.cluster
    if cluster is None:
        root = Path(args.runs or "runs")
        cluster = manifest_cluster(root, Path(args.sweep).stem)
        if cluster is None:
            fail(f"sweep {args.sweep} has no manifest under {root}; pass --runs DIR where it was submitted, "
                 "or --cluster NAME")
        return cluster, root
    return cluster, Path(args.runs or load_profile(cluster).storage.run_root)


def _print_status(states: list, show_all: bool) -> int:
    from jobs.runstate import count_by_stage

    by_stage = count_by_stage(((s.stage, s.state) for s in states), dict.fromkeys(s.stage for s in states))
    for stage, counts in by_stage.items():  # the words of jobs.runstate, in its order (mst-report's too)
        print(f"{stage:12s} " + "  ".join(f"{k} {n}" for k, n in counts.items() if n))
    for s in states:
        if show_all or s.state != "done":
            print(f"  {s.run_id}  {s.stage:12s} {s.state:9s} job {s.job_id or '-':14s} {shown(s.detail)}")
    return 0 if all(s.state == "done" for s in states) else 1


@console_script
def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if getattr(args, "budget", None):
        from jobs.sweep import budgeted

        args.sweep = budgeted(args.sweep, args.budget)  # the alias `<name>_<budget>` names the runs folder
    from jobs.launcher import LaunchError, cancel, status, submit
    from jobs.local_run import LocalFailures
    from jobs.profiles import ProfileError
    from jobs.rundir import RunFolderError
    from jobs.sweep import SweepError
    from mst.config import ConfigError

    try:
        if args.command == "check":
            sys.exit(_preflight(args.cluster, args.runs, args.wait))
        if args.command == "pool":
            return _pool(args.cluster, args.runs)
        if args.command == "submit":
            if args.preflight and not args.dry_run:
                from jobs.sweep import load_sweep

                load_sweep(args.sweep)  # a bad sweep name fails before any job is started
                if _preflight(args.cluster, args.runs):
                    fail("nothing submitted: fix the problems above, then submit again", 1)
            submit(args.sweep, args.cluster, args.runs, dry_run=args.dry_run)
            return
        cluster, root = _cluster_and_root(args)
        if args.command == "status":
            sys.exit(_print_status(status(args.sweep, cluster, root), args.all))
        if args.command == "resubmit":
            submit(args.sweep, cluster, str(root), resubmit=True, dry_run=args.dry_run)
        elif args.command == "cancel":
            cancel(args.sweep, cluster, root)
    except LocalFailures as err:  # some stages failed, every other one ran: the summary line
        fail(str(err), 1)
    except (ProfileError, SweepError, ConfigError, LaunchError, RunFolderError) as err:
        fail(str(err))
    except BrokenPipeError:  # output piped into head & co.
        sys.stderr.close()
    except KeyboardInterrupt:
        fail("interrupted; stages save at their next step boundary; run the same command again to resume", 130)
    except Exception as err:  # the method's Interrupted after Ctrl-C on cluster local
        if type(err).__name__ == "Interrupted":
            fail(f"{err}; run the same command again to resume", 130)
        raise


if __name__ == "__main__":
    main()
