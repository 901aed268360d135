"""Inputs that parse but cannot be used (issue 19): YAML that expands or nests without bound, files that are
not regular files, numbers beyond what they stand for, records and caches of the wrong shape, and values that
would forge a line on the terminal. Each ends in one line, at once, with nothing written.

The command lines run as separate processes, as a user runs them; the readers' bounds are unit-tested too.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jobs.yaml_read import load_yaml
from mst.boundary import console_script
from mst.echo import shown
from mst.inputs import InputError, parse_json, read_json_file, read_regular

REPO = Path(__file__).resolve().parent.parent
BOMB = "\n".join([f"{chr(97)}: &a [x, x, x, x, x, x, x, x, x, x]"]
                 + [f"{chr(97 + i)}: &{chr(97 + i)} [" + ", ".join([f"*{chr(96 + i)}"] * 10) + "]"
                    for i in range(1, 9)]) + "\n"  # 9 levels of 10: 10^9 leaves, 400 bytes
DEEP = "train: " + "[" * 5000 + "]" * 5000 + "\n"


def command(module: str, *args: str, cwd: Path = REPO, env: dict | None = None, timeout: float = 60
            ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, check=False, env={**os.environ, **(env or {})})


def one_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def digest(folder: Path) -> dict[str, str]:
    """Every regular file under `folder` and its sha256 (what must not change)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


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


# ------------------------------------------------------------------ class 1: YAML through the command lines


@pytest.mark.parametrize("text,why", [(BOMB, "expands to more than"), (DEEP, "nests more than 64")])
def test_commands_refuse_yaml_bombs_and_deep_nesting_in_one_line(tmp_path, text, why):
    path = tmp_path / "hostile.yaml"
    path.write_text(text)
    runs = tmp_path / "runs"
    for module, args in (("jobs.cli.pretrain", ["--preset", str(path), "--out", str(tmp_path / "out")]),
                         ("jobs.cli.sweep", ["submit", str(path), "--cluster", "local", "--runs", str(runs),
                                             "--dry-run"]),
                         ("jobs.cli.sweep", ["check", "--cluster", str(path)]),
                         ("analysis.cli", ["tables", "--runs", str(tmp_path), "--sweep", str(path)])):
        started = time.monotonic()
        line = one_line(command(module, *args, timeout=30))
        assert str(path) in line and why in line, line
        assert time.monotonic() - started < 15  # one interpreter start; never the expansion
    assert not runs.exists() and not (tmp_path / "out").exists()


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
