"""Run folders under stress: two runs into one OUT, torn and repeated rows, missing and swapped code files,
garbled settings. None of them may double, lose or silently reuse a row."""

from __future__ import annotations

import csv
import multiprocessing
import os
import socket
import warnings
from collections import Counter

import pytest
import torch

import latentspaces as ls
from experiments.rows import RowSchema, RunFolderError, RunFolderWarning, append_rows, read_rows
from experiments.runs import RunFolderBusy, claim_out_dir, file_fingerprint, hold_out_dir, read_settings
from experiments.studies.inversions import chunk_path, load_codes, save_chunk
from latentspaces.images import save_image_file
from experiments.studies.compensation import FIELDS as COMP_FIELDS
from experiments.studies.compensation import missing_methods
from experiments.studies.identity_curves import IdentityCurvesConfig, run_identity_curves
from experiments.studies.inversions import PER_IMAGE_CSV, chunk_checksums, fill_identity
from experiments.studies.space_comparison import CompareConfig, run_space_comparison
from latentspaces import assets
from latentspaces.errors import CheckpointError
from latentspaces.images import save_images
from optimizers import QUICK

N = 4  # targets; chunks of 2, so a chunk can be cut in the middle
TINY = QUICK.replace(steps=2, perceptual="none")  # the smallest inversion: 2 MSE steps from the mean


@pytest.fixture(scope="module")
def G():
    return ls.load_generator("default")


def _compare(out, G=None, n=N):
    """The smallest compare: one space, 2 steps, no perceptual or identity metric."""
    G = G if G is not None else ls.load_generator("default")
    return run_space_comparison(out, G, assets.heldout_targets(n), CompareConfig(spaces=("W",), recipe=TINY, chunk=2))


def _cosine(images, targets):
    """A cheap identity stand-in (the run folder, not the metric, is under test)."""
    return torch.nn.functional.cosine_similarity(images.flatten(1), targets.flatten(1))


def _curves(out, G, n=2):
    return run_identity_curves(out, G, assets.heldout_targets(n), _cosine,
                               IdentityCurvesConfig(spaces=("W",), directions=1, direction_samples=300, recipe=TINY,
                                                    chunk=1))


def _plain_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _keys(path, key=("space", "target")):
    return Counter(tuple(r[k] for k in key) for r in _plain_rows(path))


def _assert_once_each(out, n=N):
    keys = _keys(out / PER_IMAGE_CSV)
    assert keys == Counter({("W", str(i)): 1 for i in range(n)}), keys
    (summary,) = _plain_rows(out / "space_comparison.csv")
    assert int(summary["n"]) == n
    assert f"| W | {n} |" in (out / "space_comparison.md").read_text()


# ---------------------------------------------------------------------------------- two runs into one OUT
def _paused_run(out, holding, release):
    """A compare that stops inside its run (after the inversions) until `release` is set."""
    import experiments.studies.space_comparison as sc

    real = sc.summarize

    def paused(*args, **kwargs):
        holding.set()
        assert release.wait(120), "the test never released the paused run"
        return real(*args, **kwargs)

    sc.summarize = paused
    torch.set_num_threads(1)
    _compare(out)


@pytest.mark.slow
def test_a_second_run_into_a_busy_folder_is_refused_and_no_row_is_doubled(tmp_path, G):
    out = tmp_path / "cmp"
    ctx = multiprocessing.get_context("spawn")
    holding, release = ctx.Event(), ctx.Event()
    first = ctx.Process(target=_paused_run, args=(out, holding, release))
    first.start()
    try:
        assert holding.wait(120), "the first run never got going"
        with pytest.raises(RunFolderBusy) as e:  # the same settings, into the same folder, at the same time
            _compare(out, G)
        said = str(e.value)
        assert "\n" not in said and str(out) in said and f"pid {first.pid}" in said and "choose another --out" in said
    finally:
        release.set()
        first.join(120)
    assert first.exitcode == 0
    _assert_once_each(out)
    codes = chunk_path(out, "W", 0).read_bytes()
    _compare(out, G)  # once the first has finished, a rerun resumes: nothing redone, nothing doubled
    assert chunk_path(out, "W", 0).read_bytes() == codes
    _assert_once_each(out)


