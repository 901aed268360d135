"""mst-export and mst-eval --weights: a trained backbone loads strictly into timm and into DINO's ViT with the
same features, outside files evaluate like the run they came from, and hostile or mismatched files are one line
with nothing run and nothing written."""

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file
from torch import nn

from jobs.cli.evaluate import main as eval_main
from jobs.cli.export import main as export_main
from mst.checkpoint import atomic_torch_save, load_pretrained
from mst.config import config_to_dict
from mst.weights import DINO_KEY, WeightsFile

ROOT = Path(__file__).resolve().parents[1]
TINY_SETS = ["data.train_subset=64", "train.epochs=1", "train.threads=1"]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run folder with a (two-step, real) tiny pre-training in pretrain/."""
    from jobs.config_io import load_config
    from mst.train import run_pretrain

    run = tmp_path_factory.mktemp("run")
    run_pretrain(load_config("tiny", TINY_SETS), run / "pretrain", show_progress=False)
    return run


def cli(main, *args):
    with pytest.raises(SystemExit) as done:
        main([str(a) for a in args])
    return done.value.code


def export(run: Path, fmt: str, out: Path, *extra) -> dict:
    with _no_exit():
        export_main([str(a) for a in ("--checkpoint", run, "--format", fmt, "--out", out, *extra)])
    return json.loads(Path(f"{out}.card.json").read_text())


class _no_exit:
    """mst-export returns normally on success; a SystemExit would be a failure with its message on stderr."""

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        if kind is SystemExit:
            pytest.fail(f"mst-export exited with {value.code}")
        return False


def images(n: int = 3, side: int = 32) -> torch.Tensor:
    return torch.randn(n, 3, side, side, generator=torch.Generator().manual_seed(0))   # [n, 3, side, side]


# ------------------------------------------------------------------------------------------ DINO's ViT, rewritten
# DINO's vision_transformer.py structure and parameter names (no classifier: num_classes=0), written for this
# test: a patch conv, class token, learned positions, pre-norm blocks with one qkv projection, a final norm.


class DinoAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):                                                  # [B, N, C]
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]                                   # [B, H, N, C/H]
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)    # [B, H, N, N]
        return self.proj((attn @ v).transpose(1, 2).reshape(B, N, C))


class DinoMlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class DinoBlock(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim, eps=1e-6), DinoAttention(dim, heads)
        self.norm2, self.mlp = nn.LayerNorm(dim, eps=1e-6), DinoMlp(dim, 4 * dim)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class DinoPatchEmbed(nn.Module):
    def __init__(self, patch: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)

    def forward(self, x):                                                  # [B, 3, H, W] -> [B, L, D]
        return self.proj(x).flatten(2).transpose(1, 2)


class DinoViT(nn.Module):
    def __init__(self, img: int, patch: int, dim: int, depth: int, heads: int):
        super().__init__()
        self.patch_embed = DinoPatchEmbed(patch, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + (img // patch) ** 2, dim))
        self.blocks = nn.ModuleList(DinoBlock(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Identity()

    def forward(self, x):                                                  # -> [B, D] final-norm class token
        x = self.patch_embed(x)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm(x)[:, 0])


def project_features(run: Path, x: torch.Tensor, which: str = "teacher") -> torch.Tensor:
    backbone, _, _ = load_pretrained(run / "pretrain", which)
    with torch.no_grad():
        return backbone(x).cls                                             # [B, D]


# ------------------------------------------------------------------------------------------ export to timm


def test_timm_export_loads_strictly_with_the_same_features(run_dir, tmp_path):
    out = tmp_path / "backbone.safetensors"
    card = export(run_dir, "timm", out)
    model = timm.create_model(card["timm_model"], pretrained=False, **card["timm_kwargs"]).eval()
    model.load_state_dict(load_file(out), strict=True)
    x = images()
    with torch.no_grad():
        got = model(x)                                                     # [B, D] pre-logits (num_classes=0)
    assert torch.allclose(got, project_features(run_dir, x), rtol=0, atol=1e-6)
    # the card: architecture, sizes, identity of the run and of the file, what was left out
    record = json.loads((run_dir / "pretrain" / "result.json").read_text())
    assert (card["arch"], card["patch_size"], card["image_size"]) == ("vit_test", 8, 32)
    assert card["config_hash"] == record["config_hash"] and card["git_sha"] == record["git_sha"]
    assert card["weights_sha256"] == record["weights_sha256"] and card["left_out"] == ["mask_token"]
    assert card["file_sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()


def test_student_export_holds_the_student(run_dir, tmp_path):
    out = tmp_path / "student.safetensors"
    card = export(run_dir, "timm", out, "--which", "student")
    model = timm.create_model(card["timm_model"], pretrained=False, **card["timm_kwargs"]).eval()
    model.load_state_dict(load_file(out), strict=True)
    x = images()
    with torch.no_grad():
        assert torch.allclose(model(x), project_features(run_dir, x, "student"), rtol=0, atol=1e-6)
    assert card["which"] == "student"


def test_paper_backbone_fits_vit_small_patch16_224(tmp_path):
    """A DeiT-S/16 pre-training of the paper preset (random init, nothing downloaded) exports in both namings
    with no missing or unexpected key for timm's vit_small_patch16_224 and for DINO's ViT-S/16."""
    from jobs.config_io import load_config
    from mst.models import build_backbone

    cfg = load_config("paper")
    torch.manual_seed(0)
    backbone = build_backbone(cfg.model, cfg.augment.global_size)
    weights = {f"backbone.{k}": v for k, v in backbone.state_dict().items()}
    pretrain = tmp_path / "pretrain"
    pretrain.mkdir()
    atomic_torch_save({"config": config_to_dict(cfg), "teacher": weights, "student": weights},
                      pretrain / "checkpoint.pt")
    (pretrain / "result.json").write_text(json.dumps({"status": "done", "config_hash": "x"}))

    card = export(pretrain, "timm", tmp_path / "deit_s.safetensors")
    assert card["timm_model"] == "vit_small_patch16_224"
    model = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0)
    result = model.load_state_dict(load_file(tmp_path / "deit_s.safetensors"), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    # timm's own loader, as the README shows it (a local file: nothing is downloaded); custom_load=False: timm
    # 1.0.23's default tag for this model loads an .npz through its own reader
    loaded = timm.create_model("vit_small_patch16_224", pretrained=True, num_classes=0,
                               pretrained_cfg_overlay={"file": str(tmp_path / "deit_s.safetensors"),
                                                       "custom_load": False})
    assert torch.equal(loaded.pos_embed, backbone.vit.pos_embed)
    assert torch.equal(loaded.blocks[11].mlp.fc2.weight, backbone.vit.blocks[11].mlp.fc2.weight)
    card = export(pretrain, "dino", tmp_path / "dino_deitsmall16_pretrain.pth")
    dino = DinoViT(224, 16, 384, 12, 6)
    state = torch.load(tmp_path / "dino_deitsmall16_pretrain.pth", weights_only=True)
    result = dino.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys


# ------------------------------------------------------------------------------------------ DINO naming


def test_dino_export_round_trips_through_dinos_vit(run_dir, tmp_path):
    out = tmp_path / "dino.pth"
    card = export(run_dir, "dino", out)
    assert card["naming"] == "dino" and card["container"] == "torch"
    state = torch.load(out, weights_only=True)
    assert all(DINO_KEY.fullmatch(k) for k in state)
    dino = DinoViT(32, 8, card["embed_dim"], card["depth"], card["num_heads"]).eval()
    dino.load_state_dict(state, strict=True)
    x = images()
    with torch.no_grad():
        from_dino = dino(x)
    assert torch.allclose(from_dino, project_features(run_dir, x), rtol=0, atol=1e-5)

    # and back: DINO's own state dict (as DINO saves it) read as an outside checkpoint gives the same features
    back = tmp_path / "from_dino.pth"
    torch.save(dino.state_dict(), back)
    backbone, read = WeightsFile(back, "vit_test").load()
    assert read.naming == "dino" and read.left_out == ()
    with torch.no_grad():
        assert torch.allclose(backbone(x).cls, from_dino, rtol=0, atol=1e-5)


def test_a_dino_training_checkpoint_is_unwrapped(run_dir, tmp_path):
    """DINO's checkpoint.pth layout: the teacher under 'teacher', as module.backbone.*, beside its head."""
    state = torch.load(Path(run_dir, "pretrain", "checkpoint.pt"), weights_only=True)["teacher"]
    wrapped = {"teacher": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}
    torch.save(wrapped, tmp_path / "checkpoint.pth")
    backbone, read = WeightsFile(tmp_path / "checkpoint.pth", "vit_test").load()
    assert "mask_token" in read.left_out and any(k.startswith("head.") for k in read.left_out)
    x = images()
    with torch.no_grad():
        assert torch.equal(backbone(x).cls, project_features(run_dir, x))


