"""Every trainer over a frozen generator at the users' scale: a random-weight config-f generator of 256 px,
read from a rosinality checkpoint, trained for one step from a fresh folder (batch 1, CPU, the generator's
own samples as data). Each run must finish with a finite loss (the loop raises otherwise), write its
checkpoint and log row, and export a network that loads and fits G. (Resuming is tested at 64 px, where it
costs a fraction: tests/test_folder_data.py, test_compensation.py, test_distributed.py.)
"""

from __future__ import annotations

import pytest

from encoders import load_encoder
from conftest import train
from test_scale_conformance import config_f_checkpoint

pytestmark = pytest.mark.slow   # 256 and 1024 px networks: CI runs them, the README's command skips them

RESOLUTION = 256
COMMON = ["--batch", "1", "--snap", "1", "--device", "cpu", "--perceptual", "none"]
HEAD = ["--data", "generator", "--heldout-images", "1"]
SMALL_EDITOR = ["--ganspace-samples", "1000", "--ganspace-components", "3"]


@pytest.fixture(scope="module")
def generator_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("config_f_256") / "stylegan2-config-f-256.pt"
    config_f_checkpoint(path, RESOLUTION)
    return str(path)


@pytest.fixture(scope="module")
def base_encoder(generator_file, tmp_path_factory):
    """A W+ encoder for the 256 px generator: the W+ trainer's own export (the heads' base below)."""
    out = tmp_path_factory.mktemp("wplus")
    flags = [*COMMON, "--generator", generator_file, "--out", str(out), "--backbone", "small", "--style-channels", "16",
             "--data", "generator", "--heldout-images", "1"]   # half of each batch G(w) with w known, half G's samples
    _train_one_step("wplus-encoder", flags, out, "encoder.safetensors")
    return str(out / "encoder.safetensors")


def _train_one_step(name: str, flags, out, export: str):
    train(name, [*flags, "--steps", "1"])
    rows = (out / "log.csv").read_text().splitlines()
    assert (out / "checkpoint.pt").is_file() and len(rows) == 2 and rows[-1].split(",")[0] == "1"
    net = load_encoder(out / export)
    assert net.meta["steps"] == 1 and net.meta["generator"].endswith("stylegan2-config-f-256.pt")
    return net


def test_wplus_encoder_trainer_at_256(base_encoder):
    enc = load_encoder(base_encoder)
    assert enc.num_ws == 14 and enc.w_dim == 512 and enc.meta["data"] == "generator"


@pytest.mark.parametrize("trainer, extra, export, layers", [
    ("f-encoder", ["--widths", "[8,8,8]"], "encoder.safetensors", None),
    ("sdic", ["--width", "0.25", "--input-size", "64"], "sdic.safetensors", ("b64.conv0",)),
    ("hfgi", ["--width", "0.25", "--lambda-adv", "0.1", "--consult", "warped"], "hfgi.safetensors", ("b64.conv0",)),
    ("gradstyle", SMALL_EDITOR, "gradstyle.safetensors",
     ("b8.conv1", "b64.conv1", "b128.conv1")),
    ("reganie", SMALL_EDITOR, "reganie.safetensors", ()),
], ids=["f_encoder", "sdic", "hfgi", "gradstyle", "reganie"])
def test_trainer_at_256(trainer, extra, export, layers, generator_file, base_encoder, tmp_path):
    flags = [*COMMON, "--generator", generator_file, "--out", str(tmp_path), *extra, *HEAD]
    if layers is not None:
        flags += ["--base-encoder", base_encoder]
    net = _train_one_step(trainer, flags, tmp_path, export)
    rows = (tmp_path / "log.csv").read_text().splitlines()
    heldout = rows[0].split(",").index("heldout_mse")
    assert all(row.split(",")[heldout] != "nan" for row in rows[1:])   # scored on the generator's held-out samples
    if layers is None:       # the F encoder predicts BDInvert's F at b16.conv0
        assert net.layer == "b16.conv0" and (net.f_channels, net.f_resolution) == (512, 16)
    else:
        assert tuple(net.layers) == layers and net.num_ws == 14
        assert net.meta.get("data", net.meta.get("heldout")) == "generator"


def test_default_domain_data_is_refused_for_another_resolution(generator_file, tmp_path):
    with pytest.raises(SystemExit, match="--data default draws the default domain's 64 px faces and this generator "
                                         "makes 256 px images; pass --data generator"):
        train("sdic", [*COMMON, "--generator", generator_file, "--out", str(tmp_path), "--steps", "1"])
    assert not (tmp_path / "checkpoint.pt").exists()


@pytest.mark.parametrize("perceptual", ["d-features", "auto"])
def test_a_perceptual_distance_that_does_not_fit_is_one_line(generator_file, tmp_path, monkeypatch, perceptual):
    """The trainers look the distance up with the library's make_perceptual: at 256 px D-features does not fit,
    and 'auto' without LPIPS's backbone finds nothing; a one-line exit before any step."""
    monkeypatch.setenv("LATENTSPACES_NO_LPIPS", "1")
    flags = [*COMMON[:-2], "--perceptual", perceptual, "--generator", generator_file, "--out", str(tmp_path),
             "--steps", "1", "--widths", "[8,8,8]"]
    with pytest.raises(SystemExit, match="perceptual distance") as info:
        train("f-encoder", flags)
    assert "\n" not in str(info.value) and not (tmp_path / "checkpoint.pt").exists()


def test_a_photo_folder_at_the_users_scale(generator_file, base_encoder, tmp_path):
    """Photos of another size and shape, read at 1024 px by the folder pipeline, and the two trainers whose
    photo path differs from their generated one (the F encoder with mean detail codes, ReGANIE's photo
    triplet) trained one step on them at 256 px."""
    import numpy as np
    import torch
    from PIL import Image

    from experiments.distributed import World
    from experiments.training.folder_data import FolderStream
    from latentspaces.datasets.image_folder import FolderIndex, ImageFolder

    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)).save(photos / f"photo{i}.jpg")
    stream = FolderStream(ImageFolder(FolderIndex.build(photos), 1024), 1, World(), seed=0, flip=True, workers=0,
                          device=torch.device("cpu"), skipped_log=None)
    x = stream.next()
    assert x.shape == (1, 3, 1024, 1024) and x.dtype == torch.float32 and x.abs().max() <= 1
    folder = ["--data", str(photos), "--synthetic-ratio", "0", "--heldout-images", "1"]
    reganie = [*SMALL_EDITOR, "--base-encoder", base_encoder]
    for trainer, extra, export in (("f-encoder", ["--widths", "[8,8,8]"], "encoder.safetensors"),
                                   ("reganie", reganie, "reganie.safetensors")):
        out = tmp_path / trainer
        train(trainer, [*COMMON, "--generator", generator_file, "--out", str(out), "--steps", "1", *folder, *extra])
        assert load_encoder(out / export).meta["data"] == str(photos.resolve())
