"""The tools under experiments/tools: the shipped held-out targets are what make_heldout_targets writes."""

from __future__ import annotations

import torch

from experiments.tools import make_heldout_targets
from latentspaces.assets import asset_path, heldout_targets
from latentspaces.images import from_uint8
from latentspaces.storage import load_tensors


def test_make_heldout_targets_reproduces_the_shipped_file(tmp_path):
    path = tmp_path / "targets.safetensors"
    make_heldout_targets.main(["--n", "4", "--out", str(path)])
    made, header = load_tensors(path, "latentspaces.images")
    shipped, _ = load_tensors(asset_path("heldout-targets"))
    assert made["images"].dtype == torch.uint8 and made["images"].shape == (4, 3, 64, 64)
    assert torch.equal(made["images"], shipped["images"][:4])
    assert header["source"] == "dcgan_faces heldout"
    torch.testing.assert_close(heldout_targets(4), from_uint8(made["images"]), rtol=0, atol=0)
