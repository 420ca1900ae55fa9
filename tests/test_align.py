"""FFHQ alignment of real photos and paste-back (latentspaces.align), and the commands that use them.

The photo is scikit-image's astronaut (Eileen Collins). A rotated, scaled and shifted copy of it in a
larger canvas must align to the same face as the original; landmarks found again on an aligned face
must sit where the FFHQ procedure put them; an unedited aligned face pasted back must give the photo
back up to resampling error; a photo without a face is an error naming the file.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from experiments.cli import main
from latentspaces.align import (FaceAligner, FaceTransform, face_mask, ffhq_align, load_alignment, paste_back,
                                save_alignment)
from latentspaces.errors import CheckpointError, FaceNotFoundError
from latentspaces.images import read_photo, to_uint8

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return Image.fromarray(skimage_data.astronaut())


@pytest.fixture(scope="module")
def aligner() -> FaceAligner:
    return FaceAligner(size=256)


@pytest.fixture(scope="module")
def reference(photo, aligner):
    faces = aligner.align(photo)
    assert len(faces) == 1   # dlib's threshold 0 would also report the mission patch on her suit (score 0.12)
    return faces[0]


def canvas(photo: Image.Image, angle: float, scale: float, shift, margin: int = 120):
    """The photo rotated by `angle` degrees, scaled and shifted inside a larger gray canvas that holds all of it
    -> (canvas, A [2, 2], t [2]): a photo point p (continuous coordinates) lands at A p + t."""
    a = np.deg2rad(angle)
    A = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    centre = np.array(photo.size) / 2
    corners = (np.array([[0, 0], [photo.width, 0], [0, photo.height], [photo.width, photo.height]]) - centre) @ A.T
    half = np.abs(corners).max(axis=0) + margin + np.abs(shift)
    size = tuple(int(v) for v in np.ceil(2 * half))
    t = np.array(size) / 2 + np.asarray(shift) - A @ centre
    inverse = np.linalg.inv(A)
    offset = -inverse @ t
    coefficients = (*inverse[0], offset[0], *inverse[1], offset[1])
    return photo.transform(size, Image.AFFINE, coefficients, Image.BICUBIC, fillcolor=(90, 90, 90)), A, t


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR of images in [-1, 1] (peak-to-peak 2)."""
    return float(10 * torch.log10(4 / (a - b).square().mean()))


def eyes(landmarks) -> np.ndarray:
    lm = np.asarray(landmarks)
    return np.stack([lm[36:42].mean(axis=0), lm[42:48].mean(axis=0)])


TRANSFORMS = [(12.0, 1.8, (60, -40)), (-8.0, 0.8, (-150, 90)), (25.0, 2.6, (30, 20))]


@pytest.mark.parametrize("angle, scale, shift", TRANSFORMS, ids=[f"rot{a:g}-x{s:g}" for a, s, _ in TRANSFORMS])
def test_a_moved_photo_aligns_to_the_same_face(photo, aligner, reference, angle, scale, shift):
    moved, A, t = canvas(photo, angle, scale, shift)
    faces = aligner.align(moved)
    expected = A @ eyes(reference.transform.landmarks).mean(axis=0) + t
    face = min(faces, key=lambda f: np.hypot(*(eyes(f.transform.landmarks).mean(axis=0) - expected)))
    assert np.hypot(*(eyes(face.transform.landmarks).mean(axis=0) - expected)) < 0.05 * face.transform.qsize
    assert face.image.shape == (3, 256, 256) and face.image.dtype == torch.float32
    assert psnr(face.image, reference.image) >= 24   # measured 33-40 dB (BENCHMARKS.md)
    # the transform maps the moved photo's square onto the original's
    moved_quad = np.asarray(reference.transform.quad) @ A.T + t
    assert np.abs(np.asarray(face.transform.quad) - moved_quad).max() < 0.03 * face.transform.qsize


