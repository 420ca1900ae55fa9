"""Hardening, second round: every case of the probe of 2,269 mutated files, made here and refused cleanly.

No hostile file may hang a command, take memory before it is refused, or load a network that renders
nonsense: record graphs are walked within a budget, archives and views are sized before anything is
inflated, NVlabs attributes are compared by their place in the network, every loaded network passes an
output check, shipped assets carry a sha256, and every refusal is one CheckpointError line naming the file.
"""

from __future__ import annotations

import argparse
import json
import math
import zipfile

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import latentspaces as ls
from encoders import load_encoder
from encoders.io import encoder_path
from experiments.argtypes import out_dir
from experiments.tools import fuzz_checkpoints as fz
from latentspaces import assets
from latentspaces.checkpoints.rosinality import save_rosinality
from latentspaces.directions.io import load_directions
from latentspaces.errors import MAX_MESSAGE, CheckpointError, one_line
from latentspaces.spaces.code import Code, read_code_file


def _rewrite(src, dst, meta_fn=None, tensor_fn=None):
    """A copy of a safetensors file with its header and/or tensors edited."""
    with safe_open(str(src), framework="pt") as f:
        meta, tensors = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
    if meta_fn:
        meta_fn(meta)
    if tensor_fn:
        tensor_fn(tensors)
    save_file(tensors, str(dst), metadata=meta)
    return dst


def _config(field, value):
    def edit(meta):
        config = json.loads(meta["config"])
        config[field] = value
        meta["config"] = json.dumps(config)
    return edit


def _one_line_naming(error: Exception, path) -> str:
    text = str(error)
    assert "\n" not in text and len(text) <= MAX_MESSAGE and str(path) in text, text
    return text


def _small():
    return ls.Generator(z_dim=8, w_dim=8, resolution=16, mapping_layers=2, channels={4: 8, 8: 8, 16: 8})


# ---------------------------------------------------------------------------------- sizes before inflation
def test_compressed_zip_records_are_refused_before_torch_inflates_them(tmp_path):
    plain = tmp_path / "plain.pt"
    save_rosinality(_small(), str(plain))
    bomb = tmp_path / "bomb.pt"
    bomb.write_bytes(fz.mutate_bytes.__globals__["deflate_archive"](plain.read_bytes()))
    assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in zipfile.ZipFile(bomb).infolist())
    with pytest.raises(CheckpointError, match="compressed .* torch.save stores records uncompressed") as info:
        ls.load_generator(bomb)
    _one_line_naming(info.value, bomb)
    ls.load_generator(plain)   # the same records stored: loads


def test_legacy_torch_streams_are_sized_before_torch_allocates(tmp_path):
    """torch's legacy reader allocates a storage at the size its reference declares, and reads a string at its
    declared length, before reading the data: a damaged size field is refused first, nothing allocated."""
    from latentspaces.torch_files import legacy_declared_bytes

    path = tmp_path / "legacy.pt"
    torch.save({"g_ema": {"w": torch.zeros(1000)}}, path, _use_new_zipfile_serialization=False)
    data = path.read_bytes()
    numel = b"X\x03\x00\x00\x00cpuq\x08M\xe8\x03"   # the storage reference's location 'cpu', then numel 1000
    assert legacy_declared_bytes(str(path)) == 4000 and data.count(numel) == 1
    huge = tmp_path / "huge_numel.pt"
    huge.write_bytes(data.replace(numel, numel[:-3] + b"J\x00\x00\x00\x40"))            # numel 2^30: 4 GiB of float32
    with pytest.raises(CheckpointError, match=r"its tensors declare 4096\.0 MiB, but the file holds"):
        ls.load_generator(huge)
    key = data.index(b"X\x05\x00\x00\x00g_ema")                                       # BINUNICODE of length 5
    long_string = tmp_path / "long_string.pt"
    long_string.write_bytes(data[:key + 1] + b"\xff\xff\xff\x7f" + data[key + 5:])     # length 2^31 - 1
    with pytest.raises(CheckpointError, match="a legacy torch.save stream whose objects cannot be read"):
        ls.load_generator(long_string)


def test_a_thin_generator_declaring_8192_px_is_refused_before_it_is_built(tmp_path):
    """15 KB of weights (one channel per layer, no noise maps): building it would allocate 0.7 GB of noise
    buffers and rendering the output check's image about 10 GB; the budget counts both first."""
    G = ls.Generator(z_dim=8, w_dim=8, resolution=8192, mapping_layers=1,
                     channels={2**k: 1 for k in range(2, 14)})
    doc = fz.make_doc(G, "rosinality")
    doc.tensors = {k: v for k, v in doc.tensors.items() if not k.startswith("noises.")}
    path = tmp_path / "thin8192.pt"
    fz.write_doc(doc, path)
    assert path.stat().st_size < 100_000
    with pytest.raises(CheckpointError, match=r"12.0 GiB to render one image, over max_bytes = 2.0 GiB") as info:
        ls.load_generator(path)
    _one_line_naming(info.value, path)


