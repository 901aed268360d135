"""Whether this Python can run the login-node commands (`make sweep|status|report|resubmit|cancel` on a Slurm
profile): prints nothing when it can, else one `error:` line with the fix, and exits 2.

The Makefile runs it with the site's Python (MST_PY, else PY, else python3 on PATH: the active env) before any
of those commands. Standard library only, so that it answers in an env that lacks everything else.
"""

from __future__ import annotations

import importlib
import sys
from importlib import metadata

INSTALL = "README: installing on a cluster"
# what `mst-sweep` and `mst-report` import on the login node; torch is the nodes' business
LOGIN_MODULES = ("jobs.cli.sweep", "jobs.launcher", "jobs.profiles", "jobs.sweep", "analysis.cli", "submitit",
                 "yaml", "rich")
MIN_PYTHON = (3, 10)


def problem() -> str | None:
    """The one line saying what this Python lacks, or None."""
    exe = sys.executable
    if sys.version_info[:2] < MIN_PYTHON:
        return (f"{exe} is Python {sys.version_info[0]}.{sys.version_info[1]}; the toolkit needs >= "
                f"{MIN_PYTHON[0]}.{MIN_PYTHON[1]}: activate the site's env ({INSTALL}) or set MST_PY=/path/to/env/bin/python")
    # installed means found on the interpreter's own path, not as the checkout's egg-info in the current folder
    # (`python -m` puts the current folder first)
    if next(iter(metadata.distributions(name="mst-toolkit", path=sys.path[1:])), None) is None:
        return (f"the mst-toolkit package is not installed in {exe}; install it in the site's env "
                f"(pip install -e . there, {INSTALL}), or set MST_PY to the python of the env that has it")
    for name in LOGIN_MODULES:
        try:
            importlib.import_module(name)
        except ImportError as err:
            missing = err.name or name
            return (f"{missing} cannot be imported in {exe} ({err}); install the toolkit's dependencies in that "
                    f"env (pip install -c /tmp/site.txt -e ., {INSTALL})")
    return None


def main() -> None:
    line = problem()
    if line:
        print(f"error: {line}")
        sys.exit(2)


if __name__ == "__main__":
    main()
