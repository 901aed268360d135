"""The one life of a stage in its folder, for pre-training and every evaluation stage alike:
lock -> skip if done -> claim -> run -> record (a `failed` record when the run raises).

The stage's own code comes in two parts: `start(out, prepared)` opens the run (a trainer, an evaluation
`Stage`) and returns an object with `fail(err)`, which writes the stage's own failed record (with the steps
or wall time it knows); `body(opened)` runs it and returns the `done` record it wrote.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from ..checkpoint import refuse_foreign
from ..config import Config, config_hash, config_to_dict
from .folder import RunFolderMismatch, claim_folder, locked_stage_folder
from .record import is_done, write_failed_record
from .runtime import Interrupted


class Opened(Protocol):
    def fail(self, err: BaseException) -> None:
        """Write the stage's failed record for `err`."""


S = TypeVar("S", bound=Opened)


def run_in_folder(name: str, cfg: Config, out_dir: str | Path, start: Callable[[Path, Any], S],
                  body: Callable[[S], dict], *, record_extra: dict | None = None, main: bool = True,
                  prepare: Callable[[], Any] = lambda: None, claim_first: bool = False) -> dict:
    """Run stage `name` of `cfg` in `out_dir` unless it is done there; return its record.

    The folder is locked for the run (StageFolderBusy for a second process; under DDP only the `main` rank
    takes the lock and writes the claim). A done folder returns its record (RunFolderMismatch when it holds
    another stage). `prepare()` runs next, before anything is written (an evaluation refuses an unfinished
    pre-training there); then the folder is claimed for the config (a foreign claim or checkpoint is refused,
    RunFolderMismatch / CheckpointError). `Interrupted` and `RunFolderMismatch` propagate untouched: a rerun
    resumes from the saved checkpoint. Any other error leaves a `failed` record: the opened stage's own
    (`fail`), or a plain one when opening it failed. With `claim_first` (pre-training) the folder's claim is
    checked before the done check, so a folder finished under another config is refused rather than handed
    back as this config's result.
    """
    with locked_stage_folder(out_dir, main=main) as out:
        chash = config_hash(cfg)
        if claim_first:  # the claim is checked now and written below (main=False writes nothing)
            claim_folder(out, chash, main=False)
        done = is_done(out)
        if done is not None:
            if done.get("stage") != name:
                raise RunFolderMismatch(f"{out} holds a finished '{done.get('stage')}' stage, not '{name}'; "
                                        "use another --out folder")
            return done
        prepared = prepare()
        claim_folder(out, chash, main=main,
                     check=lambda: refuse_foreign(out / "checkpoint.pt", chash, config_to_dict(cfg), stage=name))
        opened = None
        try:
            opened = start(out, prepared)
            return body(opened)
        except (Interrupted, RunFolderMismatch):
            raise
        except Exception as err:
            if opened is not None:
                opened.fail(err)
            elif main:
                write_failed_record(out, name, cfg, err, extra=record_extra)
            raise
