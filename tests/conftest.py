"""Shared test helpers: fixture locations and small random generators."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

# The commands choose their compute threads from the machine's load (latentspaces.threads); a test run is
# load itself, so the suite pins its own count and every command run in-process keeps it.
os.environ.setdefault("OMP_NUM_THREADS", str(torch.get_num_threads()))

def _skip_without_the_dcgan():
    """Tests of the default face domain need the DCGAN weights of the gan-face-generate wheel (`pip install
    --no-deps gan-face-generate`, as .ci/run does); without it they are skipped with that reason, not failed."""
    from latentspaces.errors import MissingWeightsError
    try:
        return (yield)
    except MissingWeightsError as e:
        if "gan-face-generate" not in str(e):
            raise
        pytest.skip(f"needs the default domain's DCGAN weights: {e}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    return (yield from _skip_without_the_dcgan())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    return (yield from _skip_without_the_dcgan())


def require_dcgan() -> None:
    """Skip a test whose subprocesses (torchrun ranks) draw the default domain when its weights are absent."""
    from latentspaces.datasets import dcgan_weights_path
    from latentspaces.errors import MissingWeightsError
    try:
        dcgan_weights_path()
    except MissingWeightsError as e:
        pytest.skip(f"needs the default domain's DCGAN weights: {e}")


def train(name: str, argv: list) -> None:
    """`latentspaces train NAME ARGV` in this process, its exceptions propagating (--debug) for the test to see."""
    from experiments.cli import main
    main(["--debug", "train", name, *argv])


REPO = Path(__file__).resolve().parents[1]
# Outputs of the two reference implementations (rosinality's and NVlabs' generators, random weights), kept in
# the repository so that a clone anywhere runs every test (tests/fixtures/README.md says how they were made).
FIXTURES = REPO / "tests" / "fixtures"


def fixture_path(name: str) -> Path:
    path = FIXTURES / name
    assert path.is_file(), f"reference fixture {path} is missing from the repository (tests/fixtures/README.md)"
    return path


def rosinality_fixture_state() -> tuple[dict, np.lib.npyio.NpzFile]:
    """Rebuild the rosinality fixture's weights from its spec (see tests/fixtures/README.md)."""
    spec = json.loads(fixture_path("rosinality_g64_spec.json").read_text())
    expected = np.load(fixture_path("rosinality_g64_expected.npz"))
    rng = np.random.default_rng(spec["seed"])
    blur = np.outer([1, 3, 3, 1], [1, 3, 3, 1]).astype(np.float32)
    state = {}
    for key, shape in spec["spec"]:
        if key.endswith("blur.kernel") or key.endswith("upsample.kernel"):
            state[key] = torch.from_numpy(blur / blur.sum() * 4)
            continue
        x = rng.standard_normal(shape).astype(np.float32)
        if key.endswith("modulation.bias"):
            x = 1 + 0.1 * x
        elif key.endswith("noise.weight") or key.endswith(".bias"):
            x = 0.1 * x
        state[key] = torch.from_numpy(x)
    return state, expected


def randomize_(G: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Make a freshly built generator sensitive to every term: nonzero noise strengths and biases."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif name.endswith("affine.bias"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=gen))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
        G.mapping.w_avg.copy_(0.1 * torch.randn(G.w_dim, generator=gen))
    return G


@pytest.fixture
def small_G():
    """A tiny random 32x32 generator (z_dim = w_dim = 64) for fast API tests."""
    from latentspaces import Generator

    torch.manual_seed(0)
    G = Generator(z_dim=64, w_dim=64, resolution=32, mapping_layers=2, channels={4: 32, 8: 32, 16: 16, 32: 8})
    return randomize_(G).eval().requires_grad_(False)
