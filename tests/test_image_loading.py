"""The one image reader (latentspaces.images): every kind of file converted exactly, or refused naming the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from latentspaces.errors import CheckpointError
from latentspaces.images import from_uint8, image_files, load_images, read_image

ONE_8BIT = 1 / 127.5   # one 8-bit step in [-1, 1]


def _rgb(path, size=(8, 6), color=(200, 30, 90), **save):
    Image.new("RGB", size, color).save(path, **save)
    return path


def _noise_png(path, size=64):
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
    return path


def test_8bit_rgb_is_read_exactly_as_uint8(tmp_path):
    a = np.random.default_rng(0).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    Image.fromarray(a).save(tmp_path / "x.png")
    x, notes = read_image(tmp_path / "x.png")
    assert x.dtype == torch.float32 and x.shape == (3, 6, 8) and notes == []
    assert torch.equal(x, from_uint8(torch.from_numpy(a).permute(2, 0, 1)))


def test_gray_and_palette_become_three_equal_channels(tmp_path):
    Image.new("L", (4, 4), 51).save(tmp_path / "l.png")
    x, _ = read_image(tmp_path / "l.png")
    assert torch.allclose(x, torch.full((3, 4, 4), 51 / 127.5 - 1))
    Image.new("RGB", (4, 4), (10, 20, 30)).quantize(colors=2).save(tmp_path / "p.png")
    x, _ = read_image(tmp_path / "p.png")
    assert torch.allclose(x[:, 0, 0], torch.tensor([10, 20, 30]) / 127.5 - 1)


@pytest.mark.parametrize("value, expected", [(32768, 0.0), (65535, 1.0), (0, -1.0), (16384, -0.5)])
def test_16bit_gray_png_is_scaled_by_65535(tmp_path, value, expected):
    Image.fromarray(np.full((5, 5), value, np.uint16)).save(tmp_path / "g.png")
    assert Image.open(tmp_path / "g.png").mode == "I;16"
    x, _ = read_image(tmp_path / "g.png")
    assert x.shape == (3, 5, 5) and torch.allclose(x, torch.full_like(x, expected), atol=1e-4)


def test_16bit_big_endian_tiff_and_resizing_keep_16bit_precision(tmp_path):
    a = np.full((8, 8), 40000, np.uint16)
    Image.fromarray(a.byteswap().view(">u2")).save(tmp_path / "g.tif")
    assert Image.open(tmp_path / "g.tif").mode == "I;16B"
    x, notes = read_image(tmp_path / "g.tif", resolution=4)
    assert x.shape == (3, 4, 4) and torch.allclose(x, torch.full_like(x, 40000 / 65535 * 2 - 1), atol=1e-5)
    assert any("resized 8x8 to 4x4" in n for n in notes)


def test_float_tiff_in_unit_range_is_read_and_said_other_ranges_refused(tmp_path):
    Image.fromarray(np.full((4, 4), 0.25, np.float32)).save(tmp_path / "f.tif")
    x, notes = read_image(tmp_path / "f.tif")
    assert torch.allclose(x, torch.full_like(x, -0.5)) and any("float32 values read" in n for n in notes)
    Image.fromarray(np.full((4, 4), 200.0, np.float32)).save(tmp_path / "hdr.tif")
    with pytest.raises(CheckpointError, match=r"hdr.tif: a float image with values in \[200, 200\]"):
        read_image(tmp_path / "hdr.tif")
    Image.fromarray(np.full((4, 4), np.nan, np.float32)).save(tmp_path / "nan.tif")
    with pytest.raises(CheckpointError, match="nan.tif: a float image with NaN"):
        read_image(tmp_path / "nan.tif")


def test_32bit_integer_tiff_is_refused(tmp_path):
    Image.fromarray(np.full((4, 4), 1000, np.int32)).save(tmp_path / "i.tif")
    with pytest.raises(CheckpointError, match="i.tif: a 32-bit integer image has no agreed white level"):
        read_image(tmp_path / "i.tif")


def test_exif_orientation_6_turns_the_photo_upright(tmp_path):
    img = Image.new("RGB", (16, 8), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 8, 8))  # left half red, right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view"
    img.save(tmp_path / "o.jpg", quality=100, exif=exif)
    x, notes = read_image(tmp_path / "o.jpg")
    assert x.shape == (3, 16, 8)  # portrait after the turn
    assert x[0, 3, 4] > 0.9 and x[2, 3, 4] < -0.9  # the left (red) half is now on top
    assert x[2, 12, 4] > 0.9 and x[0, 12, 4] < -0.9
    assert any("EXIF orientation 6" in n for n in notes)


def test_rgba_is_composited_on_white_and_said(tmp_path):
    a = np.zeros((2, 2, 4), np.uint8)
    a[..., 0] = 255
    a[0, 0, 3], a[0, 1, 3], a[1, :, 3] = 0, 128, 255
    Image.fromarray(a, "RGBA").save(tmp_path / "a.png")
    x, notes = read_image(tmp_path / "a.png")
    assert torch.allclose(x[:, 0, 0], torch.ones(3))                               # transparent: white
    assert torch.allclose(x[:, 1, 1], torch.tensor([1.0, -1.0, -1.0]))             # opaque: red
    assert torch.allclose(x[:, 0, 1], torch.tensor([1.0, 127 / 127.5 - 1, 127 / 127.5 - 1]), atol=ONE_8BIT)
    assert any("composited over RGB (255, 255, 255)" in n for n in notes)
    black, _ = read_image(tmp_path / "a.png", background=(0, 0, 0))
    assert torch.allclose(black[:, 0, 0], -torch.ones(3))
    Image.new("RGBA", (2, 2), (1, 2, 3, 255)).save(tmp_path / "opaque.png")
    assert read_image(tmp_path / "opaque.png")[1] == []  # an opaque alpha channel loses nothing: no note


def test_la_and_palette_transparency_are_composited(tmp_path):
    Image.new("LA", (3, 3), (0, 0)).save(tmp_path / "la.png")
    x, notes = read_image(tmp_path / "la.png")
    assert torch.allclose(x, torch.ones_like(x)) and notes
    p = Image.new("P", (3, 3), 0)
    p.putpalette([0, 0, 0, 10, 200, 10] + [0] * 762)
    p.putpixel((1, 1), 1)
    p.save(tmp_path / "p.png", transparency=0)
    x, notes = read_image(tmp_path / "p.png")
    assert torch.allclose(x[:, 0, 0], torch.ones(3)) and notes
    assert torch.allclose(x[:, 1, 1], torch.tensor([10, 200, 10]) / 127.5 - 1)


def test_cmyk_progressive_jpeg_and_webp(tmp_path):
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "c.jpg", quality=100)
    x, notes = read_image(tmp_path / "c.jpg")
    assert torch.allclose(x[:, 4, 4], torch.tensor([1.0, -1.0, -1.0]), atol=0.05)  # red
    assert any("CMYK" in n for n in notes)
    _rgb(tmp_path / "prog.jpg", color=(200, 30, 90), quality=100, progressive=True)
    x, _ = read_image(tmp_path / "prog.jpg")
    assert torch.allclose(x[:, 3, 3], torch.tensor([200, 30, 90]) / 127.5 - 1, atol=4 * ONE_8BIT)
    _rgb(tmp_path / "w.webp", color=(200, 30, 90), lossless=True)
    x, _ = read_image(tmp_path / "w.webp")
    assert torch.allclose(x[:, 3, 3], torch.tensor([200, 30, 90]) / 127.5 - 1)


def test_big_jpeg_is_decoded_in_draft_mode_and_matches_a_full_decode(tmp_path):
    yy, xx = np.mgrid[0:1024, 0:1536]
    a = np.stack([xx % 256, yy % 256, (xx // 8) % 256], -1).astype(np.uint8)
    a = np.asarray(Image.fromarray(a).resize((96, 64)).resize((1536, 1024), Image.BILINEAR))  # smooth content
    Image.fromarray(a).save(tmp_path / "big.jpg", quality=95)
    x, notes = read_image(tmp_path / "big.jpg", resolution=64)
    assert x.shape == (3, 64, 64) and any("JPEG draft" in n for n in notes)
    full = Image.open(tmp_path / "big.jpg").convert("RGB").crop((256, 0, 1280, 1024)).resize((64, 64), Image.LANCZOS)
    ref = from_uint8(torch.from_numpy(np.asarray(full).copy()).permute(2, 0, 1))
    assert (x - ref).abs().mean() < 0.02


@pytest.mark.parametrize("make, match", [
    (lambda p: p.write_bytes(b"just some text\n"), "not an image file of the formats read here"),
    (lambda p: p.write_bytes(_noise_png(p.with_suffix(".full.png")).read_bytes()[:5000]),
     "truncated or corrupt image file"),
    (lambda p: p.mkdir(), "is a folder, not an image file"),
])
def test_unreadable_files_are_refused_naming_the_file(tmp_path, make, match):
    path = tmp_path / "bad.png"
    make(path)
    with pytest.raises(CheckpointError, match=match) as e:
        read_image(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_a_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="no image file at"):
        read_image(tmp_path / "nope.png")


def test_image_files_refuse_empty_entries_missing_paths_and_empty_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _rgb(tmp_path / "a.png")
    (tmp_path / "faces").mkdir()
    _rgb(tmp_path / "faces" / "b.png")
    _rgb(tmp_path / "faces" / ".hidden.png")
    (tmp_path / "faces" / "notes.txt").write_text("x")
    assert image_files(["a.png", "faces"]) == [Path("a.png"), Path("faces") / "b.png"]
    assert image_files("a.png") == [Path("a.png")]  # one path, not its characters
    with pytest.raises(ValueError, match="an empty entry"):
        image_files(["a.png", ""])  # "a.png," on the command line: would have read the current folder
    with pytest.raises(FileNotFoundError, match="no image file or folder at nope.png"):
        image_files(["nope.png"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty: a folder without image files"):
        image_files(["empty"])


def test_load_images_crops_resizes_stacks_and_prints_notes(tmp_path, capsys):
    _rgb(tmp_path / "wide.png", size=(12, 8))
    Image.new("RGBA", (8, 8), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    x = load_images([tmp_path / "wide.png", tmp_path / "clear.png"], 4)
    assert x.shape == (2, 3, 4, 4) and x.dtype == torch.float32
    assert torch.allclose(x[1], torch.ones(3, 4, 4))
    out = capsys.readouterr().out
    assert "center-cropped 12x8 to 8x8" in out and "resized 8x8 to 4x4" in out and "composited" in out


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG that declares width x height 8-bit gray pixels and holds none (a few dozen bytes): a reader that
    decodes before it looks at the header spends width x height bytes on it."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IEND", b""))


def test_an_image_declaring_more_pixels_than_the_budget_is_refused_from_its_header(tmp_path):
    from latentspaces.images import MAX_IMAGE_PIXELS
    path = tmp_path / "huge.png"
    _png_header_only(path, 13_000, 13_000)   # 169 Mpx declared, under Pillow's own bomb limit
    assert 13_000 ** 2 > MAX_IMAGE_PIXELS and path.stat().st_size < 100
    with pytest.raises(CheckpointError, match="13000x13000 pixels, more than the 80,000,000"):
        read_image(path, 64)
    _png_header_only(path, 8_000, 8_000)   # within the budget: read as far as its (missing) pixels go
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        read_image(path, 64)


def test_only_the_formats_named_are_opened_whatever_the_suffix(tmp_path):
    """An EPS named .png is refused by name: it never reaches Pillow's Ghostscript plugin."""
    from latentspaces.images import READ_FORMATS
    eps = tmp_path / "drawing.png"
    eps.write_text("%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto 10 10 lineto stroke\n")
    with pytest.raises(CheckpointError, match="not an image file of the formats read here"):
        read_image(eps, 64)
    assert "EPS" not in READ_FORMATS
    Image.new("RGB", (8, 8), (255, 0, 0)).save(tmp_path / "red.tif")   # a named format with its suffix reads
    assert read_image(tmp_path / "red.tif")[0].shape == (3, 8, 8)
