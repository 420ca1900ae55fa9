"""Every flag's bad values, and the files flags name, refused before any work: one line, exit status 2 or 1.

The table runs each command line through `experiments.cli.main` in-process. A usage error must come
before the generator is loaded (ls.load_generator is replaced by a tripwire) and before anything is
written (--out stays absent); the few checks that need the generator say so in the table.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import torch
from PIL import Image

import latentspaces as ls
from experiments.cli import main
from latentspaces.directions import Direction, load_directions, save_directions
from latentspaces.errors import CheckpointError
from latentspaces.fingerprints import generator_fingerprint
from latentspaces.spaces import read_code_file
from latentspaces.storage import save_tensors

NEEDS_G = "loads the generator"   # the check needs the generator (its w_dim, its fingerprint, its resolution)


@pytest.fixture(scope="module")
def G():
    return ls.load_generator("default")


@pytest.fixture(scope="module")
def files(tmp_path_factory, G):
    """The files the table's command lines name, made once."""
    d = tmp_path_factory.mktemp("flags")
    (d / "empty_dir").mkdir()
    (d / "a_file").write_text("not a folder")
    (d / "notes.png").write_text("not an image")
    (d / "other_generator.safetensors").write_bytes(b"")
    Image.new("RGB", (8, 8)).save(d / "face.png")
    Image.new("RGB", (8, 8)).save(d / "face.bmp")   # the stem of face.png: their aligned files would collide
    ls.W(G).mean(2).save(d / "w_codes.safetensors", space="W", generator_fingerprint=generator_fingerprint(G))
    ls.W(G).mean(2).save(d / "foreign_codes.safetensors", space="W", generator_fingerprint="0123456789abcdef")
    save_tensors(d / "nan_codes.safetensors", {"code.w": torch.full((1, 512), float("nan"))}, "latentspaces.code", 1,
                 space="W", meta={})
    save_directions(d / "w_dir.safetensors", [Direction(torch.randn(512), "w", name="d0")])
    meta = [dict(kind="w", layers=None, name="bad", method="", meta={})]
    save_tensors(d / "nan_dir.safetensors", {"direction_0": torch.full((512,), float("nan"))},
                 "latentspaces.directions", 1, directions=meta)
    torch.save(torch.zeros(2, 3, 4), d / "cube_dir.pt")
    torch.save(torch.full((512,), float("inf")), d / "inf_dir.pt")
    return d