def _sharded_worker(rank, size, port, out, holder):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(size),
                      LOCAL_RANK=str(rank))
    from experiments.distributed import close_world, init_world

    torch.set_num_threads(1)
    init_world("cpu")
    try:
        with pytest.raises(RunFolderBusy, match=f"pid {holder}"):  # every rank stops, none waits at a barrier
            _compare(out)
    finally:
        close_world()


@pytest.mark.skipif(not torch.distributed.is_available(), reason="this PyTorch has no torch.distributed")
def test_every_rank_of_a_sharded_run_stops_when_the_folder_is_busy(tmp_path):
    out = tmp_path / "cmp"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with hold_out_dir(out):  # this process is the other run
        torch.multiprocessing.spawn(_sharded_worker, args=(2, port, out, os.getpid()), nprocs=2, join=True)
    assert not (out / PER_IMAGE_CSV).exists() and not (out / "codes").exists()


def test_the_lock_is_per_folder_and_released_after_the_run(tmp_path):
    with hold_out_dir(tmp_path / "a"), hold_out_dir(tmp_path / "a"):  # nested in one process: shared
        with hold_out_dir(tmp_path / "b"):
            pass
    with hold_out_dir(tmp_path / "a"):
        pass
    assert '"pid": %d' % os.getpid() in (tmp_path / "a" / ".lock").read_text()


# ---------------------------------------------------------------------------------- torn, repeated and malformed rows
def test_torn_csv_mid_chunk_and_mid_line_is_repaired_once_per_key(tmp_path, G):
    out = tmp_path / "cmp"
    _compare(out, G)
    path = out / PER_IMAGE_CSV
    lines = path.read_text().splitlines(keepends=True)  # header, W 0, W 1, W 2, W 3
    codes0 = chunk_path(out, "W", 0).read_bytes()
    path.write_text("".join(lines[:4]) + lines[4][:12])  # the chunk of targets 2, 3 cut after target 2, mid-line
    with pytest.warns(RunFolderWarning) as said:
        _compare(out, G)
    text = " ".join(str(w.message) for w in said)
    assert "torn last line" in text and "redoing the chunk" in text
    _assert_once_each(out)
    assert chunk_path(out, "W", 0).read_bytes() == codes0  # the whole chunk was kept
    assert path.read_text().endswith("\n")

    path.write_text(lines[0][:7])  # cut inside the header: every chunk is redone
    with pytest.warns(RunFolderWarning):
        _compare(out, G)
    _assert_once_each(out)


def test_repeated_and_malformed_rows_are_dropped_and_redone_never_counted_twice(tmp_path, G):
    out = tmp_path / "cmp"
    _compare(out, G)
    path = out / PER_IMAGE_CSV
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    path.write_text(text + "".join(lines[1:]))  # every row twice, as two runs appending side by side once left it
    bad = lines[3].split(",")
    bad[2] = "0.1x"
    with open(path, "a") as f:
        f.write(",".join(bad) + "W,3,0.5\r\n")  # an unparsable number and a row with too few fields
    with pytest.warns(RunFolderWarning) as said:
        _compare(out, G)
    text = " ".join(str(w.message) for w in said)
    assert "repeated the key and values" in text and "malformed row" in text and "could not convert" in text
    _assert_once_each(out)


def test_a_conflicting_duplicate_or_a_non_finite_metric_never_wins_it_is_redone(tmp_path, G):
    """An appended row with mse = 0 for a target that has one already, and a row edited to NaN: both keys'
    rows are dropped and their chunks redone, so the table is the one an untouched folder gives."""
    out = tmp_path / "cmp"
    _compare(out, G)
    path = out / PER_IMAGE_CSV
    clean = _plain_rows(path)
    lines = path.read_text().splitlines(keepends=True)
    header = lines[0].rstrip("\r\n").split(",")
    forged = lines[1].rstrip("\r\n").split(",")
    forged[header.index("mse")] = "0"
    nan = lines[4].rstrip("\r\n").split(",")
    nan[header.index("ssim")] = "nan"
    path.write_text("".join(lines[:4]) + ",".join(nan) + "\r\n" + ",".join(forged) + "\r\n")
    with pytest.warns(RunFolderWarning) as said:
        _compare(out, G)
    text = " ".join(str(w.message) for w in said)
    assert "written twice with different values" in text and "ssim = nan, not a finite number" in text
    _assert_once_each(out)
    again = {(r["space"], r["target"]): r["mse"] for r in _plain_rows(path)}
    assert again == {(r["space"], r["target"]): r["mse"] for r in clean}   # redone: the same values, no forged 0


