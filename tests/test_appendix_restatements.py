"""Numbers of the appendix that a comment or docstring restates must agree with the appendix (§1: 1024 images
on 128 DCUs) and with the value they annotate."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APPENDIX_DEVICES = 128  # appendix §1: "trained in 128 AMD DCUs"


def _per_device_claims(text: str) -> list[tuple[int, int]]:
    """(images per device, devices) of every 'N per device ... M devices/DCUs' in `text`."""
    return [(int(a), int(b)) for a, b in re.findall(r"(\d+) per device\D{0,30}?(\d+) (?:devices|DCUs)", text)
            + [(b, a) for a, b in re.findall(r"(\d+) DCUs\D{0,30}?(\d+) per device", text)]]


def test_the_paper_batch_comments_split_1024_over_128_devices():
    preset = (ROOT / "jobs" / "presets" / "paper.yaml").read_text()
    line = next(line for line in preset.splitlines() if line.strip().startswith("batch_size:"))
    batch = int(line.split(":")[1].split("#")[0])
    source = (ROOT / "mst" / "config" / "schema.py").read_text()
    doc = next(line for line in source.splitlines() if "Global batch size" in line)
    for where, text in (("paper.yaml", line), ("schema.py", doc)):
        claims = _per_device_claims(text)
        assert claims, f"{where}: the batch comment names no per-device split: {text!r}"
        for per_device, devices in claims:
            assert devices == APPENDIX_DEVICES and per_device * devices == batch == 1024, (where, text)
