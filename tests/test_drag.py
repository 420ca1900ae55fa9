"""Point dragging (`latentspaces.drag`, "Drag Your GAN" as released) on every space of the default model, its
fast path against the full upsampled map, and `latentspaces drag`."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import latentspaces as ls
from experiments.cli import main
from latentspaces.drag import DragSettings, _bilinear_at, disc, drag, upsampled_at
from latentspaces.spaces import SPACE_ORDER, build_space


@pytest.fixture(scope="module")
def G():
    return ls.load_generator("default")


def test_the_fast_path_reads_the_upsampled_map_exactly():
    """upsampled_at equals indexing F.interpolate(bilinear, align_corners=False); the shifted copy equals
    grid_sample(align_corners=True) on the full map, inside the image."""
    torch.manual_seed(0)
    for h, size in ((16, 64), (8, 64), (128, 1024), (64, 64)):
        f = torch.randn(1, 5, h, h)
        full = F.interpolate(f, (size, size), mode="bilinear", align_corners=False)
        r, c = torch.randint(0, size, (500,)), torch.randint(0, size, (500,))
        torch.testing.assert_close(upsampled_at(f, r, c, size), full[0][:, r, c], atol=2e-6, rtol=0)
        y, x = torch.rand(300) * (size - 1), torch.rand(300) * (size - 1)
        grid = torch.stack([x / (size - 1) * 2 - 1, y / (size - 1) * 2 - 1], -1)[None, None]
        want = F.grid_sample(full, grid, align_corners=True)[0, :, 0]
        torch.testing.assert_close(_bilinear_at(f, y, x, size), want, atol=2e-5, rtol=0)
    rows, cols = disc(torch.tensor([10.0, 20.0]), 3, 64)
    assert len(rows) == 25 and ((rows - 10) ** 2 + (cols - 20) ** 2).max() < 9   # |q - p| < 3, as released


def test_a_dragged_landmark_reaches_its_target_and_the_rest_stays_within_the_mask_bound(G):
    """A W+ sample's nose tip (dlib landmark 30) dragged 4 px right, only a disc of radius 16 around it editable:
    the tracked handle ends within the tolerance (2 px at 64 px) or at least halfway at the step limit, and
    outside the disc the image changes far less than inside and than in the same drag without the mask
    (measured: 0.0057 against 0.052 mean absolute change)."""
    from latentspaces.align import FaceAligner
    space = ls.WPlus(G)
    code = space.from_ws(G.broadcast(G.mapping(torch.randn(1, 512, generator=torch.Generator().manual_seed(5)))))
    with torch.no_grad():
        start = space.synthesize(code)
    (lm,), _ = FaceAligner(size=64).aligned_landmarks(start)
    handle = (round(lm[30][0]), round(lm[30][1]))
    target = (handle[0] + 4, handle[1])
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    editable = (((xx - handle[0] - 2) ** 2 + (yy - handle[1]) ** 2) < 16 ** 2).float()
    settings = DragSettings(max_steps=150)
    res = drag(space, code, [handle], [target], mask=editable, settings=settings)
    moved = float(res.points[-1, 0, 0]) - handle[0]
    assert res.reached or moved >= 2, res.points[-1]
    assert not res.reached or float(res.distances[-1, 0]) <= res.settings.tolerance
    free = drag(space, code, [handle], [target], settings=settings)
    outside = editable == 0
    change, change_free = (res.image - start).abs().mean(1)[0], (free.image - start).abs().mean(1)[0]
    assert change[outside].mean() < 0.3 * change[~outside].mean()
    assert change[outside].mean() < 0.3 * change_free[outside].mean()


@pytest.mark.parametrize("name", SPACE_ORDER)
def test_every_space_drags_and_what_does_not_move_stays_bit_for_bit(G, name):
    space = build_space(name, G)
    code = space.random(1, seed=2)
    res = drag(space, code, [(30, 40)], [(30, 46)], settings=DragSettings(max_steps=3))
    assert res.steps == 3 and res.points.shape == (4, 1, 2) and torch.isfinite(res.image).all()
    masks = space.drag_masks(code, range(6))
    moved = False
    for k in code.fields:
        still = ~masks[k].bool().expand_as(code[k])
        assert torch.equal(res.code[k][still], code[k][still]), k
        moved |= bool((res.code[k] != code[k]).any())
    assert moved
    if space.spherical_fields:   # Z-type rows stay on the sphere
        norms = res.code[space.edit_field].norm(dim=-1)
        torch.testing.assert_close(norms, torch.full_like(norms, space.radius), atol=1e-4, rtol=0)


def test_what_each_space_moves(G):
    """W+: ws 0-5 (the released rows); F spaces: f and their detail rows below 6; one-code spaces: the code."""
    wplus = ls.WPlus(G)
    assert wplus.drag_masks(wplus.mean(1), range(6))["w"].flatten().tolist() == [1.0] * 6 + [0.0] * 4
    fw = ls.FWPlus(G)
    m = fw.drag_masks(fw.mean(1), range(6))
    assert m["f"].item() == 1 and m["w"].flatten().tolist() == [float(i < 6) for i in fw.code_layers]
    assert ls.W(G).drag_masks(ls.W(G).mean(1), range(6))["w"].item() == 1
    s = ls.S(G)
    cols = s.drag_masks(s.mean(1), range(6))["s"][0]
    assert cols[s.slices["b4.conv1"]].all() and not cols[s.slices["b64.conv1"]].any()
    with pytest.raises(ValueError, match="moves nothing"):
        fw.drag_masks(fw.mean(1), [], move_base=False)


def test_the_reference_path_tracks_the_same_points(G):
    space = ls.WPlus(G)
    code = space.random(1, seed=4)
    fast = drag(space, code, [(28, 40)], [(34, 40)], settings=DragSettings(max_steps=4))
    slow = drag(space, code, [(28, 40)], [(34, 40)], settings=DragSettings(max_steps=4), reference=True)
    assert torch.equal(fast.points, slow.points)
    torch.testing.assert_close(fast.code.w, slow.code.w, atol=1e-5, rtol=0)


def test_on_step_sees_each_render_and_can_stop(G):
    space = ls.WPlus(G)
    seen = []
    res = drag(space, space.random(1, seed=1), [(30, 40)], [(30, 50)], settings=DragSettings(max_steps=50),
               on_step=lambda s: seen.append(s.step) or s.step == 2, keep_images=True)
    assert seen == [0, 1, 2] and res.stopped and res.steps == 2 and res.images.shape == (3, 3, 64, 64)


@pytest.mark.parametrize("kwargs, match", [
    (dict(handles=[(70, 3)], targets=[(3, 3)]), r"handles\[0\] = \(70, 3\) is outside the 64 x 64 image"),
    (dict(handles=[], targets=[]), "no handles"),
    (dict(handles=[(3, 3)], targets=[(3, 3), (4, 4)]), "1 handles but 2 targets"),
    (dict(mask=torch.ones(32, 32)), r"mask must be \[64, 64\]"),
    (dict(mask=torch.full((64, 64), 0.5)), "only 0"),
    (dict(settings=DragSettings(max_steps=-1)), "max_steps must be a whole number in 0 .. 10000"),
    (dict(settings=DragSettings(feature_layer="b8.torgb")), "is not a conv layer"),
    (dict(settings=DragSettings(r1=0)), "r1 must be a whole number of pixels"),
])
def test_bad_input_is_one_line_naming_it(G, kwargs, match):
    space = ls.WPlus(G)
    args = {"handles": [(3, 3)], "targets": [(5, 5)], **kwargs}
    with pytest.raises(ValueError, match=match):
        drag(space, space.mean(1), **args)


def test_a_feature_layer_below_an_f_spaces_base_code_is_refused(G):
    space = ls.FWPlus(G)
    with pytest.raises(ValueError, match="does not run b8.conv0"):
        drag(space, space.mean(1), [(3, 3)], [(5, 5)], settings=DragSettings(feature_layer="b8.conv0", max_steps=1))


def test_the_command_drags_a_sample_and_writes_its_files(tmp_path, capsys):
    mask = np.zeros((64, 64), np.uint8)
    mask[20:50, 20:50] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    (tmp_path / "points.json").write_text(json.dumps([[[30, 40], [30, 44]], [[36, 40], [36, 44]]]))
    main(["drag", "--seed", "3", "--points", str(tmp_path / "points.json"), "--mask", str(tmp_path / "mask.png"),
          "--steps", "3", "--out", str(tmp_path / "out"), "--device", "cpu"])
    assert "after 3 steps" in capsys.readouterr().out
    for name in ("drag.png", "drag_points.csv", "codes.safetensors"):
        assert (tmp_path / "out" / name).is_file()
    saved = ls.spaces.read_code_file(tmp_path / "out" / "codes.safetensors")
    assert saved.space == "WPlus" and saved.meta["drag"]["pairs"] == [[[30, 40], [30, 44]], [[36, 40], [36, 44]]]
    lines = (tmp_path / "out" / "drag_points.csv").read_text().splitlines()
    assert lines[0] == "step,point,x,y,distance" and len(lines) == 1 + 4 * 2
    # its codes drag again (a second drag starts where the first ended)
    main(["drag", "--codes", str(tmp_path / "out" / "codes.safetensors"), "--drag", "30,44:30,46", "--steps", "1",
          "--out", str(tmp_path / "again"), "--device", "cpu"])


@pytest.mark.parametrize("argv, match", [
    (["--seed", "1"], "no points to drag"),
    (["--seed", "1", "--drag", "1,2"], "write HANDLE:TARGET"),
    (["--seed", "1", "--drag", "80,2:3,3"], r"handles\[0\] = \(80, 2\) is outside"),
    (["--seed", "1", "--drag", "1,2:3,3", "--paste-back"], "--paste-back needs --codes"),
    (["--seed", "1", "--drag", "1,2:3,3", "--feature-layer", "b4.torgb"], "'b4.torgb' is not a conv layer"),
])
def test_the_command_refuses_bad_input_in_one_line(tmp_path, capsys, argv, match):
    with pytest.raises(SystemExit):
        main(["drag", *argv, "--steps", "1", "--out", str(tmp_path / "o"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert __import__("re").search(match, err), err


@pytest.mark.slow
def test_the_drag_study_writes_its_rows_summary_pairs_and_figure_and_resumes(G, tmp_path):
    """Two spaces, one pair, 1 and 5 landmarks, both sources, 3 steps: a row per drag with finite MD, the summary,
    the paired rows against W+, the figure; a second run adds nothing and another setting is refused."""
    from experiments.rows import RunFolderError
    from experiments.studies.drag_study import DragStudyConfig, ROWS_CSV, run_drag_study
    from latentspaces.metrics.identity import make_identity

    config = DragStudyConfig(pairs=1, points=(1, 5), spaces=("WPlus", "FZPlus"), max_steps=3, invert_steps=2)
    heldout = ls.assets.heldout_targets(2)
    summary = run_drag_study(tmp_path, G, heldout, make_identity("dlib"), config, progress=False)
    rows = (tmp_path / ROWS_CSV).read_text().splitlines()
    assert len(rows) == 1 + 2 * 2 * 2                      # sources x points x spaces
    assert len(summary) == 8 and all(np.isfinite(r["md"]) and 0 <= r["steps"] <= 3 for r in summary)
    assert all(0 <= r["identity_calibrated"] <= 1.2 for r in summary)
    paired = (tmp_path / "drag_study_paired.csv").read_text()
    assert "FZPlus,WPlus,md" in paired and (tmp_path / "drag_study.png").is_file()
    run_drag_study(tmp_path, G, heldout, make_identity("dlib"), config, progress=False)
    assert (tmp_path / ROWS_CSV).read_text().splitlines() == rows   # nothing redone
    with pytest.raises(RunFolderError):
        run_drag_study(tmp_path, G, heldout, make_identity("dlib"), DragStudyConfig(pairs=1, points=(1,),
                       spaces=("WPlus",), max_steps=4, invert_steps=2), progress=False)


def test_aligned_landmarks_find_a_generated_faces_features():
    """dlib's 68 landmarks on 64 px generator faces: found by HOG, brows, eyes, nose and mouth inside the image (the
    jaw may run past its lower edge: FFHQ's crop ends at the chin), eyes above the nose above the mouth."""
    from latentspaces.align import FaceAligner
    G = ls.load_generator("default")
    with torch.no_grad():
        faces = G(torch.randn(3, 512, generator=torch.Generator().manual_seed(0)), truncation_psi=0.7)
    lm, found = FaceAligner(size=64).aligned_landmarks(faces)
    assert lm.shape == (3, 68, 2) and found.all()
    eyes, nose, mouth = lm[:, 36:48, 1].mean(1), lm[:, 30, 1], lm[:, 48:68, 1].mean(1)
    inner = lm[:, 17:]
    assert (eyes < nose).all() and (nose < mouth).all() and (inner >= 0).all() and (inner <= 63).all()


