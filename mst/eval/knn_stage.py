"""The `knn` stage: frozen backbone features of train and test, then the weighted k-NN for every k."""

from __future__ import annotations

from pathlib import Path

from ..config import Config
from .features import class_count, drop_feature_cache, eval_dataset, extract_features
from .knn import weighted_knn
from .stage import Stage, StopFn, load_frozen, run_stage


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
        train_set, test_set = eval_dataset(cfg, "train"), eval_dataset(cfg, "test")
        train_f, train_y = extract_features(stage, backbone, train_set, "cls", "train_cls", should_stop,
                                            show_progress)
        test_f, test_y = extract_features(stage, backbone, test_set, "cls", "test_cls", should_stop,
                                          show_progress)
        metrics = weighted_knn(train_f.to(stage.device), train_y.to(stage.device), test_f.to(stage.device),
                               test_y.to(stage.device), e.knn_ks, e.knn_temperature, class_count(train_set),
                               e.knn_chunk_size)
        stage.truncate_log(lambda line: False)  # a line of an attempt killed before its record
        stage.log({"n_train": len(train_y), "n_test": len(test_y), **metrics})
        record = stage.record("done", metrics, weights_sha256=digest, features_from=e.knn_source,
                              pretrain_dir=str(pretrain_dir), n_train=len(train_y), n_test=len(test_y),
                              feature_dim=int(train_f.shape[1]))
        drop_feature_cache(stage)
        stage.checkpoint_path.unlink(missing_ok=True)
        return record

    return run_stage("knn", cfg, out_dir, record_extra, body, pretrain_dir, allow_partial)
