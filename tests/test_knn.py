"""Weighted k-NN: exact agreement with a brute-force loop, edge cases, and large query sets in chunks."""

import math

import pytest
import torch

from mst.eval.knn import auto_chunk_size, knn_predictions, weighted_knn


def brute_force_ranked(train, train_labels, query, k, temperature, num_classes):
    """One query, plain Python: cosine similarities, k best, exp(sim/T) votes, rank with lowest-index ties."""
    query = query.tolist()
    qn = math.sqrt(sum(v * v for v in query))
    sims = []
    for i, row in enumerate(train.tolist()):
        rn = math.sqrt(sum(v * v for v in row))
        sims.append((sum(a * b for a, b in zip(query, row)) / (qn * rn), i))
    sims.sort(key=lambda s: -s[0])
    votes = [0.0] * num_classes
    for sim, i in sims[: min(k, len(sims))]:
        votes[int(train_labels[i])] += math.exp(sim / temperature)
    return sorted(range(num_classes), key=lambda c: (-votes[c], c))


def structured_set(n_train, n_test, dim, num_classes, seed):
    """Class means plus noise, so the neighbours carry a signal and accuracies are not trivially ~chance."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(num_classes, dim, generator=g)
    train_labels = torch.randint(0, num_classes, (n_train,), generator=g)
    test_labels = torch.randint(0, num_classes, (n_test,), generator=g)
    train = means[train_labels] + 1.5 * torch.randn(n_train, dim, generator=g)
    test = means[test_labels] + 1.5 * torch.randn(n_test, dim, generator=g)
    return train.double(), train_labels, test.double(), test_labels


@pytest.mark.parametrize("chunk_size", [1, 7, None])
def test_matches_brute_force_for_every_k(chunk_size):
    ks = (1, 3, 10, 20, 100, 200)
    num_classes, temperature = 6, 0.07
    train, train_labels, test, test_labels = structured_set(150, 23, 12, num_classes, seed=1)
    for start, ranked in knn_predictions(
        train, train_labels, test, ks, temperature, num_classes, chunk_size=chunk_size
    ):
        for k in ks:
            pred = ranked[k]
            for row in range(pred.shape[0]):
                expected = brute_force_ranked(train, train_labels, test[start + row], k, temperature, num_classes)
                assert pred[row, 0].item() == expected[0], (k, start + row)
                assert pred[row].tolist() == expected[:5], (k, start + row)

    metrics = weighted_knn(train, train_labels, test, test_labels, ks, temperature, num_classes, chunk_size)
    for k in ks:
        top1 = top5 = 0
        for row in range(test.shape[0]):
            expected = brute_force_ranked(train, train_labels, test[row], k, temperature, num_classes)
            top1 += expected[0] == int(test_labels[row])
            top5 += int(test_labels[row]) in expected[:5]
        assert metrics[f"top1@{k}"] == pytest.approx(100.0 * top1 / test.shape[0])
        assert metrics[f"top5@{k}"] == pytest.approx(100.0 * top5 / test.shape[0])


def test_metric_names_and_order_follow_ks():
    train, train_labels, test, test_labels = structured_set(60, 9, 8, 4, seed=2)
    metrics = weighted_knn(train, train_labels, test, test_labels, ks=(20, 10))
    assert list(metrics) == ["top1@20", "top5@20", "top1@10", "top5@10"]
    assert all(0.0 <= v <= 100.0 for v in metrics.values())


def test_single_test_sample():
    train, train_labels, test, test_labels = structured_set(80, 1, 10, 5, seed=3)
    metrics = weighted_knn(train, train_labels, test, test_labels, ks=(10, 20), num_classes=5)
    expected = brute_force_ranked(train, train_labels, test[0], 10, 0.07, 5)
    assert metrics["top1@10"] == (100.0 if expected[0] == int(test_labels[0]) else 0.0)


def test_k_larger_than_training_set_uses_every_sample():
    train, train_labels, test, test_labels = structured_set(7, 11, 6, 3, seed=4)
    clipped = weighted_knn(train, train_labels, test, test_labels, ks=(200,), num_classes=3)
    everything = weighted_knn(train, train_labels, test, test_labels, ks=(7,), num_classes=3)
    assert clipped["top1@200"] == everything["top1@7"]
    for _, ranked in knn_predictions(train, train_labels, test, ks=(200,), num_classes=3):
        for row in range(ranked[200].shape[0]):
            assert ranked[200][row, 0].item() == brute_force_ranked(train, train_labels, test[row], 7, 0.07, 3)[0]


def test_tied_votes_go_to_the_lowest_class_index():
    # two training samples at the same similarity with different labels: votes tie exactly
    train = torch.tensor([[1.0, 1.0], [1.0, -1.0]])
    test = torch.tensor([[1.0, 0.0]])
    for labels in ([4, 2], [2, 4]):
        (_, ranked), = knn_predictions(train, torch.tensor(labels), test, ks=(2,), num_classes=5)
        assert ranked[2][0, 0].item() == 2
        assert ranked[2][0, :2].tolist() == [2, 4]


def test_fewer_than_five_classes_top5_is_all_classes():
    train, train_labels, test, test_labels = structured_set(40, 10, 5, 3, seed=5)
    metrics = weighted_knn(train, train_labels, test, test_labels, ks=(10,), num_classes=3)
    assert metrics["top5@10"] == 100.0


def test_bad_inputs_are_rejected():
    train, train_labels, test, test_labels = structured_set(20, 4, 5, 3, seed=6)
    with pytest.raises(ValueError, match="dims differ"):
        weighted_knn(train, train_labels, test[:, :3], test_labels)
    with pytest.raises(ValueError, match="positive"):
        weighted_knn(train, train_labels, test, test_labels, ks=(0,))
    with pytest.raises(ValueError, match="temperature"):
        weighted_knn(train, train_labels, test, test_labels, temperature=0.0)
    with pytest.raises(ValueError, match="labels must lie in"):
        weighted_knn(train, train_labels, test, test_labels, num_classes=2)


def test_50k_queries_by_10k_train_in_fixed_chunks():
    torch.manual_seed(0)
    n_train, n_test, dim, num_classes = 10_000, 50_000, 192, 10
    means = torch.randn(num_classes, dim)
    train_labels = torch.randint(0, num_classes, (n_train,))
    test_labels = torch.randint(0, num_classes, (n_test,))
    train = means[train_labels] + 2.0 * torch.randn(n_train, dim)
    test = means[test_labels] + 2.0 * torch.randn(n_test, dim)
    chunk = auto_chunk_size(n_train)
    # the whole similarity matrix would be 50k x 10k = 2 GB; one block is bounded to ~128 MiB
    assert chunk * n_train * 4 <= 128 * 2**20 + 4 * n_train
    starts = [s for s, _ in knn_predictions(train, train_labels, test[:3 * chunk], ks=(10,))]
    assert starts == [0, chunk, 2 * chunk]
    metrics = weighted_knn(train, train_labels, test, test_labels, ks=(10, 20, 100, 200))
    assert set(metrics) == {f"top{t}@{k}" for t in (1, 5) for k in (10, 20, 100, 200)}
    assert metrics["top1@10"] > 90.0  # separable clusters: a broken vote would fall towards 10 %


def test_rank_keys_equal_a_stable_sort_on_heavy_ties():
    from mst.eval.knn import _rank

    g = torch.Generator().manual_seed(7)
    votes = torch.randint(0, 4, (300, 50), generator=g).float() * 0.5  # many equal totals, many zeros
    votes[:, 7] = float("inf")  # an overflowed exp(sim / T) still ranks first
    votes[0] = 0.0
    expected = votes.sort(dim=1, descending=True, stable=True).indices[:, :5]
    assert torch.equal(_rank(votes, 5), expected)
    assert _rank(votes, 5)[0].tolist() == [0, 1, 2, 3, 4]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A real (two-step) pre-training of the tiny preset."""
    from jobs.config_io import load_config
    from mst.train import run_pretrain

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("pretrain")
    run_pretrain(load_config("tiny", ["train.epochs=1", "data.train_subset=64", "train.threads=1"]), out,
                 show_progress=False)
    return out


