"""The `knn` stage: frozen backbone features of train and test, then the weighted k-NN for every k."""

from __future__ import annotations

from pathlib import Path

import torch

from ..config import Config
from .features import class_count, drop_feature_cache, eval_dataset, extract_features
from .knn import weighted_knn
from .stage import Stage, StopFn, load_frozen, run_stage


def knn_eval(stage: Stage, backbone: torch.nn.Module, features_prefix: str = "", should_stop: StopFn = None,
             show_progress: bool = False) -> tuple[dict[str, float], int, int, int]:
    """The k-NN evaluation of a frozen `backbone`: class tokens of the stage's train and test images (feature
    files named with `features_prefix`), then the weighted k-NN for every k of eval.knn_ks ->
    (metrics, n_train, n_test, feature dim). The stage and the baselines (mst/eval/baselines.py) both call it."""
    e = stage.cfg.eval
    train_set, test_set = eval_dataset(stage.cfg, "train"), eval_dataset(stage.cfg, "test")
    train_f, train_y = extract_features(stage, backbone, train_set, "cls", f"{features_prefix}train_cls",
                                        should_stop, show_progress)
    test_f, test_y = extract_features(stage, backbone, test_set, "cls", f"{features_prefix}test_cls",
                                      should_stop, show_progress)
    dev = stage.device
    metrics = weighted_knn(train_f.to(dev), train_y.to(dev), test_f.to(dev), test_y.to(dev), e.knn_ks,
                           e.knn_temperature, class_count(train_set), e.knn_chunk_size)
    return metrics, len(train_y), len(test_y), int(train_f.shape[1])


def run_knn(cfg: Config, pretrain_dir: str | Path, out_dir: str | Path, should_stop: StopFn = None,
            record_extra: dict | None = None, show_progress: bool = True, allow_partial: bool = False) -> dict:
    """Weighted k-NN of the checkpoint in `pretrain_dir` (cfg.eval.knn_source: teacher or student).

    Features are the final-norm class token on resize + centre-crop images. Extraction is the costly,
    resumable part; the k-NN itself runs in fixed-size chunks (cfg.eval.knn_chunk_size test queries).
    An unfinished pre-training is refused unless `allow_partial` (the record is then labelled partial).
    """

    def body(stage: Stage) -> dict:
        e = cfg.eval
        backbone, _, digest = load_frozen(pretrain_dir, e.knn_source, stage.device)
        stage.load()  # wall time of earlier attempts
        metrics, n_train, n_test, dim = knn_eval(stage, backbone, "", should_stop, show_progress)
        stage.truncate_log(lambda line: False)  # a line of an attempt killed before its record
        stage.log({"n_train": n_train, "n_test": n_test, **metrics})
        record = stage.record("done", metrics, weights_sha256=digest, features_from=e.knn_source,
                              pretrain_dir=str(pretrain_dir), n_train=n_train, n_test=n_test, feature_dim=dim)
        drop_feature_cache(stage)
        stage.checkpoint_path.unlink(missing_ok=True)
        return record

    return run_stage("knn", cfg, out_dir, record_extra, body, pretrain_dir, allow_partial)
