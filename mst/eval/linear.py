"""The `linear_cls` and `linear_dino` stages: a linear probe (mst/eval/linear_probe.py) on the frozen backbone
of a pre-training or a weights file, resumable, with the baselines beside its numbers (mst/eval/baselines.py)."""

from __future__ import annotations

from pathlib import Path

from ..config import Config
from ..run.folder import RunFolderMismatch
from .baselines import baseline_fields
from .epochs import fresh_counters, resume_counters, summarise
from .features import drop_feature_cache
from .linear_probe import PROBES, train_probe
from .stage import Stage, StopFn, load_frozen, run_stage


def run_linear(cfg: Config, pretrain_dir: str | Path, out_dir: str | Path, probe: str = "cls",
               should_stop: StopFn = None, record_extra: dict | None = None, show_progress: bool = True,
               cached_features: bool | None = None, allow_partial: bool = False) -> dict:
    """Train and evaluate a linear probe on the frozen backbone of `pretrain_dir`; stage `linear_<probe>`.

    `cached_features` overrides cfg.eval.linear_cached_features when given. An unfinished pre-training is
    refused unless `allow_partial` (the record is then labelled partial). A non-finite loss fails the stage.
    """
    if probe not in PROBES:
        raise ValueError(f"unknown probe '{probe}'; choose one of {', '.join(PROBES)}")
    cached = cfg.eval.linear_cached_features if cached_features is None else cached_features
    mode = "cached_features" if cached else "augmented"

    def body(stage: Stage) -> dict:
        e = cfg.eval
        backbone, _, digest = load_frozen(pretrain_dir, e.knn_source, stage.device)
        state = stage.load()
        if state is not None and "linear" not in state:
            state = None  # stopped during feature extraction: only the wall time was saved
        if state is not None and (state["probe"], state["mode"], state["weights_sha256"]) != (probe, mode, digest):
            raise RunFolderMismatch(
                f"{stage.checkpoint_path} holds a '{state['probe']}' probe ({state['mode']}) of weights "
                f"{state['weights_sha256'][:12]}, not '{probe}' ({mode}) of {digest[:12]}; use another --out folder")
        st = resume_counters(stage, fresh_counters(version=1, probe=probe, mode=mode, weights_sha256=digest), state)
        trained = train_probe(stage, backbone, probe, cached, st, state, should_stop=should_stop,
                              show_progress=show_progress)
        metrics = summarise(trained.history)
        record = stage.record(
            "done", metrics, weights_sha256=digest, probe=probe, mode=mode,
            feature_dim=trained.feature_dim, features_from=e.knn_source, pretrain_dir=str(pretrain_dir),
            n_train=trained.n_train, n_test=trained.n_test, recipe=e.linear_recipe, lr=trained.lr,
            batch_size=e.linear_batch_size, epochs=e.linear_epochs, history=trained.history,
            **baseline_fields(stage, metrics, mode))
        drop_feature_cache(stage)
        return record

    return run_stage(f"linear_{probe}", cfg, out_dir, record_extra, body, pretrain_dir, allow_partial)
