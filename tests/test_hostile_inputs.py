"""Inputs that parse but cannot be used (issue 19): YAML that expands or nests without bound, files that are
not regular files, numbers beyond what they stand for, records and caches of the wrong shape, links out of the
runs root, and values that would forge a line on the terminal. Each ends in one line, at once, with nothing
written. Report outputs, checkpoints and data files: tests/test_hostile_files.py.

The command lines run as separate processes, as a user runs them; the readers' bounds are unit-tested too.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.hostile import command, digest, one_line, synthetic_runs
from helpers.hostile import knn_records as _records
from helpers.hostile import report as _report

from jobs.yaml_read import load_yaml
from mst.boundary import console_script
from mst.echo import shown
from mst.inputs import InputError, parse_json, read_json_file, read_jsonl, read_jsonl_lines, read_regular


@pytest.fixture()
def runs(tmp_path):
    return synthetic_runs(tmp_path / "runs")


LAUGHS = "[" + ", ".join(["&a [x, x, x, x, x, x, x, x, x, x]"]
                        + [f"&{chr(97 + i)} [" + ", ".join([f"*{chr(96 + i)}"] * 10) + "]" for i in range(1, 9)]) + "]"
BOMB = "a: " + LAUGHS + "\n"  # 9 levels of 10 aliases: 10^9 leaves in 400 bytes


def bomb(prefix: str) -> str:
    """A file whose one value (after `prefix`, e.g. 'train: {epochs: ') is the billion laughs: the decoder
    reaches it under a valid key, and an error message that formats it would expand it."""
    return prefix + LAUGHS + "}" * prefix.count("{") + "\n"


DEEP = "train: " + "[" * 5000 + "]" * 5000 + "\n"



# ------------------------------------------------------------------ the readers' bounds (unit)


def test_bomb_is_small_and_refused_before_it_expands():
    assert len(BOMB) < 1000
    started = time.monotonic()
    with pytest.raises(InputError, match="expands to more than 100000 values"):
        load_yaml(BOMB, "sweep file x.yaml")
    assert time.monotonic() - started < 1.0


def test_deep_yaml_is_refused_before_the_recursion_limit():
    with pytest.raises(InputError, match="nests more than 64 levels deep"):
        load_yaml(DEEP, "preset p.yaml")


def test_a_few_anchors_still_read():
    assert load_yaml("a: &n {x: 1}\nb: *n\nc: [*n, *n]\n", "f") == {"a": {"x": 1}, "b": {"x": 1},
                                                                      "c": [{"x": 1}, {"x": 1}]}


@pytest.mark.parametrize("kind", ["fifo", "folder", "device"])
def test_readers_refuse_what_is_not_a_regular_file_at_once(tmp_path, kind):
    path = tmp_path / "result.json"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    else:
        path = Path("/dev/zero")
    started = time.monotonic()
    with pytest.raises(InputError, match="not a regular file"):
        read_json_file(path, "record")
    assert time.monotonic() - started < 1.0


def test_readers_bound_size_depth_and_integer_width(tmp_path):
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"pad": "x" * 2000}))
    with pytest.raises(InputError, match="more than the 1000"):
        read_regular(big, "record", limit=1000)
    with pytest.raises(InputError, match="nests more than 64 levels"):
        parse_json("[" * 3000 + "]" * 3000, "record", "r.json")
    with pytest.raises(InputError, match="integer of 5000 digits"):
        parse_json('{"seed": ' + "9" * 5000 + "}", "record", "r.json")
    # brackets inside strings are not nesting; 19-digit integers are fine
    assert parse_json(json.dumps({"s": "[" * 200, "n": 2**63 - 1}), "record", "r.json")["n"] == 2**63 - 1


def test_one_jsonl_reader_skips_torn_lines_and_bounds_the_rest(tmp_path):
    """Metrics logs and manifests are read by one bounded reader: torn, blank and non-object lines are skipped,
    a line past a bound is skipped (or comes numbered, for the manifest's own wording), the file is bounded."""
    log = tmp_path / "metrics.jsonl"
    assert read_jsonl(log) == []
    log.write_bytes(b'{"step": 1}\n\n[1, 2]\n{"step": 2, "n": ' + b"9" * 40 + b'}\n{"step": 3}\n{"ste\xff')
    assert read_jsonl(log, "metrics log") == [{"step": 1}, {"step": 3}]
    numbered = read_jsonl_lines(log, "metrics log")
    assert [n for n, _ in numbered] == [1, 3, 4, 5] and numbered[1][1] == [1, 2]
    assert isinstance(numbered[2][1], InputError) and "integer of 40 digits" in str(numbered[2][1])
    with pytest.raises(InputError, match=r"metrics log .* more than the 20 a metrics log may hold"):
        read_jsonl(log, "metrics log", limit=20)


# ------------------------------------------------------------------ class 1: YAML through the command lines


# each under a key its decoder reads: the one command per reader the bomb reaches
BOMBED = [("jobs.cli.pretrain", "train: {epochs: ", ["--preset", "{path}", "--out", "{tmp}/out"]),
          ("jobs.cli.sweep", "name: hostile\ndescription: ",
           ["submit", "{path}", "--cluster", "local", "--runs", "{tmp}/runs", "--dry-run"]),
          ("jobs.cli.sweep", "name: hostile\nplacement: {partition: ", ["check", "--cluster", "{path}"]),
          ("analysis.cli", "name: hostile\ntable: A10\nrepeats: ",
           ["tables", "--runs", "{tmp}", "--sweep", "{path}"])]


@pytest.mark.parametrize("module,prefix,args", BOMBED)
@pytest.mark.parametrize("kind", ["aliases", "depth"])
def test_commands_refuse_yaml_bombs_and_deep_nesting_in_one_line(tmp_path, module, prefix, args, kind):
    path = tmp_path / "hostile.yaml"
    path.write_text(bomb(prefix) if kind == "aliases" else prefix + DEEP.removeprefix("train: ").strip()
                    + "}" * prefix.count("{") + "\n")
    started = time.monotonic()
    line = one_line(command(module, *[a.format(path=path, tmp=tmp_path) for a in args], timeout=30))
    why = "expands to more than 100000 values" if kind == "aliases" else "nests more than 64 levels deep"
    assert str(path) in line and why in line, line
    assert time.monotonic() - started < 20  # one interpreter start; never the expansion
    assert not (tmp_path / "runs").exists() and not (tmp_path / "out").exists()


def test_a_deep_set_value_is_one_line(tmp_path):
    line = one_line(command("jobs.cli.pretrain", "--preset", "tiny", "--out", str(tmp_path / "o"),
                            "--set", "optim.lr=" + "[" * 3000))
    assert "override 'optim.lr' nests more than 64 levels" in line


# ------------------------------------------------------------------ the boundary and what it echoes


def test_an_argument_cannot_forge_a_second_line_or_drive_the_terminal(tmp_path):
    hostile = "x.yaml\nerror: all fine\x1b[2J\r"
    proc = command("jobs.cli.pretrain", "--preset", hostile, "--out", str(tmp_path / "o"))
    line = one_line(proc)
    assert "\x1b" not in proc.stderr and "\r" not in proc.stderr
    assert "x.yaml\\x0aerror: all fine\\x1b[2J\\x0d" in line, line
    assert shown("a\u202eb\tc") == "a\\u202eb\\x09c"


def test_a_bug_is_one_line_and_its_traceback_shows_with_mst_debug(capsys, monkeypatch):
    @console_script
    def main():
        return {}["missing"]

    monkeypatch.delenv("MST_DEBUG", raising=False)
    with pytest.raises(SystemExit) as stop:
        main()
    err = capsys.readouterr().err
    assert stop.value.code == 1 and err.count("\n") == 1
    assert err.startswith("error: internal error (KeyError: 'missing'); this is a bug") and "MST_DEBUG=1" in err
    monkeypatch.setenv("MST_DEBUG", "1")
    with pytest.raises(KeyError):
        main()


def test_an_input_error_escaping_a_front_end_is_its_own_line(capsys, monkeypatch):
    @console_script
    def main():
        read_json_file("/dev/null/x", "record")

    monkeypatch.delenv("MST_DEBUG", raising=False)
    with pytest.raises(SystemExit) as stop:
        main()
    err = capsys.readouterr().err
    assert stop.value.code == 1 and err.startswith("error: cannot use /dev/null/x: Not a directory; ")


# ------------------------------------------------------------------ class 2: numbers that parse, mean nothing


def _slurm_profile(tmp_path: Path, **sections: str) -> Path:
    from conftest import _profile

    path = _profile(tmp_path)
    text = path.read_text()
    for key, value in sections.items():
        text = "\n".join(line for line in text.splitlines() if not line.startswith(f"{key}:")) + f"\n{key}: {value}\n"
    path.write_text(text)
    return path


PROFILE_NUMBERS = {
    "mem": ("resources", "{nodes: 1, tasks_per_node: 1, cpus_per_task: 1, mem_gb: 1.0e+308, time_min: 10}",
            "resources.mem_gb is 1e+308, more than Slurm takes"),
    "time": ("downstream", "{nodes: 1, tasks_per_node: 1, cpus_per_task: 1, mem_gb: 1, time_min: 1099511627776}",
             "downstream.time_min is 1099511627776, more than Slurm takes"),
    "delay": ("preemption", "{signal: USR2, delay_s: 4294967296, max_requeues: 3}",
              "preemption.delay_s (4294967296) must be at most 65535"),
    "array": ("limits", "{array_size: 9223372036854775807, array_parallelism: 4}",
              "limits.array_size and limits.array_parallelism must be at most"),
    "gres": ("accelerators", "{kind: dcu, per_node: 4, request: gres, gres: 'dcu:" + "9" * 5000 + "'}",
             "accelerators.gres is 'dcu:"),
}


@pytest.mark.parametrize("case", sorted(PROFILE_NUMBERS))
def test_profile_numbers_beyond_slurm_are_refused_before_anything_is_printed(tmp_path, case):
    from conftest import _fake_slurm, _sweep

    section, value, why = PROFILE_NUMBERS[case]
    fake = _fake_slurm(tmp_path)
    runs = tmp_path / "runs"
    proc = subprocess.run([sys.executable, "-m", "jobs.cli.sweep", "submit", str(_sweep(tmp_path)), "--cluster",
                           str(_slurm_profile(tmp_path, **{section: value})), "--runs", str(runs), "--dry-run"],
                          cwd=tmp_path, env=fake["env"], capture_output=True, text=True, timeout=60, check=False)
    line = one_line(proc)
    assert why in line and len(line) < 600, line
    assert "#!/bin/bash" not in proc.stdout and not runs.exists() and not fake["log"].exists()


# ------------------------------------------------------------------ class 3: records and caches, wrong shape


HOSTILE_RECORDS = {
    "fifo": (lambda p: (p.unlink(), os.mkfifo(p)), "is a FIFO, not a regular file"),
    "folder": (lambda p: (p.unlink(), p.mkdir()), "is a folder, not a regular file"),
    "list": (lambda p: p.write_text("[1, 2, 3]"), "not a JSON object (list)"),
    "huge_int": (lambda p: p.write_text(re.sub(r'"seed": \d+', '"seed": ' + "7" * 5000, p.read_text())),
                 "holds an integer of 5000 digits"),
    "deep": (lambda p: p.write_text('{"schema": 1, "cell": ' + "[" * 5000 + "]" * 5000 + "}"),
             "nests more than 64 levels deep"),
    "wrong_type": (lambda p: p.write_text(p.read_text().replace('"metrics": {', '"metrics": {"top1@7": "x", ')),
                   "is not a number"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_RECORDS))
def test_a_record_of_the_wrong_shape_is_skipped_and_named_at_once(runs, case):
    plant, why = HOSTILE_RECORDS[case]
    target = _records(runs)[0]
    plant(target)
    before = digest(runs)
    started = time.monotonic()
    proc = _report(runs, "status", timeout=20)
    assert time.monotonic() - started < 15
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    out = " ".join(proc.stdout.split())
    assert f"skipped record {target}" in out and why in out, proc.stdout
    tables = _report(runs, "tables", "--format", "md", timeout=20)
    assert tables.returncode == 0 and "Traceback" not in tables.stderr, tables.stderr
    assert "Skipped 1 unusable record" in tables.stdout
    assert digest(runs) == before


@pytest.mark.parametrize("cache", ['{"version": 2, "schema": 1, "entries": []}',
                                   '{"version": 2, "schema": 1, "entries": {"%s": [1, 2, 3, "row"]}}',
                                   '{"version": 2, "schema": 1, "entries": {"%s": "STAMP"}}',
                                   "[" * 5000 + "]" * 5000, "fifo"])
def test_a_report_cache_of_the_wrong_shape_is_rebuilt(runs, cache):
    clean = _report(runs, "tables", "--format", "csv")
    assert clean.returncode == 0, clean.stderr
    path = runs / "loss_weight_smoke" / ".report-cache.json"
    entries = json.loads(path.read_text())["entries"]
    key = min(entries)
    path.unlink()
    if cache == "fifo":
        os.mkfifo(path)
    elif "STAMP" in cache:  # the right stamp, a row of the wrong shape: must not reach the table
        row = {**entries[key][3], "metrics": "not a mapping"}
        path.write_text(json.dumps({"version": 2, "schema": 1, "entries": {key: entries[key][:3] + [row]}}))
    else:
        path.write_text(cache.replace("%s", key))
    proc = _report(runs, "tables", "--format", "csv", timeout=20)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout == clean.stdout


MANIFEST_LINES = {
    "huge_int": (('{"run_id": "a", "stage": "pretrain", "job_id": ' + "1" * 5000 + ', "cluster": "x", '
                  '"time": "2026-01-01T00:00:00Z"}'), "line 1 holds an integer of 5000 digits"),
    "not_a_date": (('{"run_id": "a", "stage": "pretrain", "job_id": "12", "cluster": "x", '
                    '"time": "2026-13-45T99:99:99Z"}'), "line 1 has an unusable time '2026-13-45T99:99:99Z'"),
}


@pytest.mark.parametrize("case", sorted(MANIFEST_LINES))
def test_a_manifest_line_that_parses_but_means_nothing_is_one_line(runs, case):
    text, why = MANIFEST_LINES[case]
    manifest = runs / "loss_weight_smoke" / "manifest.jsonl"
    manifest.write_text(text + "\n")
    before = digest(runs)
    for module, args in (("analysis.cli", ["status", "--runs", str(runs), "--sweep", "loss_weight_smoke"]),
                         ("jobs.cli.sweep", ["status", "loss_weight_smoke", "--runs", str(runs)])):
        line = one_line(command(module, *args))
        assert str(manifest) in line and why in line, line
    assert digest(runs) == before


def test_a_manifest_that_is_a_fifo_never_blocks(runs):
    os.mkfifo(runs / "loss_weight_smoke" / "manifest.jsonl")
    started = time.monotonic()
    proc = command("jobs.cli.sweep", "status", "loss_weight_smoke", "--runs", str(runs), timeout=20)
    assert time.monotonic() - started < 15 and "Traceback" not in proc.stderr, proc.stderr


# ------------------------------------------------------------------ class 8: links out of the runs root


@pytest.mark.parametrize("what", ["run", "record"])
def test_a_link_out_of_the_runs_root_is_not_read_and_nothing_is_written_there(runs, tmp_path, what):
    record = _records(runs)[0]
    elsewhere = tmp_path / "elsewhere"
    if what == "run":  # a run folder replaced by a link to a copy outside the root
        shutil.copytree(record.parent.parent, elsewhere)
        shutil.rmtree(record.parent.parent)
        record.parent.parent.symlink_to(elsewhere, target_is_directory=True)
    else:  # the record itself a link to a file outside
        elsewhere.mkdir()
        (elsewhere / "result.json").write_bytes(record.read_bytes())
        record.unlink()
        record.symlink_to(elsewhere / "result.json")
    outside = digest(elsewhere)
    proc = _report(runs, "status")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    out = " ".join(proc.stdout.split())
    assert f"skipped record {record}" in out and "links out of the runs root" in out, proc.stdout
    tables = _report(runs, "tables", "--format", "csv")
    assert tables.returncode == 0 and "Traceback" not in tables.stderr, tables.stderr
    assert digest(elsewhere) == outside and not list(elsewhere.rglob(".*"))


@pytest.mark.parametrize("text", ["[1, 2]", '"done"', "null", "{" * 100 + "}" * 100, "fifo"])
def test_a_stage_folder_record_or_claim_of_the_wrong_shape_reads_as_none(tmp_path, text):
    from mst.atomic import read_json
    from mst.run.folder import claim_folder

    for name in ("result.json", "run.json"):
        if text == "fifo":
            os.mkfifo(tmp_path / name)
        else:
            (tmp_path / name).write_text(text)
        assert read_json(tmp_path / name) is None
    claim_folder(tmp_path, "0123456789ab")  # claimed afresh: the foreign marker named no config
    assert json.loads((tmp_path / "run.json").read_text()) == {"config_hash": "0123456789ab"}
