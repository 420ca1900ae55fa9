"""Training on a folder of photos (`--data DIR`): the index, damaged files, held-out splits, epochs sharded
over two gloo ranks, resume at the exact batch, every trainer on a folder, and --align on a real photo."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from encoders import load_encoder
from experiments.distributed import World, close_world
from experiments.rows import read_rows
from experiments.training.folder_data import (DATA_INDEX, MANIFEST, SKIPPED_FILE, VAL_INDEX, EpochBatches, FolderStream,
                                              folder_indexes, split_heldout)
from latentspaces.datasets import FaceSampler
from latentspaces.datasets.image_folder import FolderIndex, ImageFolder, index_images
from latentspaces.errors import CheckpointError
from latentspaces.images import to_uint8
from conftest import train

RES = 64
SMALL_EDITOR = ["--ganspace-samples", "1000", "--ganspace-components", "3"]


def write_faces(folder: Path, n: int, seed: int = 0, nested: bool = True) -> None:
    """n default-domain faces as PNGs, every third in a subfolder (a tree, as photo folders are)."""
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(to_uint8(FaceSampler("cpu").sample(n, seed)).permute(0, 2, 3, 1).numpy()):
        Image.fromarray(img).save(folder / ("sub" if nested and i % 3 == 0 else ".") / f"face{i:03d}.png")


def damage(path: Path) -> None:
    """A PNG cut in half (a killed copy): its header reads, its pixels do not."""
    import io
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, format="png")
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """A training folder of 3 readable faces and one damaged file (so one epoch of batch 2 reads them all),
    and a validation folder of 3 faces."""
    root = tmp_path_factory.mktemp("photos")
    write_faces(root / "train", 3)
    damage(root / "train" / "sub" / "broken.png")
    write_faces(root / "val", 3, seed=1, nested=False)
    return root


# ---------------------------------------------------------------------------------- index
def test_the_index_walks_the_tree_sorted_skipping_hidden_and_non_images(tmp_path):
    write_faces(tmp_path, 4)
    (tmp_path / ".hidden").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / ".hidden" / "x.png")
    Image.new("RGB", (8, 8)).save(tmp_path / ".dot.png")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "loop").symlink_to(tmp_path, target_is_directory=True)   # a link loop must not hang the walk
    assert index_images(tmp_path) == ["face001.png", "face002.png", "sub/face000.png", "sub/face003.png"]
    index = FolderIndex.build(tmp_path)
    index.save(tmp_path / "index.json")
    assert FolderIndex.load(tmp_path / "index.json") == index
    (tmp_path / "bad.json").write_text('{"format": "something else"}')
    with pytest.raises(CheckpointError, match="not a folder index"):
        FolderIndex.load(tmp_path / "bad.json")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no image files in this folder or below"):
        index_images(tmp_path / "empty")


def _links_and_a_locked_folder(folder: Path, monkeypatch) -> None:
    """A file link loop (a.png <-> b.png), a link to nothing and a subfolder the walk may not list (root may list any
    folder, so the refusal is os.scandir's, simulated)."""
    (folder / "a.png").symlink_to(folder / "b.png")
    (folder / "b.png").symlink_to(folder / "a.png")
    (folder / "gone.png").symlink_to(folder / "nothing.png")
    (folder / "locked").mkdir()
    Image.new("RGB", (8, 8)).save(folder / "locked" / "x.png")
    real = os.scandir

    def scandir(path):
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied")
        return real(path)
    monkeypatch.setattr(os, "scandir", scandir)


def test_the_walk_survives_any_link_and_says_what_it_skipped(tmp_path, monkeypatch):
    write_faces(tmp_path, 3, nested=False)
    _links_and_a_locked_folder(tmp_path, monkeypatch)
    skipped = []
    assert index_images(tmp_path, skipped) == ["face000.png", "face001.png", "face002.png"]
    assert dict(skipped) == {"a.png": "a symbolic link in a loop", "b.png": "a symbolic link in a loop",
                             "gone.png": "a link to no file", "locked/": "cannot list the folder (Permission denied)"}
    assert index_images(tmp_path) == ["face000.png", "face001.png", "face002.png"]   # no list: skipped silently


def test_the_held_out_draw_passes_over_files_that_are_not_images(tmp_path):
    """200 empty files beside 4 faces: the held-out files are faces (the draw once took only empty files and
    refused the run)."""
    write_faces(tmp_path, 4, nested=False)
    for i in range(200):
        (tmp_path / f"empty{i:03d}.png").write_bytes(b"")
    index = FolderIndex.build(tmp_path)
    train, held = split_heldout(index, 3)
    assert len(held) == 3 and all(f.startswith("face") for f in held.files) and len(train) == 201
    for f in index.files:
        if f.startswith("face"):
            (tmp_path / f).write_bytes(b"")
    with pytest.raises(SystemExit, match="none of its 204 image file"):
        split_heldout(FolderIndex.build(tmp_path), 3)


def test_a_trainer_trains_on_a_folder_with_a_link_loop_and_lists_it(tmp_path, monkeypatch, capsys):
    data = tmp_path / "data"
    write_faces(data, 4, nested=False)
    _links_and_a_locked_folder(data, monkeypatch)
    out = tmp_path / "run"
    train("f-encoder", ["--batch", "2", "--snap", "1", "--device", "cpu", "--perceptual", "none", "--identity", "none",
                        "--out", str(out), "--data", str(data), "--synthetic-ratio", "0", "--heldout-images", "1",
                        "--widths", "[8,8,8]", "--steps", "1"])
    said = capsys.readouterr().out
    assert f"skipped {data / 'a.png'}: a symbolic link in a loop" in said
    listed = {r["file"]: r["reason"] for r in read_rows(out / SKIPPED_FILE)}
    assert listed["a.png"] == "a symbolic link in a loop" and "locked/" in listed
    assert (out / "encoder.safetensors").is_file()


def test_a_damaged_file_is_skipped_and_a_folder_of_damaged_files_is_one_line(tmp_path):
    write_faces(tmp_path, 2, nested=False)
    damage(tmp_path / "face000.png")
    data = ImageFolder(FolderIndex.build(tmp_path), RES)
    image, read, skipped = data[(0, False)]
    assert read == 1 and image.dtype == torch.uint8 and image.shape == (3, RES, RES)
    assert [f for f, _ in skipped] == ["face000.png"] and "corrupt" in skipped[0][1]
    mirrored, _, _ = data[(0, True)]
    assert torch.equal(mirrored, image.flip(-1))
    damage(tmp_path / "face001.png")
    with pytest.raises(CheckpointError, match="no readable image among 2 files") as e:
        data.first_readable()
    assert "\n" not in str(e.value)


def test_the_held_out_split_is_fixed_and_never_trained_on(tmp_path):
    write_faces(tmp_path, 10)
    index = FolderIndex.build(tmp_path)
    train, held = split_heldout(index, 3)
    assert len(held) == 3 and len(train) == 7 and not set(train.files) & set(held.files)
    assert split_heldout(index, 3) == (train, held)   # the same files for every run
    with pytest.raises(SystemExit, match="cannot give 10 held-out"):
        split_heldout(index, 10)
    out = tmp_path / "run"
    out.mkdir()
    got = folder_indexes(str(tmp_path), None, 0.5, 16, out, RES, False, False, World())
    assert len(got.val) == 5 and FolderIndex.load(out / VAL_INDEX) == got.val
    assert FolderIndex.load(out / DATA_INDEX) == got.train


# ---------------------------------------------------------------------------------- epochs and resume
def test_every_file_once_per_epoch_with_flips_drawn_per_epoch():
    batches = EpochBatches(10, 3, World(), seed=5, flip=True)
    assert batches.per_epoch == 3                     # 10 files: three full batches, the tail dropped
    first = [i for b in batches for i, _ in b]
    assert len(first) == len(set(first)) == 9
    batches.epoch = 1
    second = list(batches)
    assert [i for b in second for i, _ in b] != first  # a new order every epoch
    assert any(f for b in second for _, f in b) and not all(f for b in second for _, f in b)
    batches.start = 2
    assert list(batches) == second[2:]                # resumed at batch 2: the same batches
    with pytest.raises(SystemExit, match="3 training image.s. over 2 process.es. do not fill one batch of 2"):
        EpochBatches(3, 2, World(rank=0, size=2), seed=5, flip=False)   # 1 file per rank


def test_a_stream_resumed_mid_epoch_gives_the_same_next_batches(tmp_path):
    write_faces(tmp_path, 9)
    data = ImageFolder(FolderIndex.build(tmp_path), RES)

    def stream():
        return FolderStream(data, 2, World(), seed=3, flip=True, workers=2, device=torch.device("cpu"),
                            skipped_log=None)
    whole = stream()
    batches = [whole.next() for _ in range(7)]         # 4 batches per epoch: crosses into the second epoch
    assert whole.state_dict()["epoch"] == 1 and whole.state_dict()["position"] == 3
    first = stream()
    for _ in range(3):
        first.next()                                   # stopped mid-epoch, with batches prefetched
    resumed = stream()
    resumed.load_state_dict(first.state_dict())
    for expected in batches[3:]:
        assert torch.equal(resumed.next(), expected)
    with pytest.raises(SystemExit, match="resume with the same --data, --batch"):
        FolderStream(data, 3, World(), 3, True, 0, torch.device("cpu"), None).load_state_dict(first.state_dict())


def _shard_worker(rank, size, port, root, out):
    import torch.distributed as dist
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=size)
    world = World.current()
    try:
        indexes = folder_indexes(str(root), None, None, 2, out, RES, False, False, world)  # rank 0 indexes, 1 waits
        stream = FolderStream(ImageFolder(indexes.train, RES), 2, world, seed=0, flip=False, workers=1,
                              device=torch.device("cpu"), skipped_log=None)
        read = []
        for _ in range(stream.batches.per_epoch):
            stream.next()
            read += stream.last_read.tolist()
        (out / f"rank{rank}.json").write_text(json.dumps({"read": read, "files": list(indexes.train.files)}))
    finally:
        close_world()


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="this PyTorch has no torch.distributed")
def test_two_gloo_ranks_read_disjoint_shares_of_each_epoch(tmp_path):
    write_faces(tmp_path / "photos", 13)   # 11 after the 2 held out: 5 per rank, 2 batches of 2 each
    out = tmp_path / "run"
    out.mkdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_shard_worker, args=(2, port, tmp_path / "photos", out), nprocs=2, join=True)
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0]["files"] == ranks[1]["files"] and len(ranks[0]["files"]) == 11
    assert len(ranks[0]["read"]) == len(ranks[1]["read"]) == 4
    assert not set(ranks[0]["read"]) & set(ranks[1]["read"])


