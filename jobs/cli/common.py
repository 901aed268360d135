"""What every command line shares: one-line user errors, logging set-up, --set parsing."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import NoReturn


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one line saying what is wrong and how to fix it, then exit non-zero."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def setup_logging(verbose: bool = False) -> None:
    """One logger set-up per entry point; ranks other than 0 only report warnings."""
    rank = int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")))
    level = logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(level=level if rank == 0 else logging.WARNING, stream=sys.stderr,
                        format=f"%(asctime)s [rank {rank}] %(name)s: %(message)s", datefmt="%H:%M:%S")


def add_config_args(parser: argparse.ArgumentParser, default_preset: str = "smoke") -> None:
    parser.add_argument("--preset", default=default_preset,
                        help=f"preset name (paper, smoke, tiny) or a YAML file (default: {default_preset})")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="dotted override, repeatable, e.g. --set optim.lr=1e-3")
