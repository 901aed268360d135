"""The `knn` stage: frozen backbone features of train and test, then the weighted k-NN for every k."""

from __future__ import annotations

from pathlib import Path

from ..config import Config
from .baselines import baseline_fields
from .features import drop_feature_cache
from .knn_probe import knn_eval
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
        metrics, n_train, n_test, dim = knn_eval(stage, backbone, "", should_stop, show_progress)
        stage.truncate_log(lambda line: False)  # a line of an attempt killed before its record
        stage.log({"n_train": n_train, "n_test": n_test, **metrics})
        record = stage.record("done", metrics, weights_sha256=digest, features_from=e.knn_source,
                              pretrain_dir=str(pretrain_dir), n_train=n_train, n_test=n_test, feature_dim=dim,
                              **baseline_fields(stage, metrics))
        drop_feature_cache(stage)
        stage.checkpoint_path.unlink(missing_ok=True)
        return record

    return run_stage("knn", cfg, out_dir, record_extra, body, pretrain_dir, allow_partial)