def test_landmarks_on_the_aligned_face_sit_where_ffhq_puts_them(photo, aligner):
    moved, _, _ = canvas(photo, 12.0, 1.8, (60, -40))
    face = aligner.align(moved)[0]
    wanted = face.transform.to_aligned(eyes(face.transform.landmarks))   # in [0, 1]^2
    # FFHQ's square is 4 eye distances wide here (2 |eye_to_eye| > 1.8 |eye_to_mouth|): eyes at x = 3/8 and 5/8
    assert np.abs(wanted[:, 0] - [0.375, 0.625]).max() < 0.005
    aligned = Image.fromarray(to_uint8(face.image).permute(1, 2, 0).numpy())
    plain = FaceAligner(size=256, refine=False)   # one landmark pass, as anyone would find them
    found = eyes(plain.landmarks(aligned, plain.detect(aligned)[0].box)) / 256
    assert np.abs(found - wanted).max() < 0.02   # within 2% of the width; measured 0.1%


def test_paste_back_of_the_unedited_face_gives_the_photo_back(photo, reference):
    out = paste_back(photo, reference.image, reference.transform)
    assert out.size == photo.size and out is not photo
    a, b = np.asarray(photo, dtype=np.float64), np.asarray(out, dtype=np.float64)
    xs, ys = np.meshgrid(np.arange(photo.width) + 0.5, np.arange(photo.height) + 0.5)
    uv = reference.transform.to_aligned(np.stack([xs, ys], axis=-1).reshape(-1, 2))
    weight = face_mask(reference.transform, torch.as_tensor(uv, dtype=torch.float32)).reshape(a.shape[:2]).numpy()
    inside = weight > 0.99
    assert inside.sum() > 5000
    mse = ((a - b)[inside] ** 2).mean()
    assert 10 * np.log10(255 ** 2 / mse) > 30   # measured 36.2 dB at 256 px
    assert np.array_equal(a[weight == 0], b[weight == 0])   # nothing outside the mask moves
    # a 64 px inversion of the face goes back through the same transform
    small = torch.nn.functional.interpolate(reference.image[None], size=64, mode="bilinear", antialias=True)[0]
    assert paste_back(photo, small, reference.transform).size == photo.size


def test_region_only_shrink_matches_the_whole_photo_procedure(photo, reference):
    """Step 1 on the kept region only gives the script's whole-photo result up to one 8-bit level (Pillow may
    run the two resampling passes in another order for a box, rounding in between differently)."""
    for box, k, padded in (((0, 0, 512, 512), 3, False), ((150, 60, 330, 400), 3, True)):
        part = photo.crop(box)
        part = part.resize((part.width * k, part.height * k), Image.LANCZOS)   # a face large enough to be shrunk
        landmarks = (np.asarray(reference.transform.landmarks) - box[:2]) * k
        (fast, fields), (slow, same) = ffhq_align(part, landmarks, 64), ffhq_align(part, landmarks, 64,
                                                                                   region_only=False)
        assert fields["shrink"] == 4 and fields == same and (min(fields["pad"]) > 0) == padded
        difference = np.abs(np.asarray(fast, dtype=int) - np.asarray(slow, dtype=int))
        assert difference.max() <= 1 and difference.mean() < 0.2


def test_a_photo_without_a_face_is_an_error_naming_it(aligner, tmp_path):
    path = tmp_path / "wall.png"
    Image.fromarray(np.full((300, 400, 3), 128, np.uint8)).save(path)
    with pytest.raises(FaceNotFoundError, match=r"wall\.png: no face found \(400x300; dlib hog detector"):
        aligner.align_file(path)


def test_every_face_of_a_photo_largest_first(photo, aligner):
    group = Image.new("RGB", (1000, 560), (90, 90, 90))
    group.paste(photo.resize((358, 358), Image.LANCZOS), (20, 100))   # the smaller face on the left
    group.paste(photo, (470, 20))
    faces = aligner.align(group)
    assert [f.transform.face for f in faces] == [0, 1]
    assert faces[0].transform.qsize > faces[1].transform.qsize * 1.3
    assert np.asarray(faces[0].transform.quad)[:, 0].min() > 470 > np.asarray(faces[1].transform.quad)[:, 0].max()