@pytest.mark.parametrize("argv, match", [
    (["--points", "3"], r"unknown landmark count\(s\) 3; choose from 1, 5, 68"),
    (["--points", "one"], r"unknown landmark count\(s\) one"),
    (["--sources", "photos"], r"unknown source\(s\) photos; choose from samples, inverted"),
    (["--identity", "none"], "drag-study measures identity"),
])
def test_the_drag_study_command_refuses_bad_settings_in_one_line(tmp_path, capsys, argv, match):
    with pytest.raises(SystemExit):
        main(["drag-study", "--quick", *argv, "--out", str(tmp_path / "o"), "--device", "cpu"])
    assert __import__("re").search(match, capsys.readouterr().err)


def test_the_command_drags_a_photos_face_and_pastes_it_back(tmp_path, capsys):
    """--photo: the astronaut's face aligned into OUT, inverted (2 quick steps), dragged, pasted back into the
    photo at its size."""
    from skimage import data as skimage_data
    photo = tmp_path / "astronaut.png"
    Image.fromarray(skimage_data.astronaut()).save(photo)
    main(["drag", "--photo", str(photo), "--space", "WPlus", "--invert-steps", "2", "--drag", "30,40:32,40",
          "--steps", "2", "--paste-back", "--out", str(tmp_path / "out"), "--device", "cpu"])
    out = capsys.readouterr().out
    assert "aligned into" in out and "pasted back" in out
    with Image.open(tmp_path / "out" / "astronaut_drag_+1.png") as pasted:
        assert pasted.size == (512, 512)
    assert ls.spaces.read_code_file(tmp_path / "out" / "codes.safetensors").meta["targets"][0].endswith(".png")


@pytest.mark.slow
def test_the_drag_guides_code_runs_as_written():
    """docs/drag.md's Python block, run as written in a fresh interpreter (it prints nothing; it must not fail)."""
    import re
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    blocks = re.findall(r"```python\n(.*?)```", (root / "docs" / "drag.md").read_text(), re.S)
    assert len(blocks) == 1
    code = blocks[0] + "\nassert result.code.fields == ('f', 'z') and result.points.shape[1:] == (1, 2)\n"
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True, timeout=600)
