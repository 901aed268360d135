"""A second Python environment standing for a cluster site's own env (tests/test_user_path.py).

Not `.venv`: a venv of another interpreter (the system's python3 when it has this one's major.minor, so that
an unprivileged user can run it; else this one's base), whose site-packages lists the test interpreter's
site-packages in a .pth file (torch and the rest, read-only, nothing copied), and where the toolkit itself is
installed editable with pip (`--no-deps --no-build-isolation`), console scripts included. Made once per test
session under a world-readable temporary folder; about 10 s.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent


def base_pythons() -> list[str]:
    """Interpreters with this one's major.minor, the system's first (an unprivileged user can run it)."""
    found = []
    for candidate in ("/usr/bin/python3", getattr(sys, "_base_executable", None), sys.executable):
        if candidate and Path(candidate).exists() and candidate not in found:
            found.append(candidate)
    return found


def runnable_by(user: str | None, python: str) -> bool:
    """Whether `user` (None: this one) can run `python` and it has this interpreter's major.minor."""
    want = f"{sys.version_info[0]}.{sys.version_info[1]}"
    cmd = [python, "-c", "import sys, venv; print('%d.%d' % sys.version_info[:2])"]
    if user:
        cmd = ["runuser", "-u", user, "--", *cmd]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False, cwd="/")
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and out.stdout.strip() == want


def make_site_env(user: str | None) -> tuple[Path, Path]:
    """(folder to remove afterwards, the env's bin folder). Raises RuntimeError saying why it cannot."""
    base = next((p for p in base_pythons() if runnable_by(user, p)), None)
    if base is None:
        raise RuntimeError(f"no Python {sys.version_info[0]}.{sys.version_info[1]} that user {user} can run "
                           f"(tried {', '.join(base_pythons())})")
    top = Path(tempfile.mkdtemp(prefix="mst-site-env-"))
    top.chmod(0o755)  # the unprivileged user reads the env; only root writes it
    env = top / "env"
    subprocess.run([base, "-m", "venv", "--without-pip", str(env)], check=True, timeout=120, capture_output=True)
    py = env / "bin" / "python"
    purelib = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  check=True, capture_output=True, text=True, timeout=60).stdout.strip())
    ours = {os.path.realpath(sysconfig.get_paths()["purelib"])}
    layers = [p for p in sys.path if p.endswith("site-packages") and os.path.isdir(p)]
    # this interpreter's own site-packages last: it holds the editable install of the checkout, which the
    # site env must not borrow (its own install comes first on its path)
    layers.sort(key=lambda p: os.path.realpath(p) in ours)
    (purelib / "_mst_site_layers.pth").write_text("".join(f"{p}\n" for p in layers))
    proc = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                           "--disable-pip-version-check", "--no-warn-script-location", "-e", str(REPO)],
                          capture_output=True, text=True, timeout=600, check=False, cwd=top)
    if proc.returncode != 0:
        shutil.rmtree(top, ignore_errors=True)
        raise RuntimeError(f"pip install -e into the site env failed: {proc.stderr.strip()[-500:]}")
    return top, env / "bin"
