"""The `latentspaces` command line: flags checked once when parsed, presets, 0 taken as given; run-folder files."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import FrozenInstanceError

import inspect

import pytest
import torch
from safetensors.torch import save_file

import latentspaces as ls
from encoders import load_encoder
from experiments.cli import build_parser, main
from experiments.cli.directions import DirectionsConfig
from experiments.cli.edit import EditConfig
from experiments.cli.invert import InvertConfig
from experiments.cli.paired import PairedConfig
from experiments.cli.score_identity import ScoreIdentityConfig
from experiments.studies.compensation import CompensationConfig
from experiments.studies.identity_curves import IdentityCurvesConfig
from experiments.studies.space_comparison import CompareConfig
from experiments.rows import read_rows, write_rows
from experiments.rows import RunFolderError
from experiments.runs import read_settings, write_settings
from experiments.studies.inversions import chunk_path, invert_missing, load_codes, save_chunk
from experiments.studies.identity_curves import edit_directions, run_identity_curves
from experiments.studies.space_comparison import run_space_comparison
from latentspaces import assets
from optimizers import FULL, PAPER, QUICK, RECIPES, HybridInverter
from latentspaces.directions import ganspace


def _settings(cls, argv):
    return cls.from_args(build_parser().parse_args(argv))


def test_presets_are_named_by_recipe_frozen_and_picked_by_recipe_or_quick():
    C = CompareConfig.PRESETS
    assert (C["quick"].recipe, C["full"].recipe, C["paper"].recipe) == (QUICK, FULL, PAPER)
    assert (C["quick"].n_targets, C["full"].n_targets, C["paper"].n_targets) == (8, 64, 64)
    assert C["paper"].spaces == tuple(ls.SPACE_ORDER)
    assert IdentityCurvesConfig.PRESETS["quick"].directions == 3
    assert IdentityCurvesConfig.PRESETS["paper"].direction_samples == 300_000
    P = CompensationConfig.PRESETS["paper"]
    assert (P.pivot_steps, P.tune_steps, P.recipe) == (450, 350, PAPER)
    assert ScoreIdentityConfig.PRESETS["quick"].pn_samples == C["quick"].pn_samples
    for cls in (PairedConfig, EditConfig, DirectionsConfig):
        assert cls.PRESETS == {} and cls.preset("quick") == cls()  # the commands that do not invert: no presets
    with pytest.raises(FrozenInstanceError):
        C["quick"].chunk = 5
    assert _settings(CompareConfig, ["compare", "--out", "o", "--quick"]) == C["quick"]
    assert _settings(CompareConfig, ["compare", "--out", "o", "--recipe", "quick"]) == C["quick"]
    assert _settings(CompareConfig, ["compare", "--out", "o", "--recipe", "full"]) == C["full"]
    assert _settings(CompareConfig, ["compare", "--out", "o"]) == C["paper"]   # the default is the paper's


def test_the_paper_recipe_is_the_papers_and_the_librarys_default():
    """Eqs. 1-4 of "Revisiting Latent Space of GAN Inversion": encoder start, lambda_per = lambda_reg = 10, Adam
    at lr 0.01 for 1200 steps; the CLI default, HybridInverter's own defaults and the studies' defaults agree."""
    assert (PAPER.init, PAPER.lambda_per, PAPER.lambda_reg, PAPER.steps, PAPER.lr) == ("encoder", 10.0, 10.0, 1200, 0.01)
    G = ls.load_generator("default")
    plain = HybridInverter(ls.FZPlus(G))
    made = HybridInverter.from_recipe(PAPER.space("FZPlus", G), PAPER, perceptual=lambda x, y: x.new_zeros(len(x)),
                                      encoder=object())
    for key in ("steps", "lr", "lambda_per", "lambda_reg", "lambda_mse"):
        assert getattr(made, key) == getattr(plain, key), key
    assert made.init == "encoder"
    for study in (run_space_comparison, run_identity_curves):   # config None: the config's defaults, the paper's
        assert inspect.signature(study).parameters["config"].default is None, study.__name__
    assert CompareConfig().recipe is PAPER and IdentityCurvesConfig().recipe is PAPER
    assert inspect.signature(invert_missing).parameters["recipe"].default is inspect.Parameter.empty
    for command, cls in (("compare", CompareConfig), ("identity-curves", IdentityCurvesConfig),
                         ("compensation", CompensationConfig)):
        assert _settings(cls, [command, "--out", "o"]).recipe is PAPER
    inv = _settings(InvertConfig, ["invert", "--out", "o"])
    assert inv.recipe is PAPER
    # Z+ has no encoder: the paper recipe starts it from the mean, without the anchor term
    zplus = HybridInverter.from_recipe(ls.ZPlus(G), PAPER, perceptual=lambda x, y: x.new_zeros(len(x)))
    assert (zplus.init, zplus.lambda_reg, zplus.encoder) == ("mean", 0.0, None)


def test_a_recipe_changed_by_a_flag_says_so_and_bad_recipes_are_refused():
    s = _settings(CompareConfig, ["compare", "--out", "o", "--steps", "300", "--lambda-per", "1"])
    assert s.recipe.name == "paper, steps=300, lambda_per=1" and s.recipe.steps == 300
    assert PAPER.replace(steps=1200) is PAPER   # no change, no new name
    for bad in (dict(steps=-1), dict(lr=0.0), dict(lambda_reg=float("nan")), dict(init="median"), dict(steps=2.5)):
        with pytest.raises(ValueError):
            PAPER.replace(**bad)
    with pytest.raises(TypeError, match="no field"):
        PAPER.replace(stpes=3)
    assert RECIPES["full"].describe().startswith("full: 1200 Adam steps at lr 0.01 from the mean code")


@pytest.mark.parametrize("argv, message", [
    (["compare", "--out", "o", "--quick", "--recipe", "paper"], "contradicts --recipe paper"),
    (["compare", "--out", "o", "--recipe", "full", "--f-encoder", "default-f"], "start from the encoders"),
    (["compare", "--out", "o", "--recipe", "quick", "--lambda-reg", "10"], "--lambda-reg matters only"),
    (["compare", "--out", "o", "--seed", "3"], "--seed matters only with --init random"),
    (["invert", "--out", "o", "--init", "mean", "--wplus-encoder", "default-wplus"], "start from the encoders"),
])
def test_flags_that_contradict_the_recipe_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_zero_is_a_value_not_the_preset(tmp_path):
    s = _settings(CompareConfig, ["compare", "--out", "o", "--quick", "--steps", "0", "--lambda-per", "0",
                                    "--init", "random", "--seed", "0"])
    assert (s.recipe.steps, s.recipe.lambda_per, s.recipe.lr, s.n_targets) == (0, 0.0, 0.05, 8)
    full = _settings(CompareConfig, ["compare", "--out", "o", "--recipe", "full", "--lambda-per", "0"])
    assert (full.recipe.lambda_per, full.recipe.steps) == (0.0, 1200)  # FULL's 1.0 is not brought back by a falsy 0
    paper = _settings(CompareConfig, ["compare", "--out", "o", "--lambda-reg", "0"])
    assert (paper.recipe.lambda_reg, paper.recipe.lambda_per) == (0.0, 10.0)
    inv = _settings(InvertConfig, ["invert", "--out", "o", "--recipe", "quick", "--steps", "0", "--lambda-per", "0"])
    assert (inv.recipe.steps, inv.recipe.lambda_per, inv.recipe.lr) == (0, 0.0, 0.05)
    comp = _settings(CompensationConfig, ["compensation", "--out", "o", "--quick", "--pivot-steps", "0",
                                            "--tune-steps", "0"])
    assert (comp.pivot_steps, comp.tune_steps, comp.recipe.steps) == (0, 0, 100)
    for name in ("c", "d"):
        (tmp_path / name).write_bytes(b"")  # --codes and --direction must name files that exist
    assert _settings(EditConfig, ["edit", "--out", "o", "--codes", str(tmp_path / "c"), "--direction",
                                    str(tmp_path / "d"), "--alphas=-2,0,2.5", "--index", "0"]).alphas == (-2.0, 0.0, 2.5)
    assert _settings(CompareConfig, ["compare", "--out", "o", "--spaces", "W, FZPlus"]).spaces == ("W", "FZPlus")


def test_compare_records_its_recipe_and_refuses_another_in_the_same_folder(tmp_path):
    G = ls.load_generator("default")
    targets = assets.heldout_targets(1)
    kw = dict(perceptual=None, identity=None)

    def config(recipe):
        return CompareConfig(spaces=("W",), recipe=recipe)
    run_space_comparison(tmp_path, G, targets, config(PAPER.replace(steps=0, perceptual="none")), **kw)
    settings = read_settings(tmp_path)
    assert (settings["recipe"], settings["init"], settings["lambda_reg"]) == ("paper, steps=0, perceptual=none",
                                                                            "encoder", 10.0)
    # the W+ encoder's start, kept by 0 steps
    start = load_encoder("default-wplus").init_code(ls.W(G), targets)
    torch.testing.assert_close(load_codes(tmp_path, "W", 1).w, start.w)
    with pytest.raises(RunFolderError, match="recipe="):
        run_space_comparison(tmp_path, G, targets, config(QUICK.replace(steps=0, perceptual="none")), **kw)
    # a folder made before recipes were named (no recipe key) resumes with the same numbers and adopts the name
    old = {k: v for k, v in settings.items() if k not in ("recipe", "lambda_mse")}
    write_settings(tmp_path / "inversion_settings.json", old)
    run_space_comparison(tmp_path, G, targets, config(PAPER.replace(steps=0, perceptual="none")), **kw)
    assert read_settings(tmp_path)["recipe"] == "paper, steps=0, perceptual=none"


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
    assert done.returncode == 0 and "--n-targets" in text and "(quick 100, full 1200, paper 1200)" in text


def test_invert_with_zero_steps_keeps_the_start_and_edit_reads_its_codes(tmp_path, capsys):
    main(["invert", "--out", str(tmp_path / "inv"), "--n", "2", "--steps", "0", "--space", "W", "--recipe", "quick",
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
