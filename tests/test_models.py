"""Backbone masking, class-token attention, head, decoders, masking functions, EMA by name."""

import pytest
import torch

from mst.config import ConfigError, DecoderConfig, ModelConfig, config_from_dict
from mst.masking import attention_mask, make_mask, random_mask
from mst.models import DINOHead, build_backbone, build_decoder
from mst.models.backbone import replace_masked
from mst.train.nets import Student, Teacher, copy_student_into_teacher, ema_update

torch.set_num_threads(1)
TEST = ModelConfig(arch="vit_test", patch_size=8, drop_path=0.0)


def test_registry_sizes():
    small = build_backbone(ModelConfig(arch="deit_small"), 224)
    assert (small.embed_dim, small.depth, small.num_heads, small.patch_size) == (384, 12, 6, 16)
    assert build_backbone(ModelConfig(arch="vit_smoke", patch_size=4), 32).embed_dim == 192


def test_width_depth_and_heads_replace_the_archs_own():
    vit = build_backbone(ModelConfig(arch="vit_smoke", patch_size=4, embed_dim=96, depth=2, num_heads=4), 32)
    assert (vit.embed_dim, vit.depth, vit.num_heads) == (96, 2, 4)
    assert vit(torch.randn(2, 3, 32, 32)).patches.shape == (2, 64, 96)
    assert ModelConfig(arch="vit_smoke", depth=6).size == (192, 6, 3)


def test_heads_that_do_not_divide_the_width_are_refused_with_a_fix():
    with pytest.raises(ConfigError, match=r"model.num_heads.*5 heads do not divide the width 96.*num_heads=6"):
        ModelConfig(arch="vit_smoke", embed_dim=96, num_heads=5)
    with pytest.raises(ConfigError, match="model.depth"):
        ModelConfig(depth=-1)


def test_features_and_shapes_at_two_crop_sizes():
    bb = build_backbone(TEST, 32).eval()
    out = bb(torch.randn(2, 3, 32, 32), return_attn=True, n_last=2)
    assert out.cls.shape == (2, 48) and out.patches.shape == (2, 16, 48)
    assert out.attn.shape == (2, 3, 16) and out.last_cls.shape == (2, 2, 48)
    torch.testing.assert_close(out.last_cls[:, -1], out.cls)          # the last block's token, final-normed
    assert bb(torch.randn(2, 3, 16, 16)).patches.shape == (2, 4, 48)   # local crop: positions interpolated


def test_class_attention_equals_unfused_attention():
    torch.manual_seed(0)
    bb = build_backbone(TEST, 32).eval()
    x = torch.randn(3, 3, 32, 32)
    fused = bb(x, return_attn=True)
    captured = {}
    last = bb.vit.blocks[-1].attn
    last.fused_attn = False
    hook = last.attn_drop.register_forward_hook(lambda m, i, o: captured.setdefault("attn", o))
    plain = bb(x)
    hook.remove()
    torch.testing.assert_close(fused.cls, plain.cls, atol=1e-5, rtol=0)
    assert (fused.attn - captured["attn"][:, :, 0, 1:]).abs().max() <= 1e-5


def test_mask_token_goes_in_before_position_embeddings():
    bb = build_backbone(TEST, 32).eval()
    with torch.no_grad():
        bb.mask_token.fill_(0.5)
    x = torch.randn(1, 3, 32, 32)
    mask = torch.zeros(1, 16, dtype=torch.bool)
    mask[0, 3] = True
    tokens = bb.embed(x, mask, "token", None)                        # [1, 1 + L, D]
    pos = bb.vit.pos_embed[0, 1 + 3]
    torch.testing.assert_close(tokens[0, 1 + 3], bb.mask_token[0, 0] + pos)
    unmasked = bb.embed(x, None, "token", None)
    torch.testing.assert_close(tokens[0, 1 + 4], unmasked[0, 1 + 4])


def test_bert_replacement_rates():
    g = torch.Generator().manual_seed(0)
    tokens = torch.randn(64, 100, 8)
    mask = torch.ones(64, 100, dtype=torch.bool)
    token = torch.full((1, 1, 8), 9.0)
    out = replace_masked(tokens, mask, token, "bert", g)
    is_mask = (out == 9.0).all(-1).float().mean()
    unchanged = (out == tokens).all(-1).float().mean()
    assert abs(is_mask - 0.8) < 0.02 and abs(unchanged - 0.1) < 0.02


def test_attention_mask_picks_the_lowest_attention_patches():
    attn = torch.arange(20, dtype=torch.float).repeat(4, 1)          # patch i has attention i
    mask = attention_mask(attn, ratio=0.25, prob=1.0)
    assert mask.sum(1).tolist() == [5] * 4 and mask[:, :5].all()      # exactly the 5 lowest
    g = torch.Generator().manual_seed(0)
    big = torch.rand(2000, 100)
    m = attention_mask(big, ratio=0.4, prob=0.5, generator=g)
    assert abs(m.float().sum(1).mean() - 20) < 0.5                    # ratio x L x p
    low40 = big.argsort(1)[:, :40]
    assert torch.gather(m, 1, low40).sum() == m.sum()                 # never outside the lowest 40 %


