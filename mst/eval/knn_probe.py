"""The k-NN evaluation of a frozen backbone [appendix §5, DINO's weighted k-NN]; the `knn` stage runs it
(mst/eval/knn_stage.py), and so do the baselines (mst/eval/baselines.py)."""

from __future__ import annotations

import torch

from .features import class_count, eval_dataset, extract_features
from .knn import weighted_knn
from .stage import Stage, StopFn


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