# ------------------------------------------------------------------------------------------ mst-eval --weights


def test_knn_on_the_exported_file_equals_knn_on_the_run(run_dir, tmp_path, capsys):
    assert cli(eval_main, "knn", "--checkpoint", run_dir, "--out", tmp_path / "from_run", "--quiet") == 0
    out = tmp_path / "backbone.safetensors"
    export(run_dir, "timm", out)
    sets = [a for s in TINY_SETS for a in ("--set", s)]
    assert cli(eval_main, "knn", "--weights", out, "--arch", "vit_test", "--preset", "tiny", *sets,
               "--out", tmp_path / "from_file", "--quiet") == 0
    capsys.readouterr()
    from_run = json.loads((tmp_path / "from_run" / "result.json").read_text())
    from_file = json.loads((tmp_path / "from_file" / "result.json").read_text())
    assert from_file["metrics"] == from_run["metrics"]
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    assert from_file["weights_file"] == str(out.resolve()) and from_file["weights_sha256"] == digest
    assert from_file["weights_file_sha256"] == digest and from_file["weights_naming"] == "timm"
    assert from_file["features_from"] == "weights file" and from_file["pretrain_dir"] is None
    assert from_file["config"]["model"]["arch"] == "vit_test"


def test_help_does_not_import_torch():
    code = ("import sys; from jobs.cli.export import build_parser as e; from jobs.cli.evaluate import build_parser "
            "as v; e().format_help(); v().format_help(); assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# ------------------------------------------------------------------------------------------ hostile, mismatched


class Payload:
    """Unpickling this would create the marker file: the test fails if anything in the file runs."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickle_payload_is_refused_without_running(tmp_path, capsys):
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.pth"
    torch.save({"cls_token": torch.zeros(1, 1, 48), "payload": Payload(marker)}, evil)
    out = tmp_path / "out"
    assert cli(eval_main, "knn", "--weights", evil, "--arch", "vit_test", "--preset", "tiny", "--out", out) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "refused without running it" in err
    assert not marker.exists() and not out.exists()


@pytest.mark.parametrize("case,expected", [
    ("wrong_arch", ("does not fit --arch vit_smoke (missing blocks.2.norm1.weight; the file: width 48, depth 2, "
                    "patch 8, grid 4; vit_smoke: width 192, depth 4")),
    ("junk_safetensors", "is not a readable safetensors file"),
    ("not_a_vit", "is not a ViT backbone"),
    ("no_arch", "needs --arch NAME"),
    ("unknown_arch", "unknown --arch 'vit_huge'"),
    ("bad_suffix", "unknown weights file type '.npz'"),
    ("timm_only", "'blocks.0.ls1.gamma' is not a name of DINO's ViT; read it with --naming timm"),
])
def test_a_bad_weights_file_is_one_line_nothing_written(run_dir, tmp_path, capsys, case, expected):
    good = tmp_path / "good.safetensors"
    export(run_dir, "timm", good)
    capsys.readouterr()
    files = {"junk_safetensors": tmp_path / "junk.safetensors", "not_a_vit": tmp_path / "other.pth",
             "bad_suffix": tmp_path / "weights.npz"}
    files["junk_safetensors"].write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    torch.save({"linear.weight": torch.zeros(2, 2)}, files["not_a_vit"])
    files["bad_suffix"].write_bytes(b"")
    files["timm_only"] = tmp_path / "layer_scale.pth"
    torch.save({**load_file(good), "blocks.0.ls1.gamma": torch.ones(48)}, files["timm_only"])
    arch = {"wrong_arch": ["--arch", "vit_smoke"], "no_arch": [], "unknown_arch": ["--arch", "vit_huge"],
            "timm_only": ["--arch", "vit_test", "--naming", "dino"]}
    out = tmp_path / "out"
    code = cli(eval_main, "knn", "--weights", files.get(case, good), *arch.get(case, ["--arch", "vit_test"]),
               "--preset", "tiny", "--out", out)
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and expected in err, err
    assert not out.exists()


def test_arch_without_weights_is_one_line(run_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli(eval_main, "knn", "--checkpoint", run_dir, "--arch", "vit_test", "--out", out) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --arch and --naming describe a --weights file") and err.count("\n") == 1
    assert not out.exists()


def test_the_card_quotes_the_runs_results(run_dir, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(run_dir / "pretrain", run / "pretrain")
    assert cli(eval_main, "knn", "--checkpoint", run, "--out", run / "knn", "--quiet") == 0
    capsys.readouterr()
    card = export(run, "timm", tmp_path / "b.safetensors")
    record = json.loads((run / "knn" / "result.json").read_text())
    assert card["results"] == {"knn": {"metrics": record["metrics"], "features_from": "teacher"}}
    assert card["pretrain_status"] == "done" and card["pretrain_metrics"]["steps"] == 2


def test_an_unfinished_pretraining_exports_only_when_asked(run_dir, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(run_dir / "pretrain", run / "pretrain")
    (run / "pretrain" / "result.json").unlink()   # as a pre-training stopped before its end leaves it
    out = tmp_path / "b.safetensors"
    assert cli(export_main, "--checkpoint", run, "--format", "timm", "--out", out) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "has not finished" in err and not out.exists()
    card = export(run, "timm", out, "--allow-partial")
    assert card["partial"] is True and card["pretrain_status"] == "unfinished"


def test_export_refuses_bad_output_in_one_line(run_dir, tmp_path, capsys):
    existing = tmp_path / "b.safetensors"
    existing.write_bytes(b"keep me")
    for out, expected in [(existing, "exists; pass --overwrite"), (tmp_path / "b.npz", "unknown file type '.npz'"),
                          (tmp_path / "nowhere" / "b.pth", "does not exist; create it first")]:
        assert cli(export_main, "--checkpoint", run_dir, "--format", "timm", "--out", out) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and expected in err, err
    assert existing.read_bytes() == b"keep me" and not Path(f"{existing}.card.json").exists()
    export(run_dir, "timm", existing, "--overwrite")
    assert load_file(existing)


def test_linear_and_attention_read_a_weights_file(run_dir, tmp_path, capsys):
    out = tmp_path / "backbone.pth"
    export(run_dir, "dino", out)
    sets = [a for s in [*TINY_SETS, "eval.linear_epochs=1"] for a in ("--set", s)]
    assert cli(eval_main, "linear", "--checkpoint", run_dir, "--out", tmp_path / "lin_run", "--quiet",
               "--cached-features", "--set", "eval.linear_epochs=1") == 0
    assert cli(eval_main, "linear", "--weights", out, "--arch", "vit_test", "--preset", "tiny", *sets,
               "--out", tmp_path / "lin_file", "--quiet", "--cached-features") == 0
    from_run = json.loads((tmp_path / "lin_run" / "result.json").read_text())
    from_file = json.loads((tmp_path / "lin_file" / "result.json").read_text())
    assert from_file["metrics"] == from_run["metrics"] and from_file["weights_naming"] == "dino"

    assert cli(eval_main, "attention", "--weights", out, "--arch", "vit_test", "--preset", "tiny",
               "--images", "astronaut", "--out", tmp_path / "att", "--quiet") == 0
    record = json.loads((tmp_path / "att" / "result.json").read_text())
    assert record["metrics"]["heads"] == 3 and (tmp_path / "att" / "attention.png").is_file()
    assert record["weights_file"] == str(out.resolve())
    capsys.readouterr()


def test_dino_naming_refuses_what_dinos_vit_cannot_hold():
    from mst.weights import WeightsError, to_naming

    state = {"cls_token": torch.zeros(1, 1, 4), "reg_token": torch.zeros(1, 4, 4)}
    assert to_naming(state, "timm").keys() == state.keys()
    with pytest.raises(WeightsError, match=r"DINO's ViT has no place for \(reg_token\); export it with --format timm"):
        to_naming(state, "dino")
