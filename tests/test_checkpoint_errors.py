"""load_generator refuses broken, foreign and hostile files with clear messages and no side effects."""

from __future__ import annotations

import json
import os
import pickle
import struct

import pytest
import torch
from safetensors.torch import save_file

import latentspaces as ls
from conftest import fixture_path
from latentspaces import CheckpointError


class _Payload:
    """Pickles as a call that would create a sentinel file if ever executed."""

    def __init__(self, sentinel):
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return (os.system, (f"touch {self.sentinel}",))


def test_missing_file_and_unknown_name(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a shipped name"):
        ls.load_generator(tmp_path / "nope.pt")


@pytest.mark.parametrize(
    "content, match",
    [
        (b"", "empty"),
        (b"\x1f\x8b\x08\x00" + b"\x00" * 40, "gzip"),
        (b'{"a": 1}', "JSON"),
        (bytes(range(7, 71)), "unknown content"),
    ],
)
def test_unrecognised_files(tmp_path, content, match):
    path = tmp_path / "bad.bin"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=match) as e:
        ls.load_generator(path)
    assert "Supported" in str(e.value)


def test_truncated_rosinality_checkpoint(tmp_path):
    path = tmp_path / "g.pt"
    torch.save({"g_ema": {"style.1.weight": torch.zeros(8, 8), "input.input": torch.zeros(1, 4, 4, 4)}}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated, corrupt"):
        ls.load_generator(path)


def test_torch_file_that_is_not_a_generator(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"model": {"fc.weight": torch.zeros(2, 2)}}, path)
    with pytest.raises(CheckpointError, match="not a rosinality StyleGAN2 generator"):
        ls.load_generator(path)


def test_incomplete_rosinality_state_dict(tmp_path):
    path = tmp_path / "partial.pt"
    torch.save({"g_ema": {"style.1.weight": torch.zeros(8, 8), "style.1.bias": torch.zeros(8),
                          "input.input": torch.zeros(1, 4, 4, 4)}}, path)
    with pytest.raises(CheckpointError, match="incomplete|missing"):
        ls.load_generator(path)


def test_hostile_torch_zip_is_refused_and_never_runs(tmp_path):
    sentinel = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"g_ema": _Payload(sentinel)}, path)
    with pytest.raises(CheckpointError, match="weights_only=True"):
        ls.load_generator(path)
    assert not sentinel.exists()


def test_hostile_plain_pickle_is_refused_and_never_runs(tmp_path):
    sentinel = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G_ema": _Payload(sentinel)}, protocol=4))
    with pytest.raises(CheckpointError, match="refused to load global 'posix.system'|refused to load global 'os.system'"):
        ls.load_generator(path)
    assert not sentinel.exists()


def test_truncated_nvlabs_pickle(tmp_path):
    data = fixture_path("nvlabs_ada_g32.pkl").read_bytes()
    path = tmp_path / "cut.pkl"
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="truncated"):
        ls.load_generator(path)


def test_pickle_without_generator(tmp_path):
    path = tmp_path / "nog.pkl"
    path.write_bytes(pickle.dumps({"D": None, "G": None}, protocol=4))
    with pytest.raises(CheckpointError, match="without a 'G_ema' or 'G'"):
        ls.load_generator(path)


def test_foreign_safetensors(tmp_path):
    path = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(path), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="not a latentspaces generator"):
        ls.load_generator(path)


def test_native_file_with_mismatched_weights(tmp_path):
    G = ls.Generator(z_dim=8, w_dim=8, resolution=8, mapping_layers=1, channels={4: 4, 8: 4})
    path = tmp_path / "g.safetensors"
    state = {k: v.contiguous() for k, v in G.state_dict().items()}
    del state["synthesis.b8.conv1.weight"]
    save_file(state, str(path), metadata={"format": "latentspaces.generator", "version": "1",
                                          "config": json.dumps(G.config)})
    with pytest.raises(CheckpointError, match="do not match the declared architecture"):
        ls.load_generator(path)


def test_truncated_native_file(tmp_path):
    G = ls.Generator(z_dim=8, w_dim=8, resolution=8, mapping_layers=1, channels={4: 4, 8: 4})
    path = tmp_path / "g.safetensors"
    ls.save_generator(G, path)
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    path.write_bytes(data[: 8 + n + 10])  # header intact, tensor data cut
    with pytest.raises(CheckpointError):
        ls.load_generator(path)


def test_safetensors_whose_length_prefix_looks_like_a_pickle(tmp_path):
    """A header of 0x280 bytes starts the file with 80 02, the bytes of a protocol-2 pickle."""
    G = ls.Generator(z_dim=8, w_dim=8, resolution=8, mapping_layers=1, channels={4: 4, 8: 4})
    path = tmp_path / "g.safetensors"
    ls.save_generator(G, path)
    from latentspaces.checkpoints import sniff_format

    assert sniff_format(path) == "safetensors"
    from safetensors.torch import save_file as sf

    for pad in range(0, 400, 7):  # vary the header length across the 0x280 boundary
        p = tmp_path / f"t{pad}.safetensors"
        sf({"x": torch.zeros(1)}, str(p), metadata={"pad": "a" * (560 + pad)})
        assert sniff_format(p) == "safetensors", pad
