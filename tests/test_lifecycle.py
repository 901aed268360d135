"""Every stage's life in its folder (mst.run.lifecycle): lock -> skip if done -> claim -> run -> record, the
same for pre-training and the evaluation stages, with one `is_done`."""

from __future__ import annotations

import json

import pytest

from jobs.config_io import load_config
from mst.config import config_hash, config_to_dict
from mst.eval.stage import run_stage
from mst.run.folder import RunFolderMismatch, StageFolderBusy, locked_stage_folder
from mst.run.lifecycle import run_in_folder
from mst.run.record import is_done, make_record, write_failed_record
from mst.run.runtime import Interrupted
from mst.train import run_pretrain

CFG = load_config("tiny", ["data.train_subset=128", "train.batch_size=32", "train.epochs=1"])


class Opened:
    """What a stage's `start` returns: here it only remembers the failure it was asked to record."""

    def __init__(self, out):
        self.out, self.failed = out, None

    def fail(self, err):
        self.failed = err
        write_failed_record(self.out, "knn", CFG, err, {"steps": 3})


def done_record(stage: str) -> dict:
    return make_record(stage, config_to_dict(CFG), config_hash(CFG), "done", {"steps": 1}, 1.0)


def test_is_done_reads_the_status_not_the_text(tmp_path):
    assert is_done(tmp_path) is None
    # a failed record that carries a finished stage's fields is not done (a text search said it was)
    write_failed_record(tmp_path, "knn", CFG, "broken", extra={"read_from": {"status": "done"}})
    assert '"status": "done"' in (tmp_path / "result.json").read_text() and is_done(tmp_path) is None
    (tmp_path / "result.json").write_text(json.dumps(done_record("knn")))
    assert is_done(tmp_path)["stage"] == "knn"


@pytest.mark.parametrize("run", [
    lambda out: run_pretrain(CFG, out, show_progress=False),
    lambda out: run_stage("knn", CFG, out, None, lambda stage: pytest.fail("a done stage ran again")),
], ids=["pretrain", "knn"])
def test_every_stage_skips_its_own_done_folder_and_refuses_another_stages(tmp_path, run):
    (tmp_path / "result.json").write_text(json.dumps(done_record("linear")))
    with pytest.raises(RunFolderMismatch, match="holds a finished 'linear' stage"):
        run(tmp_path)
    assert not (tmp_path / "run.json").exists()  # refused before the folder was claimed


def test_a_pretraining_finished_under_another_config_is_refused_not_returned(tmp_path):
    run_pretrain(CFG, tmp_path, show_progress=False)
    before = (tmp_path / "result.json").read_bytes()
    other = load_config("tiny", ["data.train_subset=128", "train.batch_size=32", "train.epochs=2"])
    with pytest.raises(RunFolderMismatch, match="holds a run of another config"):
        run_pretrain(other, tmp_path, show_progress=False)
    assert (tmp_path / "result.json").read_bytes() == before
    assert run_pretrain(CFG, tmp_path, show_progress=False)["status"] == "done"  # its own config: not re-run


def test_a_done_folder_returns_its_record_without_opening_the_stage(tmp_path):
    (tmp_path / "result.json").write_text(json.dumps(done_record("knn")))
    got = run_in_folder("knn", CFG, tmp_path, lambda out, _: pytest.fail("opened"), lambda s: {})
    assert got == done_record("knn") | {k: got[k] for k in ("created_at", "updated_at") if k in got}


def test_the_folder_is_claimed_and_locked_while_the_stage_runs(tmp_path):
    def body(opened):
        assert json.loads((tmp_path / "run.json").read_text()) == {"config_hash": config_hash(CFG)}
        with pytest.raises(StageFolderBusy), locked_stage_folder(tmp_path):
            pass
        return {"status": "done"}

    assert run_in_folder("knn", CFG, tmp_path, lambda out, _: Opened(out), body) == {"status": "done"}


def test_a_failing_stage_writes_its_own_failed_record_and_an_interrupted_one_none(tmp_path):
    opened = []

    def start(out, prepared):
        opened.append(Opened(out))
        return opened[-1]

    def boom(_):
        raise ValueError("broken")

    with pytest.raises(ValueError, match="broken"):
        run_in_folder("knn", CFG, tmp_path / "a", start, boom)
    record = json.loads((tmp_path / "a" / "result.json").read_text())
    assert record["status"] == "failed" and record["metrics"] == {"steps": 3} and str(opened[-1].failed) == "broken"

    def interrupted(_):
        raise Interrupted(2)

    with pytest.raises(Interrupted):
        run_in_folder("knn", CFG, tmp_path / "b", start, interrupted)
    assert opened[-1].failed is None and not (tmp_path / "b" / "result.json").exists()


def test_a_stage_that_cannot_open_leaves_a_plain_failed_record(tmp_path):
    def start(out, prepared):
        raise OSError("no device")

    with pytest.raises(OSError):
        run_in_folder("knn", CFG, tmp_path, start, lambda s: {}, record_extra={"run_id": "abc-r0"})
    record = json.loads((tmp_path / "result.json").read_text())
    assert (record["status"], record["stage"], record["run_id"]) == ("failed", "knn", "abc-r0")
    assert "no device" in record["error"]