@pytest.mark.parametrize("make, match", [
    (lambda: {"comp": torch.randn(1, 1, 512).expand(10**6, 1, 512), "std": torch.ones(10**6), "mean": torch.zeros(512)},
     r"'comp' is a view of shape \[1000000, 1, 512\]"),
    (lambda: torch.randn(1).expand(2**20, 2**13), r"view of shape \[1048576, 8192\] over 4 stored bytes"),
    (lambda: torch.randn(512).to_sparse(), "sparse_coo tensor"),
    (lambda: torch.empty(512, device="meta"), "meta tensor"),
    (lambda: torch.zeros(512, dtype=torch.int64), "dtype torch.int64; expected a floating-point tensor"),
    (lambda: {"comp": torch.randn(3, 1, 64), "std": torch.ones(3, dtype=torch.int32)}, "must be floating-point"),
], ids=["expanded-ganspace", "stride0", "sparse", "meta", "int", "int-std"])
def test_direction_files_that_would_expand_or_cannot_compute_are_one_line(tmp_path, make, match):
    path = tmp_path / "direction.pt"
    torch.save(make(), path)
    with pytest.raises(CheckpointError, match=match) as info:
        load_directions(path)
    _one_line_naming(info.value, path)


# ---------------------------------------------------------------------------------- NVlabs attributes by place
def _nvlabs(tmp_path, edit):
    doc = fz.make_doc(_small(), "nvlabs")
    edit(doc)
    path = tmp_path / "g.pkl"
    fz.write_doc(doc, path)
    return path


def test_an_unedited_nvlabs_layout_loads(tmp_path):
    ls.load_generator(_nvlabs(tmp_path, lambda doc: None))


@pytest.mark.parametrize("field, value, match", [
    ("synthesis.b8.conv0:act_gain", 1.0, r"synthesis.b8.conv0.act_gain = 1.0, but this generator computes with 1.41"),
    ("synthesis.b8.conv1:padding", 0, r"synthesis.b8.conv1.padding = 0, but .* 1"),
    ("synthesis.b16.conv0:up", 1, r"synthesis.b16.conv0.up = 1, but .* 2"),
    ("synthesis.b16:architecture", "resnet", r"synthesis.b16.architecture = 'resnet', but .* 'skip'"),
    ("synthesis.b8:in_channels", 3, r"synthesis.b8.in_channels = 3, but .* 8"),
])
def test_every_attribute_nvlabs_forward_reads_is_compared(tmp_path, field, value, match):
    path = _nvlabs(tmp_path, lambda doc: doc.fields.__setitem__(field, value))
    with pytest.raises(CheckpointError, match=match) as info:
        ls.load_generator(path)
    _one_line_naming(info.value, path)


@pytest.mark.parametrize("place, name", [("synthesis.b8.conv0", "ToRGBLayer"), ("synthesis.b8.conv0", "MyLayer"),
                                         ("mapping.fc0", "SynthesisLayer"), ("synthesis.b8.conv0", "x" * 120_000)])
def test_a_renamed_class_does_not_skip_its_layers_checks(tmp_path, place, name):
    """Attributes are looked up by the record's place in the network; its class name is checked too."""
    def edit(doc):
        doc.modules[place] = name
        doc.fields[f"{place}:conv_clamp" if place.startswith("synthesis") else f"{place}:bias_gain"] = 7.0
    path = _nvlabs(tmp_path, edit)
    with pytest.raises(CheckpointError, match=rf"the module at {place} is a .*, expected NVlabs'") as info:
        ls.load_generator(path)
    _one_line_naming(info.value, path)


def test_shared_records_thirty_levels_deep_are_refused_at_once(tmp_path):
    """2^30 paths in a few KB, inside the depth budget: the path budget refuses it (40 levels: the depth one)."""
    path = _nvlabs(tmp_path, lambda doc: doc.extra.__setitem__("dag_levels", 30))
    assert path.stat().st_size < 100_000
    with pytest.raises(CheckpointError, match="more than 20,000 module paths"):
        ls.load_generator(path)


