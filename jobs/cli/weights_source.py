"""`mst-eval ... --weights FILE --arch NAME`: evaluate a backbone file (an export, or DINO's, iBOT's, timm's
published weights) with the protocol of a preset, in place of a pre-training folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import fail

NAMINGS = ("auto", "timm", "dino")  # mst.weights: auto, then its NAMINGS, without importing torch for --help


def add_weights_options(source: argparse._MutuallyExclusiveGroup, command: argparse.ArgumentParser) -> None:
    """--weights beside --checkpoint (one of the two), and the options that read it."""
    source.add_argument("--weights", metavar="FILE",
                        help="a backbone file to evaluate instead: .safetensors or a torch state dict "
                             "(.pth/.pt/.bin) in timm or DINO naming; needs --arch, takes data and protocol "
                             "from --preset (default smoke); nothing in it is unpickled")
    command.add_argument("--arch", metavar="NAME",
                         help="with --weights: the backbone it holds (vit_test, vit_smoke, deit_small, vit_base)")
    command.add_argument("--naming", choices=NAMINGS, default="auto",
                         help="with --weights: its key names (default: detected)")


def weights_config(args, cfg, source):
    """(cfg, source) as given without --weights; with it, (cfg for the file's backbone, mst.weights.WeightsFile),
    after reading the file once: a hostile, damaged or mismatched file is one line here, before anything is
    written."""
    if not getattr(args, "weights", None):
        if getattr(args, "arch", None) or getattr(args, "naming", "auto") != "auto":
            fail("--arch and --naming describe a --weights file; drop them, or give --weights FILE instead of "
                 "--checkpoint")
        return cfg, source
    from mst.config import apply_overrides
    from mst.weights import WeightsError, WeightsFile

    if not args.arch:
        fail(f"--weights {args.weights} needs --arch NAME, the backbone it holds; e.g. --arch deit_small for "
             "a ViT-S/16")
    source = WeightsFile(Path(args.weights), args.arch, args.naming)
    try:
        backbone, _ = source.load()
    except WeightsError as err:
        fail(str(err))
    # the record's config names the backbone evaluated; its patch size is the file's
    return apply_overrides(cfg, {"model.arch": args.arch, "model.patch_size": backbone.patch_size}), source
