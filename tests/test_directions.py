"""Direction finders and direction files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import latentspaces as ls
from latentspaces.directions import (Direction, ganspace, interfacegan, load_directions, orthogonalize,
                                     random_directions, save_directions, sefa)


@pytest.fixture(scope="module")
def G():
    from conftest import randomize_

    torch.manual_seed(2)
    G = ls.Generator(z_dim=32, w_dim=32, resolution=16, mapping_layers=3, channels={4: 16, 8: 16, 16: 8})
    return randomize_(G).eval().requires_grad_(False)


def test_ganspace_w_axes_are_orthonormal_and_ordered(G):
    dirs = ganspace(G, n_samples=5000, n_components=8)
    V = torch.stack([d.vector for d in dirs])
    assert torch.allclose(V @ V.T, torch.eye(8), atol=1e-4)
    stds = [d.meta["std"] for d in dirs]
    assert stds == sorted(stds, reverse=True) and all(d.kind == "w" for d in dirs)


def test_ganspace_z_directions_solve_eq6_least_squares(G):
    dirs = ganspace(G, n_samples=4000, n_components=4, kind="z", seed=3)
    w_dirs = ganspace(G, n_samples=4000, n_components=4, kind="w", seed=3)
    gen = torch.Generator().manual_seed(3)
    z = torch.randn(4000, 32, generator=gen).double()
    with torch.no_grad():
        w = G.mapping(z.float()).double()
    x = (w - w.mean(0)) @ torch.stack([d.vector for d in w_dirs]).double().T  # [M, K]
    for k, d in enumerate(dirs):
        # n_k = argmin_n sum_j ||n x_jk - z_j||^2, solved independently with lstsq per coordinate
        ref = torch.linalg.lstsq(x[:, k : k + 1], z).solution[0]
        assert d.kind == "z" and torch.allclose(d.vector.double(), ref, atol=1e-3)


def test_interfacegan_recovers_a_linear_attribute(G):
    u = torch.randn(32, generator=torch.Generator().manual_seed(5))
    u = u / u.norm()
    d = interfacegan(G, lambda img, ws: ws[:, 0] @ u, n_samples=3000, fraction=0.1, progress=False)
    assert d.kind == "w" and abs(d.vector.norm() - 1) < 1e-5
    assert torch.dot(d.vector, u) > 0.8  # W is anisotropic, so the max-margin normal is near, not equal to, u
    assert d.meta["val_accuracy"] > 0.95


def test_orthogonalize_removes_condition_components():
    a = torch.tensor([1.0, 1.0, 0.0])
    out = orthogonalize(a, [torch.tensor([1.0, 0.0, 0.0])])
    assert torch.allclose(out, torch.tensor([0.0, 1.0, 0.0]))
    with pytest.raises(ValueError, match="span"):
        orthogonalize(torch.tensor([1.0, 0.0, 0.0]), [torch.tensor([2.0, 0.0, 0.0])])


def test_sefa_matches_a_direct_eigendecomposition(G):
    names = ["b8.conv0", "b8.conv1"]
    dirs = sefa(G, layers=names, n_components=3)
    a = np.concatenate([G.synthesis.layer(n).affine.weight.double().numpy().T for n in names], axis=1)
    a = a / np.linalg.norm(a, axis=0, keepdims=True)
    vals, vecs = np.linalg.eig(a @ a.T)
    top = vecs[:, np.argsort(vals.real)[::-1][0]].real
    assert abs(abs(float(np.dot(top, dirs[0].vector.double().numpy()))) - 1) < 1e-5
    assert dirs[0].layers == [1, 2]  # w indices read by b8.conv0, b8.conv1


def test_random_directions_statistics():
    dirs = random_directions(200, 64, std=0.2, seed=1)
    v = torch.stack([d.vector for d in dirs])
    assert abs(v.std().item() - 0.2) < 0.01
    assert torch.equal(random_directions(1, 64, seed=1)[0].vector, dirs[0].vector)


def test_own_format_round_trip(tmp_path):
    dirs = [Direction(torch.randn(8), "z", name="a", method="random", meta={"x": 1}),
            Direction(torch.randn(4, 8), "w", layers=[0, 1, 2, 3], name="b", method="ganspace")]
    save_directions(tmp_path / "d.safetensors", dirs)
    back = load_directions(tmp_path / "d.safetensors")
    for a, b in zip(dirs, back):
        assert torch.equal(a.vector, b.vector) and (a.kind, a.layers, a.name, a.method, a.meta) == (b.kind, b.layers, b.name, b.method, b.meta)


def test_e4e_style_files(tmp_path):
    torch.save(torch.randn(1, 16), tmp_path / "age.pt")
    torch.save(torch.randn(18, 16), tmp_path / "wplus.pt")
    torch.save({"comp": torch.randn(5, 1, 16), "std": torch.rand(5) + 0.5, "mean": torch.zeros(1, 16)}, tmp_path / "pca.pt")
    (age,) = load_directions(tmp_path / "age.pt")
    assert age.vector.shape == (16,) and age.kind == "w" and age.name == "age"
    (wp,) = load_directions(tmp_path / "wplus.pt")
    assert wp.vector.shape == (18, 16)
    pca = load_directions(tmp_path / "pca.pt", layers=[0, 1, 2])
    raw = torch.load(tmp_path / "pca.pt")
    assert len(pca) == 5 and torch.allclose(pca[2].vector, raw["comp"][2, 0] * raw["std"][2]) and pca[2].layers == [0, 1, 2]
    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(ls.CheckpointError, match="unrecognised direction file"):
        load_directions(tmp_path / "other.pt")


def test_direction_files_saved_on_a_cuda_device_load_on_cpu():
    """tests/data/*.pt were written with torch.save from CUDA tensors on the lent H100."""
    from pathlib import Path

    data = Path(__file__).parent / "data"
    (b,) = load_directions(data / "boundary_1x512.pt")
    (w,) = load_directions(data / "wplus_18x512.pt")
    pca = load_directions(data / "ganspace_pca.pt")
    assert b.vector.device.type == "cpu" and b.vector.shape == (512,)
    assert w.vector.shape == (18, 512) and len(pca) == 4
    import zipfile

    with zipfile.ZipFile(data / "boundary_1x512.pt") as z:  # the file really records a CUDA location
        assert any(b"cuda" in z.read(n) for n in z.namelist() if n.endswith("data.pkl"))