def test_the_cnn_detector_finds_the_face_too(photo, reference):
    cnn = FaceAligner(size=256, detector="cnn", upsample=0)
    face = cnn.align(photo)[0]
    assert face.transform.score > 0.5
    assert psnr(face.image, reference.image) > 24   # the same face, landmarks from another start box


def test_missing_landmark_model_names_the_file_and_what_to_do(monkeypatch, tmp_path):
    import latentspaces.dlib_models as dlib_models
    from latentspaces.errors import MissingWeightsError

    monkeypatch.setattr(dlib_models, "models_dir", lambda instead: tmp_path)
    with pytest.raises(MissingWeightsError, match=rf"shape_predictor_68_face_landmarks.dat not found at "
                                                  rf"{tmp_path}.*align the faces with another tool"):
        FaceAligner()


def test_read_photo_is_the_full_upright_8_bit_photo(photo, tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6   # stored sideways: turn 90 degrees clockwise to show
    photo.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    upright, notes = read_photo(tmp_path / "phone.jpg")
    assert upright.mode == "RGB" and upright.size == photo.size and "turned upright" in notes[0]
    assert np.abs(np.asarray(upright, dtype=int) - np.asarray(photo, dtype=int)).mean() < 4   # JPEG error only
    Image.fromarray((np.asarray(photo.convert("L"), dtype=np.uint16) * 257)).save(tmp_path / "deep.png")
    deep, notes = read_photo(tmp_path / "deep.png")
    assert deep.mode == "RGB" and "rounded to 8 bits" in notes[-1]
    assert np.array_equal(np.asarray(deep)[..., 0], np.asarray(photo.convert("L")))


def test_a_relative_photo_path_is_read_beside_the_alignment_file(reference, tmp_path):
    """A folder holding the photo, its faces and alignment.json can move (the browser editor's replay bundle)."""
    from dataclasses import replace
    folder = tmp_path / "moved"
    folder.mkdir()
    save_alignment(folder / "alignment.json", [("astronaut_0.png", replace(reference.transform, photo="astronaut.png")),
                                               ("b_0.png", replace(reference.transform, photo="/abs/b.png"))])
    back = load_alignment(folder / "alignment.json")
    assert back["astronaut_0.png"].photo == str(folder.resolve() / "astronaut.png")
    assert back["b_0.png"].photo == "/abs/b.png"   # absolute paths are kept as written


def test_the_transform_file_round_trips_and_refuses_garbage(reference, tmp_path):
    path = tmp_path / "alignment.json"
    save_alignment(path, [("astronaut_0.png", reference.transform)])
    back = load_alignment(path)["astronaut_0.png"]
    assert back == reference.transform and isinstance(back, FaceTransform)
    doc = json.loads(path.read_text())
    doc["faces"][0]["quad"][2] = [0, 0]
    path.write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="astronaut_0.png: quad .* is not a parallelogram"):
        load_alignment(path)
    path.write_text("{not json")
    with pytest.raises(CheckpointError, match="alignment.json: not a JSON alignment file"):
        load_alignment(path)


def test_align_command_writes_the_faces_and_the_transforms(photo, tmp_path, capsys):
    photo.save(tmp_path / "astronaut.png")
    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(tmp_path / "wall.png")
    out = tmp_path / "aligned"
    main(["align", str(tmp_path / "astronaut.png"), "--size", "64", "--out", str(out)])
    img, _ = read_photo(out / "astronaut_0.png")
    assert img.size == (64, 64)
    entry = load_alignment(out / "alignment.json")["astronaut_0.png"]
    assert entry.photo == str((tmp_path / "astronaut.png").resolve()) and entry.size == 64 and entry.face == 0
    with pytest.raises(SystemExit) as e:   # the faceless photo fails, the other is aligned again
        main(["align", str(tmp_path / "astronaut.png"), str(tmp_path / "wall.png"), "--size", "64", "--out", str(out)])
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]   # progress lines aside
    assert e.value.code == 1 and len(errors) == 1 and "1 of 2 photos gave no face" in errors[0] and "wall.png" in errors[0]
    assert list(load_alignment(out / "alignment.json")) == ["astronaut_0.png"]