OUT = "{out}"
# (argv with {d} = the files folder, {out} = a folder that must stay absent), exit status, message fragment, needs G
CASES = [
    # numbers: ranges, integers, finite
    ("compare --out {out} --steps -1", 2, "argument --steps: -1 is below 0"),
    ("compare --out {out} --steps ten", 2, "argument --steps: 'ten' is not an integer"),
    ("invert --out {out} --steps 1.5", 2, "argument --steps: '1.5' is not an integer"),
    ("invert --out {out} --lr 0", 2, "argument --lr: 0 is outside [1e-08, 10]"),
    ("compare --out {out} --lr -0.1", 2, "argument --lr: -0.1 is outside [1e-08, 10]"),
    ("compare --out {out} --lr nan", 2, "argument --lr: 'nan' is not a finite number"),
    ("compare --out {out} --lr inf", 2, "argument --lr: 'inf' is not a finite number"),
    ("compare --out {out} --lambda-per -1", 2, "argument --lambda-per: -1 is negative"),
    ("compare --out {out} --lambda-per inf", 2, "argument --lambda-per: 'inf' is not a finite number"),
    ("compare --out {out} --lambda-reg -0.5", 2, "argument --lambda-reg: -0.5 is negative"),
    ("compare --out {out} --n-targets 0", 2, "argument --n-targets/--n: 0 is below 1"),
    ("compare --out {out} --n -1", 2, "argument --n-targets/--n: -1 is below 1"),
    ("compare --out {out} --n-targets 1000", 2, "--n-targets 1000: the held-out set has 64 targets"),
    ("invert --out {out} --n 65", 2, "--n-targets 65: the held-out set has 64 targets"),
    ("compare --out {out} --chunk 0", 2, "argument --chunk: 0 is below 1"),
    ("identity-curves --out {out} --chunk -1", 2, "argument --chunk: -1 is below 1"),
    ("compare --out {out} --seed -1", 2, "argument --seed: -1 is below 0"),
    ("directions --out {out} --seed 4294967296", 2, "argument --seed: 4294967296 is above 4294967295"),
    ("compensation --out {out} --pivot-steps -1", 2, "argument --pivot-steps: -1 is below 0"),
    ("compensation --out {out} --tune-steps x", 2, "argument --tune-steps: 'x' is not an integer"),
    ("paired --out {d} --alpha -2", 2, "argument --alpha: -2 is negative"),
    ("paired --out {d} --alpha nan", 2, "argument --alpha: 'nan' is not a finite number"),
    ("paired --out {d} --n-targets 0", 2, "argument --n-targets/--n: 0 is below 1"),
    ("directions --out {out} --count 0", 2, "argument --count: 0 is below 1"),
    ("directions --out {out} --samples 0", 2, "argument --samples: 0 is below 1"),
    ("directions --out {out} --count 20 --samples 10", 2, "--count 20 principal directions need at least as many"),
    ("directions --out {out} --count 1000", 2, "--count 1000: ganspace finds at most w_dim = 512", NEEDS_G),
    ("directions --out {out} --method sefa --count 513", 2, "sefa finds at most w_dim = 512", NEEDS_G),
    ("edit --out {out} --codes {d}/w_codes.safetensors --direction {d}/w_dir.safetensors --index -1", 2,
     "argument --index: -1 is below 0"),
    ("edit --out {out} --codes {d}/w_codes.safetensors --direction {d}/w_dir.safetensors --alphas nan,inf", 2,
     "argument --alphas: 'nan' is not a finite number"),
    ("edit --out {out} --codes {d}/w_codes.safetensors --direction {d}/w_dir.safetensors --alphas=1,inf", 2,
     "argument --alphas: 'inf' is not a finite number"),
    ("edit --out {out} --codes {d}/w_codes.safetensors --direction {d}/w_dir.safetensors --alphas=1,,2", 2,
     "argument --alphas: '1,,2' has an empty entry"),
    ("edit --out {out} --codes {d}/w_codes.safetensors --direction {d}/w_dir.safetensors --alphas=1,x", 2,
     "argument --alphas: 'x' is not a number"),
    # names and choices
    ("compare --out {out} --perceptual foo", 2, "argument --perceptual: invalid choice: 'foo'"),
    ("compare --out {out} --identity foo", 2, "argument --identity: invalid choice: 'foo'"),
    ("score-identity --out {d} --identity none", 2, "argument --identity: invalid choice: 'none'"),
    ("compare --out {out} --spaces ''", 2, "argument --spaces: '' has an empty entry"),
    ("compare --out {out} --spaces W,,Z", 2, "argument --spaces: 'W,,Z' has an empty entry"),
    ("compare --out {out} --spaces W,Foo", 2, "argument --spaces: unknown space 'Foo'"),
    ("compare --out {out} --spaces W,W", 2, "argument --spaces: 'W,W' names a space twice"),
    ("invert --out {out} --space F", 2, "argument --space: unknown space 'F'"),
    ("compare --out {out} --init foo", 2, "argument --init: invalid choice: 'foo'"),
    ("directions --out {out} --method foo", 2, "argument --method: invalid choice: 'foo'"),
    ("directions --out {out} --kind s", 2, "argument --kind: invalid choice: 's'"),
    ("paired --out {d} --a Foo", 2, "argument --a: unknown space or method 'Foo'"),
    ("paired --out {d} --a W --b W,Z", 2, "--b W,Z includes --a W"),
    ("compare --out {out} --device foo", 2, "argument --device: 'foo' is not a device"),
    ("compare --out {out} --device cuda:99", 2, "argument --device: cuda:99"),
    # files and folders the flags name
    ("invert --out {out} --targets {d}/face.png,", 2, "argument --targets: '{d}/face.png,' has an empty entry"),
    ("invert --out {out} --targets ,", 2, "argument --targets: ',' has an empty entry"),
    ("invert --out {out} --targets {d}/missing.png", 2, "argument --targets: no image file or folder at"),
    ("invert --out {out} --targets {d}/empty_dir", 2, "empty_dir: a folder without image files"),
    ("invert --out {out} --targets {d}/notes.png", 1, "notes.png: not an image file of the formats read here (PNG, JPEG, WEBP, BMP, GIF, TIFF)", NEEDS_G),
    ("compare --out {out} --generator {d}/nope.pt", 2, "argument --generator: '{d}/nope.pt' is not a file"),
    ("compare --out {out} --generator {d}/empty_dir", 2, "argument --generator: '{d}/empty_dir' is a folder"),
    ("compare --out {out} --init encoder --f-encoder nope", 2, "argument --f-encoder: 'nope' is not a file and not "
                                                               "a shipped encoder name"),
    ("compensation --out {out} --sdic {d}/nope", 2, "argument --sdic:"),
    ("compare --out {d}/a_file", 2, "argument --out: {d}/a_file exists and is not a folder"),
    ("paired --out {d}/missing", 2, "argument --out: no folder at"),
    ("score-identity --out {d}/missing", 2, "argument --out: no folder at"),
    ("score-identity --out {d}", 2, "score-identity scores a folder written by compare"),
    ("edit --out {out} --codes {d}/missing --direction {d}/w_dir.safetensors", 2, "argument --codes: no file at"),
    ("edit --out {out} --codes {d}/w_codes.safetensors --direction {d}/empty_dir", 2,
     "argument --direction: {d}/empty_dir is a folder"),
    # flags the other flags make ineffective
    ("invert --out {out} --chunk 2", 2, "latentspaces invert: error: unrecognized arguments: --chunk 2"),
    ("identity-curves --out {out} --edit-sizes 0.04,3", 2, "argument --edit-sizes: edit sizes are mean absolute pixel"),
    ("f-layer-sweep --out {out} --layers b8.conv2", 2, "argument --layers: b8.conv2: a conv layer is named"),
    ("f-layer-sweep --out {out} --spaces WPlus", 2, "--spaces WPlus: the sweep moves the F layer"),
    ("compare --out {out} --quick --recipe full", 2, "--quick is --recipe quick; it contradicts --recipe full"),
    ("invert --out {out} --identity dlib", 2, "invert: error: unrecognized arguments: --identity dlib"),
    ("compare --out {out} --targets {d}/face.png --n 2", 2, "--n-targets 2 counts held-out targets"),
    ("invert --out {out} --recipe quick --perceptual lpips-vgg", 2, "--perceptual lpips-vgg does nothing with --lambda-per 0"),
    ("invert --out {out} --perceptual none --lambda-per 1", 2, "--lambda-per 1 weighs the perceptual distance"),
    ("compare --out {out} --perceptual none --lambda-per 0.5", 2, "--lambda-per 0.5 weighs the perceptual distance"),
    ("compare --out {out} --generator {d}/other_generator.safetensors --perceptual d-features", 2,
     "--perceptual: 'd-features' is the default model's perceptual distance (64 px images), not one for another"),
    ("compare --out {out} --recipe full --wplus-encoder default-wplus", 2,
     "--wplus-encoder matters only when the codes start from the encoders (this run, recipe full (init mean)"),
    ("compare --out {out} --init random --f-encoder default-f", 2, "--init random, starts from random codes"),
    ("compare --out {out} --seed 3", 2, "--seed matters only with --init random: with recipe paper (init encoder) nothing"),
    ("compare --out {out} --init encoder --seed 3", 2, "--seed matters only with --init random"),
    ("identity-curves --out {out} --identity none", 2, "identity-curves measures identity"),
    ("identity-curves --out {out} --quick --index 8", 2, "--index 8: the run has 8 targets (give 0 .. 7)"),
    ("identity-curves --out {out} --index -1", 2, "argument --index: -1 is below 0"),
    ("directions --out {out} --method sefa --kind z", 2, "--method sefa finds W directions"),
    ("directions --out {out} --method random --samples 5", 2, "--samples sets GANSpace's W samples"),
    ("directions --out {out} --method sefa --seed 1", 2, "--method sefa is deterministic"),
    # align, invert --align, edit --paste-back: photos, sizes, the alignment file
    ("align {d}/face.png --out {out} --size 4", 2, "argument --size: 4 is below 8"),
    ("align {d}/face.png --out {out} --size 5000", 2, "argument --size: 5000 is above 4096"),
    ("align {d}/face.png --out {out} --size 4096 --supersample 5", 2, "= 20480 px per side exceeds 16384"),
    ("align {d}/face.png --out {out} --supersample 0", 2, "argument --supersample: 0 is below 1"),
    ("align {d}/face.png --out {out} --upsample 4", 2, "argument --upsample: 4 is above 3"),
    ("align {d}/face.png --out {out} --min-score nan", 2, "argument --min-score: 'nan' is not a finite number"),
    ("align {d}/face.png --out {out} --detector mtcnn", 2, "argument --detector: invalid choice: 'mtcnn'"),
    ("align {d}/missing.png --out {out}", 2, "argument PHOTO: no image file or folder at"),
    ("align {d}/empty_dir --out {out}", 2, "empty_dir: a folder without image files"),
    ("align --out {out}", 2, "the following arguments are required: PHOTO"),
    ("align {d}/face.png {d}/face.bmp --out {out}", 2, "would both write face_0.png"),
    ("align {d}/face.png {d}/face.png --out {out}", 2, "face.png is named twice"),
    ("align {d}/face.png --out {d}/a_file", 2, "argument --out: {d}/a_file exists and is not a folder"),
    ("invert --out {out} --align", 2, "--align finds and aligns the faces of photos: give --targets"),
    ("invert --out {out} --align --targets {d}/face.png,{d}/face.bmp", 2, "would both write face_0.png"),
    ("edit --out {out} --codes {d}/w_codes.safetensors --direction {d}/w_dir.safetensors --alignment {d}/a_file", 2,
     "--alignment matters only with --paste-back"),
    ("edit --out {out} --codes {d}/w_codes.safetensors --direction {d}/w_dir.safetensors --mask square", 2,
     "--mask matters only with --paste-back"),
    ("edit --out {out} --codes {d}/w_codes.safetensors --direction {d}/w_dir.safetensors --paste-back", 2,
     "--paste-back needs the alignment of the codes' faces: no alignment.json beside"),
    ("edit --out {out} --codes {d}/w_codes.safetensors --direction {d}/w_dir.safetensors --paste-back --alignment "
     "{d}/missing.json", 2, "argument --alignment: no file at"),
    ("edit --out {out} --codes {d}/w_codes.safetensors --direction {d}/w_dir.safetensors --paste-back --alignment "
     "{d}/a_file", 2, "w_codes.safetensors does not record its target files"),
    # edit: the direction and code files, checked against the flags and each other
    ("edit --out {out} --codes {d}/w_codes.safetensors --direction {d}/w_dir.safetensors --index 1", 2,
     "--index 1: {d}/w_dir.safetensors holds 1 direction(s) (0 .. 0)"),
    ("edit --out {out} --codes {d}/w_codes.safetensors --direction {d}/w_dir.safetensors --kind z", 2,
     "--kind z: {d}/w_dir.safetensors says its direction 0 is a 'w' direction"),
    ("edit --out {out} --codes {d}/w_codes.safetensors --direction {d}/w_dir.safetensors --space Z", 2,
     "--space Z: {d}/w_codes.safetensors holds W codes"),
    ("edit --out {out} --codes {d}/w_codes.safetensors --direction {d}/nan_dir.safetensors", 1,
     "{d}/nan_dir.safetensors: direction 0: direction vector holds NaN or inf (512 of 512 entries)"),
    ("edit --out {out} --codes {d}/w_codes.safetensors --direction {d}/inf_dir.pt", 1,
     "{d}/inf_dir.pt: the direction: direction vector holds NaN or inf"),
    ("edit --out {out} --codes {d}/w_codes.safetensors --direction {d}/cube_dir.pt", 1,
     "{d}/cube_dir.pt: a direction tensor must be [D], [1, D] or [L, D], got (2, 3, 4)"),
    ("edit --out {out} --codes {d}/nan_codes.safetensors --direction {d}/w_dir.safetensors", 1,
     "{d}/nan_codes.safetensors: code field(s) ['w'] hold NaN"),
    ("edit --out {out} --codes {d}/notes.png --direction {d}/w_dir.safetensors", 1,
     "{d}/notes.png: not a readable safetensors file"),
    ("edit --out {out} --codes {d}/foreign_codes.safetensors --direction {d}/w_dir.safetensors", 1,
     "{d}/foreign_codes.safetensors: codes inverted with generator 0123456789abcdef, not with this one", NEEDS_G),
    ("compensation --quick --out {out} --methods base,hfgi,base", 2, "'base,hfgi,base' names a method twice"),
    ("compensation --quick --out {out} --methods base,e4e", 2, "unknown method(s) e4e; choose from base, sdic, hfgi"),
    ("compensation --quick --out {out} --methods base,pti --sdic default-sdic", 2,
     "--sdic given but --methods leaves it out"),
    ("compensation --quick --out {out} --hfgi {d}/missing.safetensors", 2, "argument --hfgi: '{d}/missing.safetensors' "
     "is not a file and not a shipped encoder name"),
    # bounds on what can finish (#34): an extra zero is refused, with the bound
    ("compare --out {out} --steps 1000000000", 2, "argument --steps: 1000000000 is above 100000"),
    ("compensation --out {out} --tune-steps 1000000", 2, "argument --tune-steps: 1000000 is above 100000"),
    ("compare --out {out} --lr 1e-320", 2, "argument --lr: 9.99989e-321 is outside [1e-08, 10]"),
    ("edit --out {out} --codes {d}/w_codes.safetensors --direction {d}/w_dir.safetensors --alphas=2,1e30", 2,
     "argument --alphas: |alpha| = 1e+30 is above 100"),
    ("directions --out {out} --samples 10000000000", 2, "argument --samples: 10000000000 is above 10000000"),
    ("tradeoff --out {d}/missing_dir", 2, "argument --out: no folder at '{d}/missing_dir'"),
    ("tradeoff --out {d} --distortion psnr", 2, "argument --distortion: invalid choice: 'psnr'"),
    ("tradeoff --out {d} --alpha 0", 2, "argument --alpha: 0 is not > 0"),
    ("tradeoff --out {d}", 1, "{d} has neither compare + identity-curves rows nor compensation rows"),
]


