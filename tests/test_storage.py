"""The one storage layer: atomic writes, the header convention, uint8 images, and every saved object's
round trip through it (generator, discriminator, encoders and heads, directions, codes, P_N statistics)."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import latentspaces as ls
from encoders import SDIC, FEncoder, WPlusEncoder, load_encoder, save_encoder
from latentspaces.directions import ganspace, load_directions, save_directions
from latentspaces.discriminator import Discriminator, load_discriminator, save_discriminator
from latentspaces.images import from_uint8, to_uint8
from latentspaces.spaces import read_code_file
from latentspaces.errors import CheckpointError
from latentspaces.storage import atomic_path, atomic_write_text, load_tensors, read_header, save_tensors


def test_atomic_path_keeps_the_old_file_when_the_write_fails(tmp_path):
    path = tmp_path / "settings.json"
    atomic_write_text(path, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            with open(tmp, "w") as f:
                f.write("half of the new")
            raise RuntimeError("killed")
    assert path.read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["settings.json"]  # no temporary file left behind


def test_header_convention_round_trip_and_refusals(tmp_path):
    path = tmp_path / "x.safetensors"
    save_tensors(path, {"a": torch.arange(3.0)}, "latentspaces.test", 2, config={"k": [1, 2]}, note="text")
    tensors, header = load_tensors(path, "latentspaces.test", (2,))
    assert torch.equal(tensors["a"], torch.arange(3.0))
    assert header == {"format": "latentspaces.test", "version": "2", "config": {"k": [1, 2]}, "note": "text"}
    with pytest.raises(ls.CheckpointError, match="not a latentspaces.other file"):
        read_header(path, "latentspaces.other")
    with pytest.raises(ls.CheckpointError, match="version '2'; this library reads version 1"):
        read_header(path, "latentspaces.test", (1,))
    with pytest.raises(ValueError, match="reserved"):
        save_tensors(path, {}, "latentspaces.test", 1, **{"version": "3"})
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(path.read_bytes()[:40])  # truncated
    with pytest.raises(ls.CheckpointError, match="not a readable safetensors file"):
        read_header(junk)


def test_equal_tensors_and_header_always_give_the_same_bytes(tmp_path):
    # safetensors itself writes the header's metadata in a hash map's order: six saves, six byte strings.
    tensors = {"w": torch.randn(2, 3, dtype=torch.float64), "images": torch.arange(6, dtype=torch.uint8),
               "b": torch.ones(1)}
    header = {name: {"value": i, "text": "é ✓ \n"} for i, name in enumerate("qwertyuiop")}
    blobs = set()
    for i in range(6):
        save_tensors(tmp_path / f"{i}.safetensors", tensors, "latentspaces.test", 1, **header)
        blobs.add((tmp_path / f"{i}.safetensors").read_bytes())
    assert len(blobs) == 1
    blob = blobs.pop()
    n = int.from_bytes(blob[:8], "little")
    assert n % 8 == 0  # the data stays 8-byte aligned
    raw = json.loads(blob[8 : 8 + n])
    assert list(raw) == sorted(raw) and list(raw["__metadata__"]) == sorted(raw["__metadata__"])
    with safe_open(str(tmp_path / "0.safetensors"), framework="pt") as f:  # safetensors' own reader
        assert all(torch.equal(f.get_tensor(k), v) for k, v in tensors.items())
    loaded, read = load_tensors(tmp_path / "0.safetensors", "latentspaces.test", (1,))
    assert all(torch.equal(loaded[k], v) for k, v in tensors.items())
    assert read == {"format": "latentspaces.test", "version": "1", **header}


def test_uint8_conversions():
    u = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16)
    assert torch.equal(to_uint8(from_uint8(u)), u)
    x = torch.rand(2, 3, 8, 8) * 2.4 - 1.2  # out of range values are clamped
    back = from_uint8(to_uint8(x))
    assert (back - x.clamp(-1, 1)).abs().max() <= 1 / 255 + 1e-6
    with pytest.raises(TypeError, match="uint8"):
        from_uint8(x)


def test_generator_round_trip(small_G, tmp_path):
    path = tmp_path / "g.safetensors"
    ls.save_generator(small_G, path)
    G2 = ls.load_generator(path)
    assert read_header(path)["config"] == small_G.config
    z = torch.randn(2, small_G.z_dim)
    assert torch.equal(G2(z), small_G(z))


def test_discriminator_round_trip_keeps_its_whole_config(tmp_path):
    torch.manual_seed(0)
    D = Discriminator(16, {16: 8, 8: 8, 4: 8}, img_channels=1, mbstd_group=2).eval()
    path = tmp_path / "d.safetensors"
    save_discriminator(D, path)
    D2 = load_discriminator(path)
    assert D2.config == D.config and D2.config["img_channels"] == 1 and D2.config["mbstd_group"] == 2
    x = torch.randn(4, 1, 16, 16)
    assert torch.equal(D2(x), D(x))


@pytest.mark.parametrize("make", [
    lambda G: FEncoder.for_generator(G, "b8.conv0", (8, 8, 8)),
    lambda G: WPlusEncoder.for_generator(G, backbone="small", style_channels=8),
    lambda G: SDIC.for_generator(G, width=0.25),
], ids=["FEncoder", "WPlusEncoder", "SDIC"])
def test_encoder_and_head_round_trip(small_G, tmp_path, make):
    torch.manual_seed(0)
    net = make(small_G).eval()
    path = tmp_path / "e.safetensors"
    save_encoder(net, path, meta={"steps": 3})
    net2 = load_encoder(path)
    assert type(net2) is type(net) and net2.config == net.config and net2.meta == {"steps": 3}
    for k, v in net.state_dict().items():
        assert torch.equal(net2.state_dict()[k], v), k


def test_encoder_files_of_version_1_still_load(small_G, tmp_path):
    """Version 1 kept the class name as a plain string in the header (the shipped files are such)."""
    torch.manual_seed(0)
    enc = FEncoder.for_generator(small_G, "b8.conv0", (8, 8, 8)).eval()
    path = tmp_path / "v1.safetensors"
    save_file({k: v.contiguous() for k, v in enc.state_dict().items()}, str(path),
              metadata={"format": "latentspaces.encoder", "version": "1", "class": "FEncoder",
                        "config": json.dumps(enc.config), "meta": "{}"})
    assert load_encoder(path).config == enc.config


def test_directions_round_trip_and_earlier_files(small_G, tmp_path):
    dirs = ganspace(small_G, n_samples=2000, n_components=3, kind="z", scale_by_std=True)
    path = tmp_path / "d.safetensors"
    save_directions(path, dirs)
    back = load_directions(path)
    assert [d.name for d in back] == [d.name for d in dirs]
    assert all(torch.equal(a.vector, b.vector) and a.meta == b.meta for a, b in zip(dirs, back))
    old = tmp_path / "old.safetensors"  # written before the version field: JSON under 'directions' only
    save_file({"direction_0": dirs[0].vector}, str(old), metadata={
        "format": "latentspaces.directions", "directions": json.dumps([{"kind": "z", "layers": None, "name": "a",
                                                                       "method": "m", "meta": {}}])})
    (d,) = load_directions(old)
    assert d.kind == "z" and torch.equal(d.vector, dirs[0].vector)


def test_code_file_round_trip_and_legacy_formats(tmp_path):
    code = ls.Code(f=torch.randn(2, 4, 2, 2), z=torch.randn(2, 3, 5))
    images = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    path = tmp_path / "c.safetensors"
    code.save(path, space="FZPlus", images=images, steps=7)
    back = read_code_file(path)
    assert back.space == "FZPlus" and back.meta == {"steps": 7} and torch.equal(back.images, images)
    assert all(torch.equal(back.code[k], v) for k, v in code.items())
    assert torch.equal(ls.Code.load(path).z, code.z)
    # compare's earlier chunk files: code.-prefixed keys, plain-string metadata
    save_file({"code.z": code.z, "images": images}, str(tmp_path / "a.safetensors"),
              metadata={"space": "ZPlus", "start": "0", "steps": "3"})
    a = read_code_file(tmp_path / "a.safetensors")
    assert a.space == "ZPlus" and a.code.fields == ("z",) and a.meta["steps"] == "3"
    # invert's earlier files: plain field names
    save_file({"w": torch.randn(2, 6)}, str(tmp_path / "b.safetensors"), metadata={"space": "W", "generator": "x"})
    b = read_code_file(tmp_path / "b.safetensors")
    assert b.space == "W" and b.code.fields == ("w",) and b.images is None
    save_tensors(tmp_path / "e.safetensors", {"x": torch.zeros(1)}, "latentspaces.generator")
    with pytest.raises(ls.CheckpointError, match="not a latentspaces code file"):
        read_code_file(tmp_path / "e.safetensors")
    with pytest.raises(ValueError, match="uint8"):
        code.save(path, images=images.float())
    save_tensors(tmp_path / "n.safetensors", {"images": images}, "latentspaces.code")
    with pytest.raises(ls.CheckpointError, match="a code file without codes"):
        read_code_file(tmp_path / "n.safetensors")


def test_pn_statistics_cache_uses_the_header_convention(small_G, tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTSPACES_CACHE", str(tmp_path))
    a = ls.PNStats.fit(small_G, n_samples=2000, progress=False)
    (path,) = (tmp_path / "pn").glob("*.safetensors")
    assert read_header(path, "latentspaces.pn_stats")["n_samples"] == 2000
    b = ls.PNStats.fit(small_G, n_samples=2000, progress=False)
    assert torch.equal(a.mean, b.mean) and torch.equal(a.std, b.std)


def test_run_folders_still_export_the_image_file_functions():
    import experiments.runs
    import latentspaces.images

    assert experiments.runs.save_image_file is latentspaces.images.save_image_file
    assert experiments.runs.load_image_file is latentspaces.images.load_image_file


def test_a_flipped_byte_in_a_file_the_project_wrote_is_refused(tmp_path):
    """safetensors has no checksum: the storage layer records the sha256 of the tensor bytes and checks it on
    every read; a file without one (written before, or by someone else) still reads."""
    from latentspaces.storage import DATA_DIGEST, read_raw_header, save_tensors
    path = tmp_path / "w.safetensors"
    w = torch.arange(1000, dtype=torch.float32)
    save_tensors(path, {"w": w}, "test.format", 1, note="kept")
    tensors, header = load_tensors(path, "test.format")
    assert torch.equal(tensors["w"], w) and header["note"] == "kept" and DATA_DIGEST not in header
    assert len(read_raw_header(path)[DATA_DIGEST]) == 64
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x01   # one bit of the tensor's bytes
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="do not match the sha256 recorded when it was written"):
        load_tensors(path, "test.format")
    save_file({"w": w}, str(tmp_path / "plain.safetensors"), metadata={"format": "test.format", "version": "1"})
    assert torch.equal(load_tensors(tmp_path / "plain.safetensors", "test.format")[0]["w"], w)
    with pytest.raises(ValueError, match="reserved"):
        save_tensors(path, {"w": w}, "test.format", 1, data_sha256="x")