# ---------------------------------------------------------------------------------- output checks
def test_a_plausible_gain_with_absurd_images_is_refused(tmp_path):
    """mapping_lr_multiplier = 100 is inside the allowed range; with the stored weights it renders 1e31."""
    path = _rewrite(assets.asset_path("default"), tmp_path / "g.safetensors", _config("mapping_lr_multiplier", 100.0))
    with pytest.raises(CheckpointError, match=r"renders values of magnitude .*e\+\d\d, over 1e\+03") as info:
        ls.load_generator(path)
    _one_line_naming(info.value, path)


def test_a_head_with_a_negative_batchnorm_variance_is_refused(tmp_path):
    def negate(tensors):
        key = sorted(k for k in tensors if k.endswith("running_var"))[0]
        tensors[key] = -tensors[key]
    path = _rewrite(encoder_path("default-hfgi"), tmp_path / "hfgi.safetensors", tensor_fn=negate)
    with pytest.raises(CheckpointError, match="every weight is finite, but the HFGI's .* is not") as info:
        load_encoder(path)
    _one_line_naming(info.value, path)


@pytest.mark.parametrize("name, field, value, match", [
    ("default-f", "f_resolution", 4096, r"f_resolution = 4096 must be a power of two in \[4, 128\]"),
    ("default-f", "layer", "x", "layer = 'x' is not a conv layer"),
    ("default-f", "layer", "b16.conv0", "puts out 16 px features, not f_resolution = 8"),
    ("default-sdic", "layer", "b16.conv0", "puts out 16 px features, not layer_resolution = 32"),
    ("default-sdic", "num_ws", 0, r"num_ws = 0 must be an integer in \[1, 64\]"),
    ("default-wplus", "input_size", 4096, "input_size = 4096 must be a power of two"),
    ("default-reganie", "resolution", 3, "resolution = 3 must be a power of two"),
    ("default-gradstyle", "top_mu", 0.0, r"top_mu = 0.0 must be a number in \(0.0, 1.0\]"),
])
def test_encoder_configs_are_validated_before_building(tmp_path, name, field, value, match):
    path = _rewrite(encoder_path(name), tmp_path / "net.safetensors", _config(field, value))
    with pytest.raises(CheckpointError, match=match) as info:
        load_encoder(path)
    _one_line_naming(info.value, path)


def test_every_shipped_network_passes_its_own_output_check():
    for name in assets.names("encoder") + assets.names("head"):
        net = load_encoder(name)
        outputs = net.probe()
        assert outputs and all(bool(torch.isfinite(v).all()) for v in outputs.values()), name


# ---------------------------------------------------------------------------------- integrity
def test_shipped_assets_match_their_recorded_sha256():
    from latentspaces.fingerprints import file_sha256
    for name, asset in assets.ASSETS.items():
        assert len(asset.sha256) == 64, name
        assert file_sha256(assets.ASSET_DIR / asset.file) == asset.sha256, name


def test_a_changed_shipped_asset_is_refused(tmp_path, monkeypatch):
    copy = tmp_path / assets.ASSETS["default"].file
    data = bytearray((assets.ASSET_DIR / assets.ASSETS["default"].file).read_bytes())
    data[-1000] ^= 1   # one bit of one weight
    copy.write_bytes(bytes(data))
    monkeypatch.setattr(assets, "ASSET_DIR", tmp_path)
    with pytest.raises(CheckpointError, match="the shipped asset 'default' does not match its recorded sha256"):
        ls.load_generator("default")


def test_a_users_sidecar_sha256_is_checked_when_present(tmp_path):
    from latentspaces.fingerprints import file_sha256
    path = tmp_path / "g.pt"
    save_rosinality(_small(), str(path))
    sidecar = tmp_path / "g.pt.sha256"
    sidecar.write_text(f"{file_sha256(path)}  g.pt\n")
    ls.load_generator(path)
    sidecar.write_text(f"{'0' * 64}  g.pt\n")
    with pytest.raises(CheckpointError, match="the file does not match its recorded sha256"):
        ls.load_generator(path)
    sidecar.write_text("not a digest\n")
    with pytest.raises(CheckpointError, match="not a sha256 file"):
        ls.load_generator(path)


# ---------------------------------------------------------------------------------- error types and sizes
def test_messages_are_one_line_capped_keeping_the_file_and_the_advice():
    text = one_line("/data/g.pkl: refused " + "x" * 120_000 + "\n\nuse a .pt instead")
    assert len(text) == MAX_MESSAGE and "\n" not in text
    assert text.startswith("/data/g.pkl: refused") and text.endswith("use a .pt instead")
    assert str(CheckpointError("a\nb  c")) == "a b c"