def _argv(line: str, d, out) -> list:
    import shlex

    return shlex.split(line.format(d=d, out=out))


@pytest.mark.parametrize("case", CASES, ids=[c[0].split(" --out")[0] + ": " + c[2].replace("{d}/", "")[:40]
                                             for c in CASES])
def test_bad_flag_fails_before_any_work_with_one_line(case, files, tmp_path, monkeypatch, capsys):
    line, status, fragment, *needs = case
    out = tmp_path / "out"
    if not needs:
        def tripwire(*args, **kwargs):
            raise AssertionError("the generator was loaded before the flags were checked")
        monkeypatch.setattr(ls, "load_generator", tripwire)
    t = time.perf_counter()
    with pytest.raises(SystemExit) as e:
        main(_argv(line, files, out))
    err = capsys.readouterr().err
    assert e.value.code == status, err
    assert fragment.format(d=files) in err
    assert err.count("\n") == 1 and err.startswith("latentspaces"), err  # one line, no traceback
    assert not out.exists()  # nothing written
    assert needs or time.perf_counter() - t < 3  # parsing and checks only: nothing loaded, nothing computed


def test_debug_shows_the_exception_itself(files, tmp_path):
    argv = _argv("edit --out {out} --codes {d}/w_codes.safetensors --direction {d}/nan_dir.safetensors --debug",
                 files, tmp_path / "out")
    with pytest.raises(CheckpointError, match="holds NaN"):
        main(argv)
    with pytest.raises(CheckpointError, match="holds NaN"):
        main(["--debug", *argv[:-1]])


