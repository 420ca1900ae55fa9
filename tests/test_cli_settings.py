"""The `latentspaces` command line: flags checked once when parsed, presets, 0 taken as given; run-folder files."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import FrozenInstanceError

import pytest
import torch
from safetensors.torch import save_file

import latentspaces as ls
from experiments.cli import build_parser, main
from experiments.cli.settings import (CompareSettings, CompensationSettings, DirectionsSettings, EditSettings,
                                      IdentityCurvesSettings, InvertSettings, PairedSettings, ScoreIdentitySettings)
from experiments.rows import read_rows, write_rows
from experiments.studies.inversions import chunk_path, load_codes, save_chunk
from experiments.studies.identity_curves import edit_directions
from latentspaces.directions import ganspace


def _settings(cls, argv):
    return cls.from_args(build_parser().parse_args(argv))


def test_presets_are_named_frozen_and_picked_by_quick():
    assert CompareSettings.QUICK.steps == 100 and CompareSettings.FULL.steps == 1200
    assert (CompareSettings.QUICK.n_targets, CompareSettings.FULL.n_targets) == (8, 64)
    assert CompareSettings.FULL.spaces == tuple(ls.SPACE_ORDER)
    assert IdentityCurvesSettings.QUICK.directions == 3 and IdentityCurvesSettings.FULL.direction_samples == 300_000
    assert (CompensationSettings.FULL.pivot_steps, CompensationSettings.FULL.tune_steps) == (450, 350)
    assert ScoreIdentitySettings.QUICK.pn_samples == CompareSettings.QUICK.pn_samples
    for cls in (PairedSettings, InvertSettings, EditSettings, DirectionsSettings):
        assert cls.QUICK is cls.FULL  # one setting for the commands without --quick
    with pytest.raises(FrozenInstanceError):
        CompareSettings.QUICK.steps = 5
    assert _settings(CompareSettings, ["compare", "--out", "o", "--quick"]) == CompareSettings.QUICK
    assert _settings(CompareSettings, ["compare", "--out", "o"]) == CompareSettings.FULL


def test_zero_is_a_value_not_the_preset(tmp_path):
    s = _settings(CompareSettings, ["compare", "--out", "o", "--quick", "--steps", "0", "--lambda-per", "0",
                                    "--lambda-reg", "0", "--init", "random", "--seed", "0"])
    assert (s.steps, s.lambda_per, s.lr, s.n_targets) == (0, 0.0, 0.05, 8)
    full = _settings(CompareSettings, ["compare", "--out", "o", "--lambda-per", "0"])
    assert (full.lambda_per, full.steps) == (0.0, 1200)  # FULL's 1.0 is not brought back by a falsy 0
    inv = _settings(InvertSettings, ["invert", "--out", "o", "--steps", "0", "--lambda-per", "0"])
    assert (inv.steps, inv.lambda_per, inv.lr) == (0, 0.0, 0.05)
    comp = _settings(CompensationSettings, ["compensation", "--out", "o", "--quick", "--pivot-steps", "0",
                                            "--tune-steps", "0"])
    assert (comp.pivot_steps, comp.tune_steps, comp.steps) == (0, 0, 100)
    for name in ("c", "d"):
        (tmp_path / name).write_bytes(b"")  # --codes and --direction must name files that exist
    assert _settings(EditSettings, ["edit", "--out", "o", "--codes", str(tmp_path / "c"), "--direction",
                                    str(tmp_path / "d"), "--alphas=-2,0,2.5", "--index", "0"]).alphas == (-2.0, 0.0, 2.5)
    assert _settings(CompareSettings, ["compare", "--out", "o", "--spaces", "W, FZPlus"]).spaces == ("W", "FZPlus")


@pytest.mark.parametrize("argv, flag", [
    (["compare", "--out", "o", "--steps", "-1"], "--steps"),
    (["compare", "--out", "o", "--chunk", "0"], "--chunk"),
    (["compare", "--out", "o", "--n-targets", "0"], "--n-targets/--n"),
    (["compare", "--out", "o", "--lr", "0"], "--lr"),
    (["compare", "--out", "o", "--lambda-per", "-0.5"], "--lambda-per"),
    (["compare", "--out", "o", "--spaces", "W,Wplus"], "--spaces"),
    (["compare", "--out", "o", "--steps", "ten"], "--steps"),
    (["identity-curves", "--out", "o", "--perceptual", "lpips"], "--perceptual"),
    (["invert", "--out", "o", "--space", "F"], "--space"),
    (["edit", "--out", "o", "--codes", "{tmp}", "--direction", "{tmp}", "--alphas=1,x"], "--codes"),  # a folder
    (["directions", "--out", "o", "--count", "0"], "--count"),
    (["paired", "--out", "{tmp}", "--alpha", "-2"], "--alpha"),
])
def test_invalid_flag_is_an_argparse_error_naming_the_flag(argv, flag, capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        main([a.format(tmp=tmp_path) for a in argv])
    assert e.value.code == 2
    assert f"argument {flag}:" in capsys.readouterr().err


def test_python_dash_m_runs_the_command():
    done = subprocess.run([sys.executable, "-m", "experiments.cli", "compare", "--help"], capture_output=True,
                          text=True, timeout=300)
    text = " ".join(done.stdout.split())  # argparse wraps the help text
    assert done.returncode == 0 and "--n-targets" in text and "(quick 100, full 1200)" in text


def test_invert_with_zero_steps_keeps_the_start_and_edit_reads_its_codes(tmp_path, capsys):
    main(["invert", "--out", str(tmp_path / "inv"), "--n", "2", "--steps", "0", "--space", "W",
          "--perceptual", "none", "--device", "cpu"])
    assert "after 0 steps" in capsys.readouterr().out
    G = ls.load_generator("default")
    saved = ls.spaces.read_code_file(tmp_path / "inv" / "codes.safetensors")
    assert saved.space == "W" and saved.meta["steps"] == 0
    torch.testing.assert_close(saved.code.w, ls.W(G).mean(2).w)  # 0 steps: the mean start, untouched
    main(["directions", "--out", str(tmp_path / "dirs"), "--method", "random", "--count", "1", "--device", "cpu"])
    main(["edit", "--out", str(tmp_path / "edit"), "--codes", str(tmp_path / "inv" / "codes.safetensors"),
          "--direction", str(tmp_path / "dirs" / "random_w.safetensors"), "--alphas=0,1", "--device", "cpu"])
    assert (tmp_path / "edit" / "edit_random_0.png").is_file()


def test_legacy_compare_chunk_files_still_load(tmp_path):
    """Chunk files of earlier runs: `code.`-prefixed keys, plain-string metadata, no format header."""
    w = torch.randn(3, 512)
    images = torch.randint(0, 256, (3, 3, 8, 8), dtype=torch.uint8)
    (tmp_path / "codes").mkdir()
    save_file({"code.w": w[:2], "images": images[:2]}, str(chunk_path(tmp_path, "W", 0)),
              metadata={"space": "W", "start": "0", "steps": "3"})
    save_chunk(tmp_path, "W", 2, ls.Code(w=w[2:]), images[2:].float() / 127.5 - 1, steps=3)  # a resumed run's chunk
    torch.testing.assert_close(load_codes(tmp_path, "W", 3).w, w)
    torch.testing.assert_close(load_codes(tmp_path, "W", 2).w, w[:2])
    old = ls.spaces.read_code_file(chunk_path(tmp_path, "W", 0))
    assert old.space == "W" and torch.equal(old.images, images[:2])
    assert torch.equal(ls.spaces.read_code_file(chunk_path(tmp_path, "W", 2)).images, images[2:])
    with pytest.raises(ValueError, match="no contiguous W codes for 4 targets"):
        load_codes(tmp_path, "W", 4)


def test_write_rows_is_atomic_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "rows.csv"
    write_rows(path, [{"a": 1, "b": 2}], ["a", "b"])
    with pytest.raises(ValueError):  # a row with a field the header lacks: the old file stays
        write_rows(path, [{"a": 1, "c": 3}], ["a", "b"])
    assert read_rows(path) == [{"a": "1", "b": "2"}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.csv"]


def test_edit_directions_are_the_std_scaled_ganspace_axes(tmp_path):
    G = ls.load_generator("default")
    dirs = edit_directions(G, tmp_path, 2, 2000, seed=0)
    for kind in ("z", "w"):
        plain = ganspace(G, n_samples=2000, n_components=2, seed=0, kind=kind)
        assert all(torch.equal(d.vector, p.vector * p.meta["std"]) for d, p in zip(dirs[kind], plain))
        cached = edit_directions(G, tmp_path, 2, 2000, seed=0)[kind]  # read back from OUT
        assert all(torch.equal(d.vector, c.vector) for d, c in zip(dirs[kind], cached))
