"""A rich progress bar (loss terms, lr, it/s, ETA) on terminals, periodic log lines elsewhere."""

from __future__ import annotations

import logging
import sys
import time

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

log = logging.getLogger("mst.progress")


class StepProgress:
    def __init__(self, total: int, done: int, enabled: bool = True, description: str = "pretrain"):
        self.total, self.enabled, self.description = total, enabled, description
        self.tty = enabled and sys.stderr.isatty()
        self.t0, self.done0, self.last_log = time.time(), done, 0.0
        self.bar = None
        if self.tty:
            self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[stats]}"), TextColumn("{task.fields[rate]}"),
                                TimeElapsedColumn(), TimeRemainingColumn(), transient=False)
            self.task = self.bar.add_task(description, total=total, completed=done, stats="", rate="")

    def __enter__(self):
        if self.bar:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        if self.bar:
            self.bar.__exit__(*exc)

    def update(self, step: int, stats: dict) -> None:
        if not self.enabled:
            return
        rate = (step - self.done0) / max(time.time() - self.t0, 1e-9)
        text = " ".join(f"{k}={stats[k]:.4g}" for k in ("loss", "loss_dino", "loss_rec", "lr") if k in stats)
        if self.bar:
            self.bar.update(self.task, completed=step, stats=text, rate=f"{rate:.2f} it/s")
        elif time.time() - self.last_log > 30 or step == self.total:
            eta = (self.total - step) / rate if rate > 0 else float("inf")
            log.info("%s %d/%d %s %.2f it/s eta %.0fs", self.description, step, self.total, text, rate, eta)
            self.last_log = time.time()