@pytest.mark.parametrize("raised, status, said", [
    (KeyboardInterrupt(), 130, "latentspaces directions: error: interrupted"),
    (FileNotFoundError("no file at x"), 1, "latentspaces directions: error: no file at x"),
    (RuntimeError("boom\nsecond line"), 1, "latentspaces directions: error: RuntimeError: boom second line "
                                           "(unexpected; rerun with --debug for the traceback)"),
])
def test_runtime_failures_are_one_line(raised, status, said, monkeypatch, tmp_path, capsys):
    import experiments.cli.directions as directions

    def fail(args):
        raise raised

    monkeypatch.setattr(directions, "run", fail)
    with pytest.raises(SystemExit) as e:
        main(["directions", "--out", str(tmp_path / "out")])
    assert e.value.code == status and capsys.readouterr().err == said + "\n"
    with pytest.raises(type(raised)):
        main(["directions", "--out", str(tmp_path / "out"), "--debug"])


def test_unsharded_command_under_torchrun_is_a_usage_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(SystemExit) as e:
        main(["directions", "--out", str(tmp_path / "out"), "--count", "2", "--samples", "100"])
    assert e.value.code == 2 and "`directions` runs as one process" in capsys.readouterr().err


def test_codes_without_a_generator_fingerprint_are_edited_with_a_one_line_warning(files, G, tmp_path, capsys):
    ls.W(G).mean(1).save(tmp_path / "old.safetensors", space="W")  # as written before fingerprints
    main(["edit", "--out", str(tmp_path / "edit"), "--codes", str(tmp_path / "old.safetensors"), "--direction",
          str(files / "w_dir.safetensors"), "--alphas=0,1", "--device", "cpu"])
    err = capsys.readouterr().err
    assert "latentspaces edit: warning:" in err and "does not record which generator" in err
    assert (tmp_path / "edit" / "edit_d0.png").is_file()