@pytest.mark.slow
def test_align_invert_edit_paste_back_in_four_commands(photo, tmp_path, capsys):
    """The README walk-through, in W with a few steps (F/Z+ adds its 200-step mean-z search, not plumbing): the
    edited photo is the whole photo, changed only inside the face's square."""
    photo.save(tmp_path / "astronaut.png")
    out = tmp_path / "run"
    main(["align", str(tmp_path / "astronaut.png"), "--size", "128", "--out", str(out)])
    main(["invert", "--targets", str(out / "astronaut_0.png"), "--space", "W", "--steps", "3", "--out", str(out),
          "--device", "cpu"])
    main(["directions", "--method", "random", "--count", "1", "--kind", "w", "--out", str(out), "--device", "cpu"])
    main(["edit", "--codes", str(out / "codes.safetensors"), "--direction", str(out / "random_w.safetensors"),
          "--alphas=0,3", "--paste-back", "--out", str(out), "--device", "cpu"])
    edited = np.asarray(Image.open(out / "astronaut_random_0_+3.png"), dtype=np.int64)
    original = np.asarray(photo, dtype=np.int64)
    assert edited.shape == original.shape
    box = load_alignment(out / "alignment.json")["astronaut_0.png"].bounds()
    changed = np.abs(edited - original).max(axis=2) > 0
    ys, xs = np.nonzero(changed)
    assert changed.sum() > 1000
    assert xs.min() >= box[0] and xs.max() < box[2] and ys.min() >= box[1] and ys.max() < box[3]
    # invert --align does the first two at once; edit finds alignment.json beside the codes
    again = tmp_path / "again"
    main(["invert", "--align", "--targets", str(tmp_path / "astronaut.png"), "--space", "W", "--steps", "0", "--out",
          str(again), "--device", "cpu"])
    main(["edit", "--codes", str(again / "codes.safetensors"), "--direction", str(out / "random_w.safetensors"),
          "--alphas=2", "--paste-back", "--mask", "square", "--out", str(again), "--device", "cpu"])
    assert Image.open(again / "astronaut_random_0_+2.png").size == photo.size
    assert "wrote 1 photo with the edits pasted back" in capsys.readouterr().out


def test_paste_back_needs_codes_of_aligned_faces(tmp_path, capsys):
    import latentspaces as ls
    from latentspaces.directions import Direction, save_directions
    from latentspaces.fingerprints import generator_fingerprint

    G = ls.load_generator("default")
    ls.W(G).mean(1).save(tmp_path / "codes.safetensors", space="W", generator_fingerprint=generator_fingerprint(G))
    save_directions(tmp_path / "d.safetensors", [Direction(torch.randn(512), "w", name="d0")])
    argv = ["edit", "--codes", str(tmp_path / "codes.safetensors"), "--direction", str(tmp_path / "d.safetensors"),
            "--paste-back", "--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and "no alignment.json beside" in capsys.readouterr().err
    empty = {"format": "latentspaces.alignment", "version": 1, "faces": []}
    (tmp_path / "alignment.json").write_text(json.dumps(empty))
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and "does not record its target files" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_the_walkthrough_tool_draws_its_figure(tmp_path):
    """`python -m experiments.tools.walkthrough` (few steps and samples): the four commands, then the figure."""
    from experiments.tools import walkthrough

    figure = tmp_path / "docs" / "walkthrough.png"
    walkthrough.main(["--out", str(tmp_path / "run"), "--figure", str(figure), "--steps", "2", "--samples", "2000"])
    assert (tmp_path / "run" / "astronaut_ganspace_0_+2.png").is_file()
    with Image.open(figure) as img:
        assert img.width > 600 and img.height > 300
    assert figure.stat().st_size < 300_000
