"""The job callable: one submitit `Checkpointable` for every stage of mst.stages, on a Slurm node or in-process.

Preemption design (what happens when Slurm wants the node back):
- The profile's signal (USR2 by default, `--signal=USR2@delay`) and SIGTERM only set a flag. Nothing is
  saved inside a handler: saving there can hang a collective or a data-loader worker.
- The method polls `should_stop()` at every step boundary; when it is set it writes `checkpoint.pt` and
  raises `mst.train.Interrupted`.
- After a USR2-style signal the job then takes submitit's own requeue path, from ordinary code at that
  boundary (jobs.scheduler.requeue_at_step_boundary): submitit's SignalHandler calls `checkpoint()` (the
  base class: a DelayedSubmission of this same callable), dumps it as the job's pickle, runs `scontrol
  requeue` and exits. Timeouts are counted against the profile's `max_requeues` there.
- After SIGTERM alone (an outside `scontrol requeue`, preemption or scancel, which call no `checkpoint()`)
  the job has saved within KillWait and waits to be killed; Slurm decides what comes next.
- A restarted job finds its own run folder (keyed by run id) and the method resumes from `checkpoint.pt`;
  periodic checkpoints (`train.checkpoint_every`) bound what a hard kill loses.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import submitit

from jobs import rundir
from jobs.devices import DeviceChoice, existing_masks, export_ranks, node_devices, select_device
from jobs.runstate import FINAL
from jobs.stop_flag import StopFlag
from mst.atomic import atomic_write_json, read_json
from mst.stages import get_stage

if TYPE_CHECKING:
    from jobs.plan import Run
    from jobs.profiles import ClusterProfile

# ranks > 0 and SIGTERM-only stops wait this long for Slurm to kill or requeue the job before exiting
KILL_WAIT_S = 120.0


class StageJob(submitit.helpers.Checkpointable):
    """One stage of one run. Picklable and small: the stage's name, a plain config dict and names, never
    tensors; the stage's code comes from the registry (mst.stages) when the job runs."""

    def __init__(self, stage: str, *, runs_root: str, sweep: str, run_id: str, config: dict[str, Any],
                 extra: dict[str, Any], preempt_signal: str = "USR2", visible_devices: str = "none",
                 node_dirs: tuple[str, ...] = (), device_kind: str = "cpu", show_progress: bool = False,
                 validated: Any = None) -> None:
        self.stage = get_stage(stage).name  # an unknown name fails here, at submission
        self.runs_root = str(runs_root)
        self.sweep = sweep
        self.run_id = run_id
        self.config = config
        self.validated = validated  # the mst.config.Config of `config` where the caller built one: not rebuilt
        self.extra = dict(extra)
        self.preempt_signal = preempt_signal
        self.visible_devices = visible_devices
        self.node_dirs = tuple(node_dirs)
        self.device_kind = device_kind
        self.show_progress = show_progress

    # ------------------------------------------------------------------ paths
    @property
    def out_dir(self) -> Path:
        return rundir.SweepFolder(Path(self.runs_root), self.sweep).stage(self.run_id, self.stage)

    @property
    def pretrain_dir(self) -> Path:
        return rundir.SweepFolder(Path(self.runs_root), self.sweep).stage(self.run_id, "pretrain")

    # ------------------------------------------------------------------ job body
    def __call__(self) -> dict[str, Any]:
        under_slurm = os.environ.get("SUBMITIT_EXECUTOR") == "slurm"
        started = time.time()
        world, device = self._export_ranks() if under_slurm else (1, select_device("none", 0, 1))
        for var in self.node_dirs:
            if os.environ.get(var):
                Path(os.environ[var]).mkdir(parents=True, exist_ok=True)
        usr = getattr(signal, "SIG" + self.preempt_signal)
        watched = [usr, signal.SIGTERM] + ([] if under_slurm else [signal.SIGINT])  # Ctrl-C in-process too
        # in-process the caller gets its handlers back; a Slurm job's process ends with the job
        with StopFlag(watched, restore=not under_slurm) as flag:
            extra = {**self.extra, **self._provenance(under_slurm, world, device)}
            if under_slurm:
                self._link_logs()

            from mst.config import config_from_dict
            from mst.train import Interrupted

            cfg = self.validated if self.validated is not None else config_from_dict(self.config)
            rundir.contained(self.runs_root, self.out_dir)  # a planted link must not take the writes elsewhere
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self._mark("running", extra)  # status tells a started (or restarted) job from a queued one
            try:
                return self.run(cfg, flag, extra)
            except Interrupted:
                self._mark("preempted", extra)  # saved at a step boundary; resumes from its checkpoint
                if under_slurm:
                    self._after_interrupt(flag, usr, started)  # exits
                raise
            except Exception as err:
                self._mark("failed", extra, err, cfg)
                raise

    def run(self, cfg: Any, should_stop: Any, extra: dict[str, Any]) -> dict[str, Any]:
        """The stage's entry point; progress bars only in-process (Slurm logs are files)."""
        return get_stage(self.stage).call(cfg, self.out_dir, self.pretrain_dir, should_stop=should_stop,
                                          record_extra=extra, show_progress=self.show_progress)

    # ------------------------------------------------------------------ helpers
    def _export_ranks(self) -> tuple[int, DeviceChoice]:
        """RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT from Slurm, as torch's env:// reads them, and
        this rank's device inside the mask Slurm or the site set (jobs.devices; a mask only where none is)."""
        dist, device = export_ranks(self.visible_devices)
        print(f"[mst] rank {dist.rank} (local {dist.local_rank}) on {socket.gethostname()}: device "
              + (f"{device.physical} (entry {device.index} of {device.variable}={device.mask}"
                 + (", written by the job)" if device.written_by_job else ", set by Slurm or the site)")
                 if device.variable else "none (no visible-device mask)"), flush=True)
        return dist.world_size, device

    def _provenance(self, under_slurm: bool, world: int, device: DeviceChoice) -> dict[str, Any]:
        """Where and on what the job runs, for its record: nodes, every job id it ran under (a requeued job's
        record lists the ones before), the devices it counts and the ones the launcher left visible."""
        job_ids = list((read_json(self.out_dir / "result.json") or {}).get("job_ids") or [])
        nodes = socket.gethostname()
        if under_slurm:
            job_id = submitit.JobEnvironment().job_id
            if job_id not in job_ids:
                job_ids.append(job_id)
            nodes = os.environ.get("SLURM_JOB_NODELIST", nodes)
        return {
            "nodes": nodes,
            "job_ids": job_ids,
            # device-hours = wall time x devices; on cpu profiles a task counts as one device
            "devices": world,
            "device_kind": self.device_kind,
            # what the launcher left visible to this task (provenance for device-mapping problems)
            "visible_devices": existing_masks(),
            # the device each rank used: this rank's choice, and every rank of this node (global rank -> device)
            "device_mask": dataclasses.asdict(device),
            "rank_devices": node_devices(device) if under_slurm else {"0": device.physical},
        }

    def _link_logs(self) -> None:
        """<stage>/slurm/<job id> -> the submitit folder holding this job's script, pickle and log."""
        env = submitit.JobEnvironment()
        if env.global_rank != 0:
            return
        link = self.out_dir / "slurm" / env.job_id
        link.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):  # a requeued job's link is there already
            link.symlink_to(env.paths.folder.resolve())

    def _after_interrupt(self, flag: StopFlag, usr: int, started: float) -> None:
        """The method saved at a step boundary; requeue (profile signal) or wait for Slurm (SIGTERM)."""
        deadline = time.time() + KILL_WAIT_S
        # a preemption may send SIGTERM just before the user signal: give it a moment to arrive
        grace = time.time() + 3.0
        while usr not in flag.signals and time.time() < grace:
            time.sleep(0.1)
        if usr in flag.signals and submitit.JobEnvironment().global_rank == 0:
            from jobs.scheduler import requeue_at_step_boundary

            print(f"[mst] {self.stage} {self.run_id}: saved at a step boundary, requeueing", flush=True)
            requeue_at_step_boundary(usr, started)  # checkpoint() -> requeue -> sys.exit
        print(f"[mst] {self.stage} {self.run_id}: saved at a step boundary, waiting for Slurm", flush=True)
        while time.time() < deadline:
            time.sleep(0.5)
        sys.exit(1)

    def _mark(self, status: str, extra: dict[str, Any], err: Exception | None = None, cfg: Any = None) -> None:
        """Rank 0's result.json for where the stage stands, so `status` needs no scheduler call for it:
        'running' or 'preempted' (no metrics yet), or 'failed' (`err`) when the method left no final record.
        A done or failed record is never replaced by a progress one (a rerun of a failed stage is, though,
        once it starts: the previous failure stays in the Slurm log). A folder that another live process
        holds is left alone: its record is that process's to write."""
        from mst.run.folder import StageFolderBusy
        from mst.run.record import encode_record, record_of, utc_now, write_failed_record

        if os.environ.get("RANK", "0") != "0" or isinstance(err, StageFolderBusy):
            return
        previous = rundir.result_status(self.out_dir)
        if status == "failed":
            if previous not in FINAL:
                write_failed_record(self.out_dir, self.stage, cfg, err, wall_time_s=None, extra=extra)
        elif previous != "done" and (previous != "failed" or status == "running"):
            record = record_of({**extra, "stage": self.stage, "status": status, "error": None, "metrics": {},
                                "config": self.config, "wall_time_s": None, "device_hours": None,
                                "updated_at": utc_now()})
            atomic_write_json(self.out_dir / "result.json", encode_record(record))


def stage_job(run: Run, stage: str, profile: ClusterProfile, runs_root: Path) -> StageJob:
    """The job callable of one stage of a sweep's run (a jobs.plan.Run) on `profile`, with the record fields it
    adds."""
    spec = run.spec
    # config_hash: the record names the run by the hash its run id carries (one identity per run on every
    # cluster); its `config` is the one that ran, with the profile's precision and data root
    extra = {"run_id": run.run_id, "config_hash": spec.config_hash, "sweep": spec.sweep, "cell": spec.cell,
             "repeat": spec.repeat, "seed": spec.seed, "cluster": profile.name}
    return StageJob(stage, runs_root=str(runs_root), sweep=spec.sweep, run_id=run.run_id,
                    config=run.config_dict, validated=run.config, extra=extra,
                    preempt_signal=profile.preemption.signal, visible_devices=profile.environment.visible_devices,
                    node_dirs=profile.environment.node_dirs, device_kind=profile.accelerators.kind)