def test_code_files_record_and_check_the_generator(files, G):
    saved = read_code_file(files / "w_codes.safetensors", generator=G)
    assert saved.generator_fingerprint == generator_fingerprint(G)
    other = ls.Generator(z_dim=8, w_dim=8, resolution=8, mapping_layers=1, channels={4: 8, 8: 8})
    with pytest.raises(CheckpointError, match="w_codes.safetensors: codes inverted with generator"):
        saved.check_generator(other)


def test_direction_readers_refuse_non_finite_and_misshapen_vectors(tmp_path):
    torch.save({"comp": torch.randn(3, 1, 8), "std": torch.tensor([1.0, float("nan"), 1.0])}, tmp_path / "pca.pt")
    with pytest.raises(CheckpointError, match=r"pca.pt: component 1: direction vector holds NaN"):
        load_directions(tmp_path / "pca.pt")
    torch.save(torch.zeros(4, 8, dtype=torch.int64), tmp_path / "ints.pt")
    with pytest.raises(CheckpointError, match="ints.pt: the direction tensor has dtype torch.int64; expected a floating-point tensor"):
        load_directions(tmp_path / "ints.pt")
    torch.save(torch.zeros(4, 8), tmp_path / "rows.pt")
    with pytest.raises(CheckpointError, match=r"rows.pt: .* one row per entry of layers \(2 given\)"):
        load_directions(tmp_path / "rows.pt", layers=[0, 1])
    with pytest.raises(FileNotFoundError, match="no direction file at"):
        load_directions(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="NaN or inf"):
        Direction(torch.tensor([1.0, float("inf")]), "w")