def test_read_and_append_rows_keep_whole_lines(tmp_path):
    path = tmp_path / "rows.csv"
    schema = RowSchema(("k", "v", "note"), key=("k",), floats=("v",))
    path.write_text("k,v\r\n" + "a,1\r\n" + "b,2\r\n" + "a,3\r\n" + "c,zz\r\n" + "d")
    with pytest.warns(RunFolderWarning):
        rows = read_rows(path, schema)
    assert rows == [{"k": "b", "v": "2", "note": ""}]   # 'a' written twice with different values: neither kept
    with pytest.warns(RunFolderWarning, match="torn last line"):
        append_rows(path, [{"k": "e", "v": 5}], ["k", "v"])
    assert path.read_bytes() == b"k,v\r\na,1\r\nb,2\r\na,3\r\nc,zz\r\ne,5\r\n"
    with pytest.raises(RunFolderError, match="has the columns 'k,v', not 'k,w'"):
        append_rows(path, [{"k": "f", "w": 1}], ["k", "w"])
    path.write_text("k,v")  # a header cut before its newline: a new header
    with pytest.warns(RunFolderWarning):
        append_rows(path, [{"k": "g", "v": 7}], ["k", "v"])
    assert path.read_bytes() == b"k,v\r\ng,7\r\n"
    with pytest.raises(RunFolderError, match="lacks the columns"):
        read_rows(path, RowSchema(("k", "x"), key=("k",), floats=("x",)))


# ---------------------------------------------------------------------------------- missing, swapped, truncated codes
def _chunk(path):
    """(start, codes, images) of a chunk file: what a redone chunk must reproduce."""
    saved = ls.spaces.read_code_file(path)
    return saved.meta["start"], saved.code.w.clone(), saved.images.clone()  # not views of a file rewritten in place


def _same_chunks(now, before):
    assert now.keys() == before.keys()
    for p in now:
        assert now[p][0] == before[p][0], p
        torch.testing.assert_close(now[p][1], before[p][1], rtol=0, atol=0)
        assert torch.equal(now[p][2], before[p][2]), p


def _swap(a, b):
    ta, tb = a.read_bytes(), b.read_bytes()
    a.write_bytes(tb)
    b.write_bytes(ta)


