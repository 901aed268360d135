"""The one writer of failed records: the method's stages and the job layer leave the same provenance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobs.config_io import load_config
from mst.config import config_hash, config_to_dict
from mst.run.record import (
    ERROR_CHARS,
    SCHEMA_VERSION,
    RunRecord,
    encode_record,
    record_of,
    record_problem,
    write_failed_record,
)


def test_a_failed_record_carries_git_sha_versions_and_config_hash(tmp_path):
    cfg = load_config("tiny")
    err = ValueError("first line\nsecond line")
    record = write_failed_record(tmp_path, "knn", cfg, err, {"steps": 3}, 1.23456, {"run_id": "r0"})
    on_disk = json.loads((tmp_path / "result.json").read_text())
    assert on_disk == record
    assert record["status"] == "failed" and record["stage"] == "knn" and record["run_id"] == "r0"
    assert record["error"] == "ValueError: first line"
    assert record["config_hash"] == config_hash(cfg) and record["config"] == config_to_dict(cfg)
    assert record["git_sha"] and "python" in record["versions"] and "torch" in record["versions"]
    assert record["metrics"] == {"steps": 3} and record["wall_time_s"] == 1.235


def test_an_unknown_wall_time_stays_unknown_and_long_errors_are_capped(tmp_path):
    record = write_failed_record(tmp_path, "pretrain", load_config("tiny"), "x" * 5000, wall_time_s=None,
                                 extra={"devices": 2})
    assert record["wall_time_s"] is None and record["device_hours"] is None
    assert len(record["error"]) == ERROR_CHARS


def test_an_unwritable_folder_does_not_hide_the_original_error(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("")
    record = write_failed_record(blocker, "knn", load_config("tiny"), RuntimeError("the real cause"))
    assert record["error"] == "RuntimeError: the real cause"
    assert "could not write the failed record" in caplog.text


def test_the_job_layer_writes_the_same_failed_record(tmp_path):
    """A job whose method raised before writing a record (here: the folder holds another config's run) gets
    one from the same writer, provenance and all."""
    from jobs.stage_job import StageJob
    from mst.train import RunFolderMismatch

    cfg = load_config("tiny")
    extra = {"run_id": "abc-r0", "sweep": "s", "cell": {}, "repeat": 0, "seed": 0, "cluster": "local"}
    job = StageJob("knn", runs_root=str(tmp_path), sweep="s", run_id="abc-r0", config=config_to_dict(cfg),
                   extra=extra)
    job.out_dir.mkdir(parents=True)
    (job.out_dir / "run.json").write_text(json.dumps({"config_hash": "another"}))
    with pytest.raises(RunFolderMismatch):
        job()
    record = json.loads((tmp_path / "s" / "abc-r0" / "knn" / "result.json").read_text())
    assert record["status"] == "failed" and record["error"]
    assert record["config_hash"] == config_hash(cfg) and record["git_sha"] and record["versions"]["python"]


# ------------------------------------------------------------------------------------ the typed record

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "analysis" / "examples" / "runs").rglob("result.json"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: "/".join(p.parts[-3:-1]))
def test_a_committed_record_reads_and_encodes_back_to_the_same_bytes(path):
    text = path.read_text()
    data = json.loads(text)
    assert record_problem(data) is None
    assert json.dumps(encode_record(record_of(data)), indent=2) + "\n" == text


def test_every_key_the_writer_knows_is_a_typed_field(tmp_path):
    record = record_of(write_failed_record(tmp_path, "knn", load_config("tiny"), "boom"))
    assert dict(record.more) == {}  # nothing of the base record travels untyped
    assert record.schema == SCHEMA_VERSION and record.status == "failed" and record.error == "boom"


def test_a_progress_record_leaves_out_what_only_a_final_record_knows(tmp_path):
    record = encode_record(RunRecord(stage="knn", status="running", config={}, updated_at="now",
                                     more={"devices": 1}))
    assert list(record) == ["schema", "stage", "status", "error", "metrics", "config", "wall_time_s",
                            "device_hours", "updated_at", "devices"]


@pytest.mark.parametrize(("change", "why"), [
    ({"schema": 2}, "schema 2, expected 1"),
    ({"repeat": True}, "key 'repeat' has type bool, expected int"),
    ({"status": "done?"}, "unknown status 'done?'"),
])
def test_the_reader_names_what_is_wrong(change, why):
    data = json.loads(EXAMPLES[0].read_text())
    assert why in record_problem(data | change)
    assert record_problem({k: v for k, v in data.items() if k != "seed"}) == "missing key 'seed'"
