"""The learning curve: weighted k-NN of the pre-training's backbone at a fixed set of steps, on a fixed labelled
subset, without touching the training trajectory.

`eval.curve_steps` names the steps (0 = before the first update: the random initialisation); the k-NN memory
and queries are the first `eval.curve_subset` = (train, test) images of the stable subsets of the two splits (mst.data.subset_indices), evaluation-transformed once and kept in memory. Each point
is a metrics.jsonl line `{"step", "epoch", "curve": {top1@k, top5@k ...}}` and an entry of the record's `curve`.

Why the trajectory is untouched: the features are computed with every random stream forked (torch CPU and the
step's device), the networks' train/eval modes are put back as they were, and no gradient is taken. Each rank
evaluates the same weights (the teacher is an EMA of the synchronised student), so no collective is needed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ..augment import eval_transform
from ..config import Config
from ..data import build_dataset
from ..eval.knn import weighted_knn


@contextmanager
def frozen_for_eval(module: nn.Module) -> Iterator[nn.Module]:
    """`module` in eval mode for the block; every submodule's own train/eval flag is restored afterwards."""
    modes = {m: m.training for m in module.modules()}
    module.eval()
    try:
        yield module
    finally:
        for m, training in modes.items():
            m.training = training


def forked_rng(device: torch.device):
    """A block whose random draws (torch CPU, and the device's when it is a GPU) leave the streams as they were."""
    devices = [device] if device.type == "cuda" else []
    return torch.random.fork_rng(devices=devices)


class CurveProbe:
    """The fixed k-NN images of a run and the k-NN of a backbone on them."""

    def __init__(self, cfg: Config, device: torch.device):
        self.cfg, self.device = cfg, device
        self.steps = frozenset(cfg.eval.curve_steps)
        n_train, n_test = cfg.eval.curve_subset
        with forked_rng(device):   # building the data sets must not draw from the training streams either
            self.train_x, self.train_y = self._images("train", n_train)   # [N, 3, S, S], [N]
            self.test_x, self.test_y = self._images("test", n_test)       # [M, 3, S, S], [M]
        self.num_classes = int(torch.cat([self.train_y, self.test_y]).max()) + 1

    def _images(self, split: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        key = "train_subset" if split == "train" else "test_subset"
        data = build_dataset(dataclasses.replace(self.cfg.data, **{key: n}), split)
        transform = eval_transform(self.cfg.augment)
        images, labels = [], []
        for i in range(len(data)):
            image, label = data[i]
            images.append(transform(image))
            labels.append(int(label))
        return torch.stack(images), torch.tensor(labels)

    def due(self, step: int) -> bool:
        return step in self.steps

    @torch.no_grad()
    def _features(self, backbone: nn.Module, images: torch.Tensor) -> torch.Tensor:
        bs = self.cfg.eval.feature_batch_size
        return torch.cat([backbone(images[i:i + bs].to(self.device)).cls.float()
                          for i in range(0, len(images), bs)])                      # [N, D]

    def evaluate(self, backbone: nn.Module) -> dict[str, float]:
        """top1@k / top5@k (percent) for every k of eval.knn_ks, of `backbone`'s final-norm class token."""
        e = self.cfg.eval
        with forked_rng(self.device), frozen_for_eval(backbone):
            train_f = self._features(backbone, self.train_x)
            test_f = self._features(backbone, self.test_x)
            return weighted_knn(train_f, self.train_y.to(self.device), test_f, self.test_y.to(self.device),
                                e.knn_ks, e.knn_temperature, self.num_classes, e.knn_chunk_size)