def test_missing_swapped_and_truncated_codes_are_redone_never_used(tmp_path, G):
    out = tmp_path / "cmp"
    _compare(out, G)
    w0, w2 = chunk_path(out, "W", 0), chunk_path(out, "W", 2)
    original = {p: _chunk(p) for p in (w0, w2)}
    truncated = w2.read_bytes()[: w2.stat().st_size // 2]
    sums = chunk_checksums(out, 2)
    w2.unlink()
    with pytest.warns(RunFolderWarning, match="W_2.safetensors is missing: redoing"):
        _compare(out, G)
    _same_chunks({p: _chunk(p) for p in (w0, w2)}, original)
    _assert_once_each(out)

    _swap(w0, w2)
    with pytest.raises(RunFolderError, match="W_0.safetensors is not the file its rows were computed with"):
        load_codes(out, "W", N, checksums={0: sums[("W", 0)], 2: sums[("W", 2)]})  # a reader that cannot redo
    with pytest.warns(RunFolderWarning, match="not the file its rows were computed with"):
        _compare(out, G)
    _same_chunks({p: _chunk(p) for p in (w0, w2)}, original)  # both chunks redone, each with its own targets
    _assert_once_each(out)

    w2.write_bytes(truncated)  # a killed write, a full disk
    with pytest.raises(CheckpointError, match="W_2.safetensors"):
        load_codes(out, "W", N)
    with pytest.warns(RunFolderWarning, match="W_2.safetensors is not the file"):
        _compare(out, G)
    _same_chunks({p: _chunk(p) for p in (w0, w2)}, original)
    _assert_once_each(out)


def test_score_identity_refuses_a_missing_or_swapped_chunk(tmp_path, G):
    out = tmp_path / "cmp"
    _compare(out, G)
    w0, w2 = chunk_path(out, "W", 0), chunk_path(out, "W", 2)
    _swap(w0, w2)  # both self-consistent code files, of the other chunk
    with pytest.raises(RunFolderError, match="W_0.safetensors is not the file its rows .* rerun compare"):
        fill_identity(out, G, assets.heldout_targets(N), _cosine, progress=False)
    w0.unlink()
    with pytest.raises(RunFolderError, match="W_0.safetensors is missing; rerun compare"):
        fill_identity(out, G, assets.heldout_targets(N), _cosine, progress=False)


def test_identity_curves_never_edit_codes_their_rows_were_not_computed_with(tmp_path, G):
    out = tmp_path / "curves"
    _curves(out, G)
    path = out / "identity_curves.csv"
    first = {tuple(r[k] for k in ("target", "direction", "alpha")): r for r in _plain_rows(path)}
    assert len(first) == 2 * 11 and len(_plain_rows(path)) == 22
    w0, w1 = chunk_path(out, "W", 0), chunk_path(out, "W", 1)
    original = {p: _chunk(p) for p in (w0, w1)}
    _swap(w0, w1)
    with pytest.warns(RunFolderWarning) as said:
        _curves(out, G)  # the swapped chunks are redone before any edit reads them
    said = " ".join(str(w.message) for w in said)
    assert "W_0.safetensors is not the file its rows were computed with" in said
    # The redone files are the originals byte for byte (equal codes, sorted header), so their curves stand.
    assert "since redone" not in said
    _same_chunks({p: _chunk(p) for p in (w0, w1)}, original)
    assert _keys(path, ("target", "direction", "alpha")) == Counter({k: 1 for k in first})
    sums = chunk_checksums(out, 1)
    mid = {tuple(r[k] for k in ("target", "direction", "alpha")): r for r in _plain_rows(path)}
    assert mid == first
    assert all(r["codes_sha256"] == sums[("W", int(r["target"]))] for r in mid.values())  # the redone files

    # A chunk remade with other codes (as on another device): its curve rows are recomputed, the others kept.
    saved = ls.spaces.read_code_file(w1)
    sha = save_chunk(out, "W", 1, ls.Code(w=saved.code.w + 0.3), ls.spaces.build_space("W", G).synthesize(
        ls.Code(w=saved.code.w + 0.3)), steps=2)
    per_image = out / PER_IMAGE_CSV
    rows = _plain_rows(per_image)
    for r in rows:
        if r["target"] == "1":
            r["codes_sha256"] = sha
    with open(per_image, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with pytest.warns(RunFolderWarning, match="11 rows were computed from code files since redone"):
        _curves(out, G)
    again = {tuple(r[k] for k in ("target", "direction", "alpha")): r for r in _plain_rows(path)}
    assert len(_plain_rows(path)) == 22 and again.keys() == first.keys()
    assert all(r["codes_sha256"] == sha for k, r in again.items() if k[0] == "1")
    assert all(again[k] == mid[k] for k in mid if k[0] == "0")
    assert any(again[k]["identity"] != mid[k]["identity"] for k in mid if k[0] == "1")


# ---------------------------------------------------------------------------------- settings and foreign files
def test_garbled_or_missing_settings_are_refused_not_claimed(tmp_path, G):
    out = tmp_path / "cmp"
    _compare(out, G, n=2)
    settings = out / "inversion_settings.json"
    good = settings.read_text()
    for text, said in (("", "is empty"), ("{\"steps\": 2", "not a settings file"), ("[]", "not a settings file")):
        settings.write_text(text)
        with pytest.raises(RunFolderError, match=said) as e:
            _compare(out, G, n=2)
        assert "\n" not in str(e.value) and str(settings) in str(e.value)
        with pytest.raises(RunFolderError, match=said):
            read_settings(out)
    settings.unlink()
    with pytest.raises(RunFolderError, match=r"holds results \(space_comparison_per_image.csv, codes\) but no "
                                             r"inversion_settings.json"):
        _compare(out, G, n=2)
    assert not settings.exists()
    settings.write_text(good)
    _compare(out, G, n=2)  # restored: resumes
    fresh = tmp_path / "fresh"
    (fresh / "codes").mkdir(parents=True)  # an empty codes folder holds nothing to claim
    claim_out_dir(fresh, {"steps": 2}, assets.heldout_targets(1), (PER_IMAGE_CSV, "codes"))


def test_random_starts_are_drawn_with_the_seed_and_recorded(tmp_path, G):
    targets = assets.heldout_targets(2)

    def compare(out, seed, init="random"):
        return run_space_comparison(out, G, targets, CompareConfig(spaces=("W", "ZPlus"),
                                                                   recipe=TINY.replace(steps=0, init=init), chunk=1,
                                                                   seed=seed))

    compare(tmp_path / "s1", 1)
    compare(tmp_path / "s2", 2)
    compare(tmp_path / "mean", 0, init="mean")
    for space in ("W", "ZPlus"):
        drawn = ls.build_space(space, G).random(1, seed=1)
        codes = {d: load_codes(tmp_path / d, space, 2) for d in ("s1", "s2", "mean")}
        for field, value in drawn.items():  # steps=0 keeps the start: the seed's code for every target
            torch.testing.assert_close(codes["s1"][field], value.expand_as(codes["s1"][field]))
            assert not torch.allclose(codes["s2"][field], codes["s1"][field])
            assert not torch.allclose(codes["mean"][field], codes["s1"][field])
    assert (read_settings(tmp_path / "s1")["init"], read_settings(tmp_path / "s1")["seed"]) == ("random", 1)
    with pytest.raises(RunFolderError, match="seed"):  # another seed's start is another run
        compare(tmp_path / "s1", 2)
    with pytest.raises(ValueError, match="init must be one of"):
        compare(tmp_path / "bad", 0, init="median")


def test_files_that_are_not_code_files_are_one_line_errors_naming_them(tmp_path):
    png = tmp_path / "face.png"
    save_images(assets.heldout_targets(1), png)
    with pytest.raises(CheckpointError, match="face.png: not a readable safetensors file"):
        ls.spaces.read_code_file(png)
    (tmp_path / "codes").mkdir()
    chunk_path(tmp_path, "W", 0).write_bytes(png.read_bytes())
    (tmp_path / "codes" / "W_0 copy.safetensors").write_bytes(b"")  # stray names in codes/ are not chunks
    with pytest.raises(CheckpointError, match="W_0.safetensors") as e:
        load_codes(tmp_path, "W", 1)
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------------------------- compensation rows
def test_compensation_redoes_a_method_with_a_torn_row_or_a_missing_images_file(tmp_path):
    out = tmp_path / "comp"
    (out / "images").mkdir(parents=True)
    n = 3
    for method in ("base", "sdic"):
        save_image_file(out / "images" / f"{method}.safetensors", torch.zeros(n, 3, 4, 4), method=method)
    rows = [{"method": m, "target": i, **{k: "0.5" for k in COMP_FIELDS[2:-1]},
             "images_sha256": file_fingerprint(out / "images" / f"{m}.safetensors")}
            for m in ("base", "sdic") for i in range(n)]
    append_rows(out / "compensation_per_image.csv", rows, COMP_FIELDS)
    assert missing_methods(out, ["base", "sdic", "pti"], n) == ["pti"]
    path = out / "compensation_per_image.csv"
    path.write_text(path.read_text()[:-9])  # the last sdic row torn
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RunFolderWarning)
        assert missing_methods(out, ["base", "sdic"], n) == ["sdic"]
    assert Counter(r["method"] for r in _plain_rows(path)) == Counter({"base": n})  # sdic's rows dropped
    (out / "images" / "base.safetensors").unlink()
    with pytest.warns(RunFolderWarning, match="base.safetensors is missing: redoing base"):
        assert missing_methods(out, ["base"], n) == ["base"]
    assert _plain_rows(path) == []
