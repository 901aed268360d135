"""DINO's spacing of the warm-ups, its per-parameter gradient clipping and its weight-decay groups, each
against values worked out by hand (not against the code's own output)."""

import pytest
import torch
from torch import nn

from mst.schedules import cosine, teacher_temperature
from mst.train.clipping import clip_gradients, clip_per_parameter
from mst.train.pretrain import param_groups


def test_teacher_temperature_reaches_its_final_value_at_the_last_warmup_epoch():
    # 3 warm-up epochs from 0.04 to 0.07 are the three values 0.04, 0.055, 0.07; epoch 3 on stays at 0.07
    assert [teacher_temperature(e, 0.04, 0.07, 3) for e in range(5)] == pytest.approx(
        [0.04, 0.055, 0.07, 0.07, 0.07])
    # 30 epochs (the paper): epoch 29 is already 0.07, epoch 28 is one step of 0.03 / 29 below it
    assert teacher_temperature(29, 0.04, 0.07, 30) == pytest.approx(0.07)
    assert teacher_temperature(28, 0.04, 0.07, 30) == pytest.approx(0.07 - 0.03 / 29)
    # a 1-epoch warm-up is the single value 0.04 at epoch 0; no warm-up is 0.07 from the start
    assert (teacher_temperature(0, 0.04, 0.07, 1), teacher_temperature(1, 0.04, 0.07, 1)) == (0.04, 0.07)
    assert teacher_temperature(0, 0.04, 0.07, 0) == 0.07


def test_lr_warmup_reaches_the_base_lr_at_the_last_warmup_iteration():
    # base 1.0, 5 warm-up iterations of 15: 0, 1/4, 2/4, 3/4, 1 ...
    assert [cosine(s, 15, 1.0, 0.0, warmup=5) for s in range(5)] == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])
    # ... then a cosine over the 10 remaining iterations: 1 at iteration 5, 1/2 at 10 (a quarter turn),
    # (1 + cos(0.9 pi)) / 2 = 0.0244717 at the last one (14)
    assert cosine(5, 15, 1.0, 0.0, warmup=5) == pytest.approx(1.0)
    assert cosine(10, 15, 1.0, 0.0, warmup=5) == pytest.approx(0.5)
    assert cosine(14, 15, 1.0, 0.0, warmup=5) == pytest.approx(0.0244717, abs=1e-7)
    # a 1-iteration warm-up is the single value warmup_start (0)
    assert cosine(0, 15, 1.0, 0.0, warmup=1) == 0.0


def _with_grads(*grads: list[float]) -> list[nn.Parameter]:
    params = []
    for g in grads:
        p = nn.Parameter(torch.zeros(len(g)))
        p.grad = torch.tensor(g)
        params.append(p)
    return params


def test_per_parameter_clipping_scales_only_the_tensors_over_the_threshold():
    # gradient norms 5 (3-4-5), 2 and 13 (5-12-13) with threshold 3: the first becomes (3, 4) x 3 / (5 + 1e-6),
    # the second (norm 2 < 3) is untouched, the third is scaled by 3 / (13 + 1e-6)
    a, b, c = _with_grads([3.0, 4.0], [2.0, 0.0], [5.0, 12.0])
    clip_per_parameter([a, b, c], 3.0)
    assert a.grad.tolist() == pytest.approx([9 / 5.000001, 12 / 5.000001], rel=1e-6)
    assert b.grad.tolist() == [2.0, 0.0]
    assert c.grad.tolist() == pytest.approx([15 / 13.000001, 36 / 13.000001], rel=1e-6)


def test_global_clipping_is_kept_as_a_choice_and_zero_disables():
    # global norm of (3, 4) and (0, 12) is 13: both tensors scale by 6.5 / 13 = 1/2
    a, b = _with_grads([3.0, 4.0], [0.0, 12.0])
    clip_gradients([a, b], 6.5, "global")
    assert a.grad.tolist() == pytest.approx([1.5, 2.0], rel=1e-5)
    assert b.grad.tolist() == pytest.approx([0.0, 6.0], rel=1e-5)
    c, d = _with_grads([3.0, 4.0], [0.0, 12.0])
    clip_gradients([c, d], 6.5, "per_param")   # per tensor: 5 < 6.5 stays, 12 > 6.5 scales
    assert c.grad.tolist() == [3.0, 4.0]
    assert d.grad.tolist() == pytest.approx([0.0, 12 * 6.5 / 12.000001], rel=1e-6)
    e, = _with_grads([30.0, 40.0])
    clip_gradients([e], 0.0, "per_param")
    assert e.grad.tolist() == [30.0, 40.0]
    with pytest.raises(ValueError, match="choose per_param or global"):
        clip_gradients([e], 1.0, "layerwise")


class _Named(nn.Module):
    """Parameters with the names and shapes of a ViT's, to check DINO's rule name by name."""

    def __init__(self):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, 4))
        self.pos_embed = nn.Parameter(torch.zeros(1, 5, 4))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, 4))
        self.proj = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)
        self.gain = nn.Parameter(torch.ones(6, 1))      # a weight-norm gain is 2-D: it decays under DINO's rule
        self.frozen = nn.Parameter(torch.ones(3, 3), requires_grad=False)


def test_weight_decay_groups_follow_dinos_rule():
    m = _Named()
    decay, no_decay = param_groups(m)
    # by hand: no decay for names ending in .bias or 1-D tensors; everything else (tokens too) decays
    assert {id(p) for p in decay["params"]} == {id(m.cls_token), id(m.pos_embed), id(m.mask_token),
                                                id(m.proj.weight), id(m.gain)}
    assert {id(p) for p in no_decay["params"]} == {id(m.proj.bias), id(m.norm.weight), id(m.norm.bias)}
    assert no_decay["weight_decay"] == 0.0 and "weight_decay" not in decay


def test_student_tokens_decay():
    from jobs.config_io import load_config
    from mst.train.nets import Student

    student = Student(load_config("tiny"))
    decay, no_decay = param_groups(student)
    decayed = {id(p) for p in decay["params"]}
    bb = student.backbone
    assert {id(bb.vit.cls_token), id(bb.vit.pos_embed), id(bb.mask_token)} <= decayed
    assert all(p.ndim <= 1 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == sum(p.requires_grad for p in student.parameters())