def _cli(*args, cwd) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "experiments.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=cwd)


def test_the_command_prints_one_line_and_exits_2_or_1(files, tmp_path):
    from conftest import REPO

    usage = _cli("compare", "--out", str(tmp_path / "o"), "--steps", "-1", cwd=REPO)   # the two run side by side
    broken = _cli("edit", "--out", str(tmp_path / "o"), "--codes", str(files / "w_codes.safetensors"),
                  "--direction", str(files / "nan_dir.safetensors"), cwd=REPO)
    (out, err), status = usage.communicate(timeout=300), usage.returncode
    assert status == 2 and out == ""
    assert err.splitlines() == ["latentspaces compare: error: argument --steps: -1 is below 0 (give an integer >= 0) "
                                "(see latentspaces compare --help)"]
    (out, err), status = broken.communicate(timeout=300), broken.returncode
    assert status == 1 and len(err.splitlines()) == 1, err
    assert err.startswith("latentspaces edit: error: ") and "holds NaN" in err
    assert not (tmp_path / "o").exists()


def test_the_command_starts_without_its_heavy_libraries():
    """Parsing flags must not import torchmetrics (which pulls torchvision and torch._dynamo), scikit-learn or
    scipy.stats: together they made every command, even a usage error, take about 4 s more to start."""
    heavy = ["torchmetrics", "sklearn", "scipy.stats", "torch._dynamo", "torchvision", "matplotlib.pyplot"]
    code = ("import sys, experiments.cli as c; c.build_parser().parse_args(['compare', '--out', 'x']); "
            f"print([m for m in {heavy!r} if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]", f"imported at start-up: {done.stdout.strip()}"


def test_version_and_the_minus_sign_hint(capsys):
    from experiments.cli import main
    import latentspaces
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"latentspaces {latentspaces.__version__}"
    with pytest.raises(SystemExit) as e:
        main(["edit", "--alphas", "-2,0,2"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "goes after '=': --alphas=-2,0,2" in err


def test_the_help_shows_its_examples_as_written(capsys):
    from experiments.cli import main
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "--paste-back \\\n        --out runs/me" in text   # a continued line stays two lines
