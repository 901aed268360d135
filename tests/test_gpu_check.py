"""benchmarks/gpu_check.py: one line and exit 0 without a device; every section runs at a tiny shape on the CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
SECTIONS = ("MST step, bf16", "MST step, fp16 + loss scaling", "backbone forward, cpu vs device",
            "batched augmentation on the device", "checkpoint -> resume, same weights", "k-NN on the device",
            "split pipeline: photometric ops on the device")


def _run(*args: str, hide_devices: bool = False) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if hide_devices:
        env["CUDA_VISIBLE_DEVICES"] = ""
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900, check=False)


def test_without_a_device_it_says_so_in_one_line(tmp_path):
    out = tmp_path / "gpu.md"
    proc = _run("--out", str(out), hide_devices=True)
    assert proc.returncode == 0, proc.stderr
    line = "gpu-check: no GPU on this machine (torch.cuda.is_available() is False); nothing to check"
    assert proc.stdout.splitlines() == [line]
    assert not out.exists()


@pytest.mark.slow
def test_every_section_passes_at_a_tiny_shape_on_the_cpu(tmp_path):
    out = tmp_path / "gpu.md"
    proc = _run("--device", "cpu", "--tiny", "--steps", "1", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [line for line in out.read_text().splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [row.split(" | ")[0].lstrip("| ") for row in rows] == list(SECTIONS)
    assert all(row.split(" | ")[1] == "ok" for row in rows)
    assert "weights equal" in out.read_text()
    assert proc.stdout.splitlines()[-1].startswith("gpu-check: 7/7 checks passed")