def test_foreign_files_with_the_wrong_structure_are_checkpoint_errors(tmp_path):
    code = tmp_path / "code.safetensors"
    Code(w=torch.randn(2, 4, 8)).save(code, space="WPlus")
    bad_meta = _rewrite(code, tmp_path / "meta.safetensors", lambda m: m.__setitem__("meta", "[1, 2]"))
    with pytest.raises(CheckpointError, match="header fields meta .* hold list"):
        read_code_file(bad_meta)

    from latentspaces.directions import Direction
    from latentspaces.directions.io import save_directions
    own = tmp_path / "dirs.safetensors"
    save_directions(own, [Direction(torch.randn(8), "w", name="a", method="x")])
    for edit, match in ((lambda m: m.pop("directions"), "without its 'directions' header"),
                        (lambda m: m.__setitem__("directions", "[1]"), "must be a non-empty list of objects")):
        bad = _rewrite(own, tmp_path / "bad.safetensors", edit)
        with pytest.raises(CheckpointError, match=match) as info:
            load_directions(bad)
        _one_line_naming(info.value, bad)

    e4e = tmp_path / "e4e.pt"
    torch.save({"state_dict": [1, 2, 3], "opts": {}}, e4e)
    with pytest.raises(CheckpointError, match="state_dict is a list, expected a dict of tensors"):
        load_encoder(e4e)


def test_out_on_a_dangling_symlink_says_so(tmp_path):
    link = tmp_path / "results"
    link.symlink_to(tmp_path / "gone")
    with pytest.raises(argparse.ArgumentTypeError, match="is a link to .*gone, which does not exist"):
        out_dir(str(link))
    (tmp_path / "file").write_text("x")
    with pytest.raises(argparse.ArgumentTypeError, match="is a file, so"):
        out_dir(str(tmp_path / "file" / "sub"))


def test_targets_the_range_check_reads_right():
    """An all-white target is a valid [-1, 1] image; a [0, 1] image with one pixel at -0.01 is still [0, 1]."""
    from optimizers import HybridInverter
    G = ls.load_generator("default")
    inverter = HybridInverter(ls.W(G), steps=0, progress=False)
    inverter.invert(torch.ones(1, 3, 64, 64))
    x = torch.linspace(0, 1, 3 * 64 * 64).reshape(1, 3, 64, 64).clone()
    x[0, 0, 0, 0] = -0.01
    with pytest.raises(ValueError, match=r"images in \[0, 1\]\? convert with x \* 2 - 1"):
        inverter.invert(x)


def test_a_discriminator_declaring_a_huge_resolution_is_refused(tmp_path):
    path = _rewrite(assets.asset_path("default-discriminator"), tmp_path / "d.safetensors",
                    _config("resolution", 65536))
    from latentspaces.discriminator import load_discriminator
    with pytest.raises(CheckpointError, match=r"power of two in \[8, 2048\]"):
        load_discriminator(path)


@pytest.mark.slow
def test_the_mixed_family_fuzz_finds_nothing():
    """A few hundred damaged direction and code files, sandboxed: only clean refusals or sound loads."""
    report = fz.fuzz(n=160, seed=20261206, limit_mb=1024, timeout=20, families=("directions", "codes"))
    assert not report.failures, report.failures[:3]
    assert report.counts["refused"] > 80 and report.counts["loaded"] > 10
    assert math.isfinite(report.peak_mb["directions"]) and report.peak_mb["directions"] < 200


def test_a_torch_archive_with_a_damaged_record_is_refused_by_its_crc(tmp_path):
    """torch.load does not check the zip records' CRC-32: a flipped byte in a tensor would load as a changed weight.
    The one door for torch.save files checks every record first."""
    import zipfile

    from latentspaces.torch_files import load_torch_file
    path = tmp_path / "d.pt"
    torch.save({"d": torch.arange(4096, dtype=torch.float32)}, path)
    assert torch.equal(load_torch_file(path, "direction file")["d"], torch.arange(4096, dtype=torch.float32))
    with zipfile.ZipFile(path) as z:
        info = max(z.infolist(), key=lambda i: i.file_size)   # the tensor's data record
    data = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)   # past the local header
    data[start + info.file_size // 2] ^= 0x01
    path.write_bytes(bytes(data))
    loaded = torch.load(path, weights_only=True)["d"]   # torch itself reads the changed weight
    assert not torch.equal(loaded, torch.arange(4096, dtype=torch.float32))
    with pytest.raises(CheckpointError, match="fails its CRC-32 check"):
        load_torch_file(path, "direction file")
