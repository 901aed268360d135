"""The stop flag: a signal asks a run to save at its next step boundary, as a preemption does.

Nothing is saved inside a handler (saving there can hang a collective or a data-loader worker): the handler
only records the signal, and the method polls the flag (`should_stop()`) at every step boundary. A second
Ctrl-C stops at once (KeyboardInterrupt), keeping the last checkpoint. `mst-pretrain`/`mst-eval` and the
job callable (jobs.stage_job.StageJob) both use it.
"""

from __future__ import annotations

import signal
from collections.abc import Iterable
from typing import Any


class StopFlag:
    """Watches `signals` while entered; `flag()` is True once one arrived. `restore=False` leaves the handlers
    installed on exit (a Slurm job process ends with its job; a late signal must still only set the flag)."""

    def __init__(self, signals: Iterable[int] = (signal.SIGINT, signal.SIGTERM), *, restore: bool = True) -> None:
        self.watched = tuple(signals)
        self.restore = restore
        self.signals: list[int] = []
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:  # noqa: PYI034 (typing.Self needs Python 3.11; 3.10 is supported)
        self.previous = {s: signal.signal(s, self._handler) for s in self.watched}
        return self

    def __exit__(self, *exc: object) -> None:
        if self.restore:
            for s, handler in self.previous.items():
                signal.signal(s, handler)

    def _handler(self, signum: int, frame: object) -> None:
        if signum == signal.SIGINT and signal.SIGINT in self.signals:
            raise KeyboardInterrupt
        self.signals.append(signum)  # only record: the method saves at its next step boundary

    def __call__(self) -> bool:
        return bool(self.signals)

    @property
    def exit_code(self) -> int:
        """128 + the signal, as a shell reports a process stopped by it."""
        return 128 + (self.signals[0] if self.signals else signal.SIGINT)
