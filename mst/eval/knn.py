"""Weighted k-NN classification on frozen features (Wu et al. 2018, as DINO and the MST appendix §4).

Each test feature's k nearest training features (cosine similarity) vote for their class with weight
exp(sim / T). Every k of a run is answered from ONE top-max(k) search per chunk of test queries: the
neighbours come back sorted by similarity, so the votes for a larger k are the votes for the smaller k
plus the next neighbours' votes.

Edge cases (deterministic, documented here once):
- k larger than the training set is clipped to the training set size (every training sample votes);
  the metric keeps the requested k in its name.
- Equal vote totals between classes are broken towards the lowest class index (see `_rank`); with fewer
  than 5 voted classes, top-5 is filled with the lowest-index classes that got no vote.
- Equal similarities at the k-th neighbour boundary are resolved by `torch.topk`; with real-valued features
  this practically never happens and does not affect the vote weights, only which sample is counted.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F

# Upper bound on the elements of one [chunk, n_train] similarity block when no chunk size is given:
# 2**25 fp32 values = 128 MiB, small enough for any host or device, large enough to keep matmul efficient.
_AUTO_BLOCK_ELEMENTS = 2**25
_MAX_AUTO_CHUNK = 4096


# Class indices packed below the vote bits of a ranking key (see `_rank`); supports up to 2**20 classes.
_CLASS_BITS = 20


def _rank(votes: torch.Tensor, top: int) -> torch.Tensor:
    """The `top` classes of each row by vote, highest first, equal votes towards the lowest class index.

    Non-negative float32 values order like their int32 bit patterns, so one int64 key per class,
    (vote bits << 20) + (2**20 - 1 - class), is unique and orders by vote, then by ascending class:
    a single top-k then gives the deterministic ranking that a full stable sort would, much cheaper.
    """
    num_classes = votes.shape[1]
    if votes.dtype != torch.float32 or num_classes > 2**_CLASS_BITS:
        return votes.sort(dim=1, descending=True, stable=True).indices[:, :top]
    reverse_class = (2**_CLASS_BITS - 1) - torch.arange(num_classes, device=votes.device)  # [K]
    keys = (votes.view(torch.int32).long() << _CLASS_BITS) + reverse_class  # [C, K]
    return keys.topk(top, dim=1).indices


def auto_chunk_size(n_train: int) -> int:
    """Number of test queries per chunk so one similarity block stays near `_AUTO_BLOCK_ELEMENTS`."""
    return max(1, min(_MAX_AUTO_CHUNK, _AUTO_BLOCK_ELEMENTS // max(1, n_train)))


def _check_inputs(train_features, train_labels, test_features, ks, temperature) -> None:
    if train_features.ndim != 2 or test_features.ndim != 2:
        raise ValueError("k-NN features must be 2-D [samples, dim]")
    if train_features.shape[1] != test_features.shape[1]:
        raise ValueError(
            f"k-NN feature dims differ: train {train_features.shape[1]} vs test {test_features.shape[1]}"
        )
    if train_labels.shape != (train_features.shape[0],):
        raise ValueError("k-NN train labels must be 1-D with one label per training feature")
    if train_features.shape[0] == 0:
        raise ValueError("k-NN needs at least one training sample")
    if not ks or any(int(k) < 1 for k in ks):
        raise ValueError(f"k-NN ks must be positive integers, got {tuple(ks)}")
    if temperature <= 0:
        raise ValueError(f"k-NN temperature must be > 0, got {temperature}")


def knn_predictions(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    ks: Sequence[int] = (10, 20, 100, 200),
    temperature: float = 0.07,
    num_classes: int | None = None,
    chunk_size: int | None = None,
    top: int = 5,
) -> Iterator[tuple[int, dict[int, torch.Tensor]]]:
    """Yield `(start, {k: ranked classes [chunk, top]})` for consecutive chunks of test queries.

    Classes are ranked by their summed vote weight, highest first, ties towards the lowest class index.
    Only one [chunk, n_train] similarity block exists at a time.
    """
    _check_inputs(train_features, train_labels, test_features, ks, temperature)
    n_train = train_features.shape[0]
    if num_classes is None:
        num_classes = int(train_labels.max()) + 1
    if int(train_labels.min()) < 0 or int(train_labels.max()) >= num_classes:
        raise ValueError(f"k-NN train labels must lie in [0, {num_classes}), got "
                         f"[{int(train_labels.min())}, {int(train_labels.max())}]")
    chunk = int(chunk_size) if chunk_size else auto_chunk_size(n_train)
    if chunk < 1:
        raise ValueError(f"k-NN chunk size must be >= 1, got {chunk_size}")
    top = min(top, num_classes)
    # ascending requested ks, each clipped to the training set size
    order = sorted({int(k) for k in ks})
    clipped = {k: min(k, n_train) for k in order}
    k_max = max(clipped.values())

    train = F.normalize(train_features.float(), dim=1)  # [M, D]
    labels = train_labels.to(train.device, torch.long)  # [M]
    for start in range(0, test_features.shape[0], chunk):
        queries = F.normalize(test_features[start : start + chunk].to(train.device).float(), dim=1)
        sims = queries @ train.T  # [C, M]
        top_sims, top_idx = sims.topk(k_max, dim=1)  # [C, k_max], sorted by similarity
        del sims
        weights = (top_sims / temperature).exp_()  # [C, k_max]
        neighbour_labels = labels[top_idx]  # [C, k_max]
        # votes are sums of positive weights, so they are >= +0.0 (what `_rank` relies on)
        votes = torch.zeros(queries.shape[0], num_classes, dtype=weights.dtype, device=weights.device)
        ranked: dict[int, torch.Tensor] = {}
        done = 0
        for k in order:
            upto = clipped[k]
            if upto > done:  # add the votes of neighbours done..upto only: every k shares one search
                votes.scatter_add_(1, neighbour_labels[:, done:upto], weights[:, done:upto])
                done = upto
            ranked[k] = _rank(votes, top)  # [C, top]
        yield start, ranked


def weighted_knn(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    ks: Sequence[int] = (10, 20, 100, 200),
    temperature: float = 0.07,
    num_classes: int | None = None,
    chunk_size: int | None = None,
) -> dict[str, float]:
    """Top-1 and top-5 accuracy (percent) of the weighted k-NN classifier for every k.

    Returns `{"top1@10": .., "top5@10": .., "top1@20": .., ...}` in the order of `ks`.
    `chunk_size` test queries are handled at a time (None: sized so a similarity block is ~128 MiB).
    """
    if test_labels.shape != (test_features.shape[0],):
        raise ValueError("k-NN test labels must be 1-D with one label per test feature")
    if test_features.shape[0] == 0:
        raise ValueError("k-NN needs at least one test sample")
    if num_classes is None:
        num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    hits1 = {int(k): 0 for k in ks}
    hits5 = {int(k): 0 for k in ks}
    targets_all = test_labels.long()
    for start, ranked in knn_predictions(
        train_features, train_labels, test_features, ks, temperature, num_classes, chunk_size
    ):
        for k, pred in ranked.items():
            targets = targets_all[start : start + pred.shape[0]].to(pred.device).unsqueeze(1)  # [C, 1]
            match = pred == targets  # [C, top]
            hits1[k] += int(match[:, 0].sum())
            hits5[k] += int(match.any(dim=1).sum())
    n = test_features.shape[0]
    out: dict[str, float] = {}
    for k in ks:
        out[f"top1@{int(k)}"] = 100.0 * hits1[int(k)] / n
        out[f"top5@{int(k)}"] = 100.0 * hits5[int(k)] / n
    return out