# ---------------------------------------------------------------------------------- the trainers
COMMON = ["--batch", "2", "--snap", "1", "--device", "cpu", "--perceptual", "none", "--identity", "none"]


@pytest.mark.parametrize("trainer, extra, export", [
    ("f-encoder", ["--widths", "[8,8,8]"], "encoder.safetensors"),
    ("wplus-encoder", ["--style-channels", "8"], "encoder.safetensors"),
    ("sdic", ["--width", "0.25"], "sdic.safetensors"),
    ("hfgi", ["--width", "0.25"], "hfgi.safetensors"),
    ("gradstyle", SMALL_EDITOR, "gradstyle.safetensors"),
    ("reganie", SMALL_EDITOR, "reganie.safetensors"),
], ids=["f_encoder", "wplus_encoder", "sdic", "hfgi", "gradstyle", "reganie"])
def test_every_trainer_trains_on_a_folder_with_a_damaged_file_and_resumes(trainer, extra, export, photos, tmp_path):
    flags = [*COMMON, "--out", str(tmp_path), "--data", str(photos / "train"), "--val", str(photos / "val"),
             "--synthetic-ratio", "0", "--heldout-images", "2", *extra]
    train(trainer, [*flags, "--steps", "2"])       # one epoch: 2 batches of 2 over the 4 files
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["data_position"]["position"] == 2
    train(trainer, [*flags, "--steps", "3", "--resume"])
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["data_position"] == {"epoch": 1, "position": 1, "files": 4, "batch": 2}   # into the second epoch
    rows = (tmp_path / "log.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert {"heldout_mse", "heldout_ssim", "heldout_identity"} <= set(header) and len(rows) == 4
    last = rows[-1].split(",")
    mse, ssim = float(last[header.index("heldout_mse")]), float(last[header.index("heldout_ssim")])
    assert 0 < mse < 4 and -1 <= ssim <= 1                 # scored on the --val folder's faces
    skipped = (tmp_path / SKIPPED_FILE).read_text().splitlines()
    assert len(skipped) == 2 and skipped[1].startswith("sub/broken.png,")   # listed once, with its reason
    net = load_encoder(tmp_path / export)
    assert net.meta["data"] == str((photos / "train").resolve()) and net.meta["synthetic_ratio"] == 0
    assert net.meta["heldout"] == f"2 of {(photos / 'val').resolve()}"


@pytest.mark.slow
def test_a_resumed_folder_run_continues_at_the_same_batch(photos, tmp_path):
    """Killed after 3 steps (mid-epoch 2 of batch 2 over 3 files) and resumed: the weights of a run of 5."""
    flags = [*COMMON, "--data", str(photos / "train"), "--val", str(photos / "val"), "--heldout-images", "2",
             "--width", "0.25", "--loader-workers", "2", "--flip"]
    train("sdic", [*flags, "--out", str(tmp_path / "whole"), "--steps", "5"])
    train("sdic", [*flags, "--out", str(tmp_path / "parts"), "--steps", "3"])
    state = torch.load(tmp_path / "parts" / "checkpoint.pt", weights_only=True)
    assert state["data_position"] == {"epoch": 1, "position": 1, "files": 4, "batch": 2}
    train("sdic", [*flags, "--out", str(tmp_path / "parts"), "--steps", "5", "--resume"])
    whole = load_encoder(tmp_path / "whole" / "sdic.safetensors").state_dict()
    parts = load_encoder(tmp_path / "parts" / "sdic.safetensors").state_dict()
    assert all(torch.equal(whole[k], parts[k]) for k in whole)
    with pytest.raises(SystemExit, match="was trained on .*train"):
        train("sdic", [*flags[:-1], "--data", str(photos / "val"), "--out", str(tmp_path / "parts"), "--steps", "6",
                         "--resume"])


def test_data_flags_are_refused_in_one_line_before_training(photos, tmp_path, capsys):
    flags = [*COMMON, "--out", str(tmp_path), "--steps", "1", "--width", "0.25", "--heldout-images", "1"]
    for flag in ("--data", "--val"):   # checked when parsed, before the generator is loaded
        with pytest.raises(SystemExit) as e:
            train("sdic", [*flags, flag, str(tmp_path / "missing")])
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert e.value.code == 2 and f"argument {flag}: no folder at" in err
    with pytest.raises(SystemExit, match="--flip works on a --data folder"):
        train("sdic", [*flags, "--flip"])
    broken = tmp_path / "broken"
    broken.mkdir()
    for i in range(3):
        damage(broken / f"{i}.png")
    with pytest.raises(CheckpointError, match="no readable image among 2 files"):
        train("sdic", [*flags, "--data", str(broken)])   # 2 after the held-out file: refused before step 1
    assert not (tmp_path / "checkpoint.pt").exists()


def test_snapshots_score_calibrated_identity_on_the_held_out_folder(photos, tmp_path):
    flags = ["--batch", "2", "--snap", "1", "--device", "cpu", "--perceptual", "none", "--out", str(tmp_path),
             "--data", "default", "--val", str(photos / "val"), "--heldout-images", "3", "--width", "0.25",
             "--steps", "1"]
    train("sdic", flags)
    row = (tmp_path / "log.csv").read_text().splitlines()
    identity = float(row[1].split(",")[row[0].split(",").index("heldout_identity")])
    assert np.isfinite(identity) and -3 < identity <= 1   # calibrated: 0 another face of the set, 1 the same image


# ---------------------------------------------------------------------------------- --align
def test_align_makes_a_face_folder_with_a_manifest_and_trains_on_it(tmp_path):
    from skimage import data as skimage_data
    raw = tmp_path / "raw"
    (raw / "a").mkdir(parents=True)
    photo = Image.fromarray(skimage_data.astronaut())
    photo.save(raw / "a" / "astronaut.png")
    photo.transpose(Image.FLIP_LEFT_RIGHT).save(raw / "astronaut.jpg")
    Image.new("RGB", (200, 200), (120, 120, 120)).save(raw / "wall.png")
    damage(raw / "broken.png")
    write_faces(tmp_path / "val", 2, nested=False)
    out = tmp_path / "run"
    flags = [*COMMON, "--batch", "1", "--out", str(out), "--data", str(raw), "--align", "--val", str(tmp_path / "val"),
             "--width", "0.25"]
    train("sdic", [*flags, "--steps", "1"])
    manifest = json.loads((out / "aligned" / MANIFEST).read_text())["photos"]
    assert manifest["a/astronaut.png"] == {"faces": ["a__astronaut_0.png"]}
    assert manifest["astronaut.jpg"] == {"faces": ["astronaut_0.png"]}
    assert "no face" in manifest["wall.png"]["skipped"] and "corrupt" in manifest["broken.png"]["skipped"]
    assert Image.open(out / "aligned" / "astronaut_0.png").size == (RES, RES)
    assert FolderIndex.load(out / DATA_INDEX).files == ("a__astronaut_0.png", "astronaut_0.png")
    train("sdic", [*flags, "--steps", "2", "--resume"])   # resumed: the aligned faces and index are kept
    assert load_encoder(out / "sdic.safetensors").meta["data"] == str((out / "aligned").resolve())