def test_knn_stage_records_every_k_and_resumes_extraction(pretrained, tmp_path):
    import json

    from jobs.config_io import load_config
    from mst.eval import run_knn
    from mst.train import Interrupted

    cfg = load_config("tiny", ["train.threads=1", "eval.feature_batch_size=64", "eval.knn_ks=[10,20,300]"])
    whole = run_knn(cfg, pretrained, tmp_path / "whole", show_progress=False)
    assert whole["status"] == "done" and whole["stage"] == "knn"
    assert list(whole["metrics"]) == ["top1@10", "top5@10", "top1@20", "top5@20", "top1@300", "top5@300"]
    assert whole["weights_sha256"] == json.loads((pretrained / "result.json").read_text())["weights_sha256"]
    assert (whole["n_train"], whole["n_test"], whole["feature_dim"]) == (256, 128, 48)
    assert not (tmp_path / "whole" / "features").exists()

    polls = {"n": 0}

    def stop_in_train_features():
        polls["n"] += 1
        return polls["n"] == 3  # after 2 of the 4 training batches

    with pytest.raises(Interrupted) as stopped:
        run_knn(cfg, pretrained, tmp_path / "parts", should_stop=stop_in_train_features, show_progress=False)
    assert stopped.value.step == 128
    assert (tmp_path / "parts" / "features" / "train_cls.partial.pt").is_file()
    resumed = run_knn(cfg, pretrained, tmp_path / "parts", show_progress=False)
    assert resumed["metrics"] == whole["metrics"]
