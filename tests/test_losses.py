"""DINO loss and centre against hand computations; restoration loss; schedules at their end points."""

import math

import pytest
import torch

from mst.losses import DINOLoss, restoration_loss
from mst.schedules import cosine, teacher_temperature


def test_dino_loss_matches_a_hand_computation():
    loss_fn = DINOLoss(out_dim=3, student_temp=0.5, center_momentum=0.9)
    loss_fn.center.copy_(torch.tensor([[0.1, 0.0, -0.1]]))
    t = [torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([[0.0, 1.0, 0.0]])]     # teacher, 2 global crops
    s = [torch.tensor([[0.0, 0.0, 1.0]]), torch.tensor([[1.0, 1.0, 0.0]]), torch.tensor([[0.5, 0.0, 0.0]])]
    temp = 0.25

    def softmax(v):
        e = [math.exp(x) for x in v]
        return [x / sum(e) for x in e]
    center = [0.1, 0.0, -0.1]
    q = [softmax([(a - c) / temp for a, c in zip(row[0].tolist(), center)]) for row in t]
    logp = [[math.log(x) for x in softmax([a / 0.5 for a in row[0].tolist()])] for row in s]
    pairs = [(i, v) for i in range(2) for v in range(3) if v != i]             # (0,1) (0,2) (1,0) (1,2)
    expected = sum(-sum(qi * li for qi, li in zip(q[i], logp[v])) for i, v in pairs) / len(pairs)
    assert loss_fn(s, t, temp).item() == pytest.approx(expected, rel=1e-6)
    # centre: 0.9 * old + 0.1 * batch mean of the teacher logits (no process group: a local mean)
    torch.testing.assert_close(loss_fn.center, 0.9 * torch.tensor([[0.1, 0.0, -0.1]]) + 0.1 *
                               torch.tensor([[0.5, 0.5, 0.0]]))


def test_restoration_loss_targets():
    target = torch.zeros(1, 3, 4, 4)
    pred = torch.zeros(1, 3, 4, 4)
    pred[:, :, :2, :2] = 2.0                                                  # error only in patch 0 (2x2)
    mask = torch.tensor([[True, False, False, False]])
    assert restoration_loss(pred, target, mask, 2, "image").item() == pytest.approx(2.0 * 12 / 48)
    assert restoration_loss(pred, target, mask, 2, "masked").item() == pytest.approx(2.0)
    assert restoration_loss(pred, target, ~mask, 2, "masked").item() == 0.0
    assert restoration_loss(pred, target, None, 2, "masked").item() == 0.0


def test_schedules_at_their_end_points():
    assert cosine(0, 100, 1.0, 0.1, warmup=10) == 0.0
    assert cosine(10, 100, 1.0, 0.1, warmup=10) == pytest.approx(1.0)
    assert cosine(100, 100, 1.0, 0.1, warmup=10) == pytest.approx(0.1)
    assert cosine(0, 100, 0.04, 0.4) == pytest.approx(0.04) and cosine(100, 100, 0.04, 0.4) == pytest.approx(0.4)
    assert cosine(0, 100, 0.996, 1.0) == pytest.approx(0.996) and cosine(100, 100, 0.996, 1.0) == 1.0
    assert teacher_temperature(0, 0.04, 0.07, 30) == 0.04
    # DINO's linspace(0.04, 0.07, 30): value 15 of 30 is 0.04 + 0.03 * 15 / 29 (the last, index 29, is 0.07)
    assert teacher_temperature(15, 0.04, 0.07, 30) == pytest.approx(0.04 + 0.03 * 15 / 29)
    assert teacher_temperature(30, 0.04, 0.07, 30) == 0.07