def test_random_mask_and_none():
    g = torch.Generator().manual_seed(0)
    # every patch is eligible under random masking, so the masked fraction is p itself (0.5), not ratio x p
    m = random_mask(1000, 64, prob=0.5, generator=g)
    assert abs(m.float().mean() - 0.5) < 0.01
    assert make_mask("none", None, 4, 16, 0.5, 0.5) is None
    with pytest.raises(ValueError, match="needs the teacher's class-token attention"):
        make_mask("attention", None, 4, 16, 0.5, 0.5)


def test_random_masking_draws_from_every_patch_and_ignores_the_ratio():
    # p = 1 masks every patch whatever the ratio (the old rule masked only round(ratio x L) of them)
    assert make_mask("random", None, 3, 16, 0.5, 1.0).all()
    assert make_mask("random", None, 3, 16, 0.0, 1.0).all()
    # p = 0.01 (appendix §9) masks 1 % of the patches, not ratio x 1 % = 0.5 %
    m = random_mask(4000, 64, prob=0.01, generator=torch.Generator().manual_seed(0))
    assert abs(m.float().mean() - 0.01) < 0.001
    # the ratio plays no part: the same generator state gives the same mask for any ratio
    a = make_mask("random", None, 8, 16, 0.1, 0.3, torch.Generator().manual_seed(1))
    b = make_mask("random", None, 8, 16, 0.9, 0.3, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert make_mask("random", None, 4, 16, 0.5, 0.0) is None
    assert make_mask("attention", torch.rand(4, 16), 4, 16, 0.0, 0.5) is None


def test_head_last_layer_norm_and_shapes():
    head = DINOHead(48, 64, 32, 16, norm_last_layer=True, use_bn=True)
    assert head(torch.randn(4, 48)).shape == (4, 64)
    gain = head.last_layer.parametrizations.weight.original0
    assert not gain.requires_grad and torch.all(gain == 1)


@pytest.mark.parametrize("kind", ["pixelshuffle", "deconv"])
@pytest.mark.parametrize("norm", ["bn", "none"])
def test_decoders_restore_the_whole_crop(kind, norm):
    dec = build_decoder(DecoderConfig(kind=kind, norm=norm, hidden_dim=32), 48, 8)
    assert dec(torch.randn(2, 16, 48), (4, 4)).shape == (2, 3, 32, 32)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in dec.modules()) == (norm == "bn")


def test_ema_matches_parameters_by_name():
    cfg = config_from_dict({"data": {"name": "fashion_mnist"}, "augment": {
        "global_size": 32, "local_size": 16, "eval_resize": 32, "eval_crop": 32},
        "model": {"arch": "vit_test", "patch_size": 8, "out_dim": 16, "head_hidden_dim": 16,
                  "head_bottleneck_dim": 8}})
    student, teacher = Student(cfg), Teacher(cfg)
    copy_student_into_teacher(student, teacher)
    # an extra student parameter that named_parameters() yields FIRST: a positional zip would pair every
    # teacher tensor with the wrong student tensor (and the decoder's come on top)
    student.extra = torch.nn.Parameter(torch.zeros(3))
    assert next(iter(student.named_parameters()))[0] == "extra"
    assert set(dict(teacher.named_parameters())) < set(dict(student.named_parameters()))
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    before = {k: v.clone() for k, v in teacher.named_parameters()}
    ema_update(teacher, student, 0.9)
    s = dict(student.named_parameters())
    for name, p in teacher.named_parameters():
        torch.testing.assert_close(p, 0.9 * before[name] + 0.1 * s[name])


@pytest.mark.parametrize("use_bn", [False, True])
def test_student_runs_the_weight_normed_last_layer_once_per_step(use_bn):
    cfg = config_from_dict({"data": {"name": "fashion_mnist"}, "augment": {
        "global_size": 32, "local_size": 16, "eval_resize": 32, "eval_crop": 32},
        "model": {"arch": "vit_test", "patch_size": 8, "out_dim": 64, "head_hidden_dim": 16,
                  "head_bottleneck_dim": 8, "head_use_bn": use_bn, "drop_path": 0.0}})
    torch.manual_seed(0)
    student = Student(cfg)
    globals_, locals_ = torch.randn(4, 3, 32, 32), torch.randn(8, 3, 16, 16)
    weight_calls = []
    norm = student.head.last_layer.parametrizations.weight[0]
    handle = norm.register_forward_hook(lambda *_: weight_calls.append(1))
    logits, _ = student(globals_, locals_, None)
    handle.remove()
    assert len(weight_calls) == 1
    # the same logits as the head applied to each crop size on its own (training-mode BN: batch statistics
    # per size, as before)
    with torch.no_grad():
        expected = torch.cat([student.head(student.backbone(globals_).cls),
                              student.head(student.backbone(locals_).cls)])
    torch.testing.assert_close(logits, expected)
    assert logits.shape == (12, 64)
