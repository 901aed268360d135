"""Attention maps: mass threshold, upsampling, image loading, and the PNG grid + GIF of real photos."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from jobs.config_io import load_config
from mst.eval.attention import (
    ImageError,
    attention_maps,
    frame_paths,
    keep_mass,
    load_image,
    run_attention,
    square_crop,
    upsample,
)
from mst.eval.supervised import run_supervised
from mst.train import run_pretrain


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run folder with a (short, real) pre-training and a supervised stage beside it."""
    torch.set_num_threads(1)
    run = tmp_path_factory.mktemp("run")
    run_pretrain(load_config("tiny", ["train.epochs=1", "data.train_subset=64", "train.threads=1"]),
                 run / "pretrain", show_progress=False)
    run_supervised(load_config("tiny", ["data.train_subset=64", "data.test_subset=32", "train.threads=1"]),
                   run / "supervised", show_progress=False)
    return run


def test_keep_mass_keeps_the_top_patches_holding_the_share():
    maps = torch.tensor([[0.1, 0.5], [0.1, 0.3]])  # shares 0.5, 0.3, 0.1, 0.1
    assert keep_mass(maps, 0.6).tolist() == [[False, True], [False, True]]
    assert keep_mass(maps, 0.5).tolist() == [[False, True], [False, False]]
    assert keep_mass(maps, 0.0).all() and keep_mass(maps, 1.0).all()
    heads = torch.stack([maps, maps.flip(-1)])  # per head, independently
    assert keep_mass(heads, 0.6)[1].tolist() == [[True, False], [True, False]]


def test_upsample_repeats_each_patch_as_a_block():
    up = upsample(torch.tensor([[1.0, 2.0], [3.0, 4.0]]), 4)
    assert up.shape == (4, 4)
    assert up[:2, :2].eq(1).all() and up[2:, 2:].eq(4).all()


def test_load_image_samples_files_and_errors(tmp_path):
    name, image = load_image("astronaut")
    assert name == "astronaut" and image.shape == (3, 512, 512) and image.dtype == torch.uint8
    _, grey = load_image("camera")  # 2-D sample becomes 3 channels
    assert grey.shape[0] == 3 and torch.equal(grey[0], grey[2])
    Image.fromarray(np.full((20, 30, 3), 7, np.uint8)).save(tmp_path / "mine.png")
    name, image = load_image(str(tmp_path / "mine.png"))
    assert name == "mine" and image.shape == (3, 20, 30) and int(image.max()) == 7
    assert square_crop(image, 16).shape == (3, 16, 16)
    with pytest.raises(ImageError, match="neither a file nor a scikit-image sample"):
        load_image("no_such_picture")
    with pytest.raises(ImageError, match="does not exist"):
        frame_paths(tmp_path / "empty_dir_does_not_exist")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageError, match="no image frames"):
        frame_paths(tmp_path / "empty")


def test_attention_maps_are_class_token_rows(trained):
    from mst.checkpoint import load_pretrained

    backbone, _, _ = load_pretrained(trained / "pretrain")
    maps = attention_maps(backbone, torch.randn(3, 32, 32))
    assert maps.shape == (backbone.num_heads, 4, 4)
    # softmax over the class token and the 16 patches: the patch part is positive and sums below 1
    sums = maps.flatten(1).sum(1)
    assert (maps > 0).all() and (sums < 1).all() and (sums > 0.5).all()


def test_grid_png_and_gif_of_sample_photos(trained, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    _, cat = load_image("chelsea")
    for i in range(4):  # a short "clip": the photo panning sideways
        Image.fromarray(cat.roll(25 * i, dims=2).permute(1, 2, 0).numpy()).save(frames / f"{i:03d}.png")
    cfg = load_config("tiny", ["train.threads=1"])
    out = trained / "attention"
    record = run_attention(cfg, trained / "pretrain", out, video=frames, size=64, show_progress=False,
                           images=["astronaut", "chelsea", "coffee", "rocket"])
    assert record["status"] == "done"
    assert record["supervised_dir"] == str((trained / "supervised").resolve())  # found beside pretrain/
    assert record["metrics"] == {"images": 4, "heads": 3, "frames": 4}
    assert json.loads((out / "result.json").read_text())["files"] == {"grid": "attention.png",
                                                                        "video": "attention.gif"}
    with Image.open(out / "attention.png") as png:
        assert png.format == "PNG" and png.size[0] > 600 and png.size[1] > 400
        pixels = np.asarray(png.convert("L"))
        assert pixels.std() > 20  # a drawn figure, not a blank canvas
    with Image.open(out / "attention.gif") as gif:
        assert gif.n_frames == 4 and gif.size[0] == 3 * gif.size[1]  # input | MST | supervised


def test_bad_image_name_fails_before_any_work(trained, tmp_path):
    cfg = load_config("tiny", ["train.threads=1"])
    with pytest.raises(ImageError, match="no_such_picture"):
        run_attention(cfg, trained / "pretrain", tmp_path / "att", images=["no_such_picture"], show_progress=False)
    assert json.loads((tmp_path / "att" / "result.json").read_text())["status"] == "failed"
    assert not (tmp_path / "att" / "attention.png").exists()
