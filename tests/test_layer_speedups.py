"""The layers' speed-ups (channels-last convolutions, folded epilogues) change strides and rounding only.

Each combination of `layer_options` is compared with the plain arrangement (NCHW, `bias_act`'s separate
passes) on the generator, the discriminator and the D-features distance, forward and backward, and the
public outputs are checked to come back as contiguous NCHW whatever layout the convolutions ran in.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from latentspaces.discriminator import Conv2dLayer, Discriminator
from latentspaces.generator.mapping import FullyConnectedLayer
from latentspaces.generator.ops import layer_options
from latentspaces.metrics.d_features import DiscriminatorFeatures

PLAIN = dict(channels_last=False, folded_epilogues=False)
OPTIONS = [dict(channels_last=c, folded_epilogues=f) for c, f in itertools.product([True, False], repeat=2)]


@pytest.fixture(scope="module")
def small_D():
    torch.manual_seed(1)
    D = Discriminator(resolution=32, channels={32: 8, 16: 16, 8: 16, 4: 16})
    with torch.no_grad():
        for name, p in D.named_parameters():
            if name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape))
    return D.eval().requires_grad_(False)


def _synthesis_and_grad(G, ws, options):
    ws = ws.clone().requires_grad_(True)
    with layer_options(**options):
        img = G.synthesis(ws)
        feat = G.synthesis.features(ws.detach(), "b16.conv1")
        img.square().mean().backward()
    return img, feat, ws.grad


@pytest.mark.parametrize("options", OPTIONS)
def test_generator_equals_plain_layers(small_G, options):
    ws = small_G.broadcast(small_G.mapping(torch.randn(3, 64, generator=torch.Generator().manual_seed(2))))
    img0, feat0, grad0 = _synthesis_and_grad(small_G, ws, PLAIN)
    img, feat, grad = _synthesis_and_grad(small_G, ws, options)
    assert img.is_contiguous() and feat.is_contiguous()   # NCHW at the public boundary
    assert torch.allclose(img, img0, rtol=1e-4, atol=1e-5)
    assert torch.allclose(feat, feat0, rtol=1e-4, atol=1e-5)
    assert torch.allclose(grad, grad0, rtol=1e-3, atol=1e-7)


@pytest.mark.parametrize("options", OPTIONS)
def test_discriminator_and_d_features_equal_plain_layers(small_D, options):
    gen = torch.Generator().manual_seed(3)
    x, y = torch.rand(4, 3, 32, 32, generator=gen) * 2 - 1, torch.rand(4, 3, 32, 32, generator=gen) * 2 - 1

    def run(opts):
        xg = x.clone().requires_grad_(True)
        with layer_options(**opts):
            feats = small_D.features(xg)
            logits = small_D(xg)
            dist = DiscriminatorFeatures(small_D)(xg, y)
            (dist.sum() + logits.sum()).backward()
        return feats, logits, dist, xg.grad

    feats0, logits0, dist0, grad0 = run(PLAIN)
    feats, logits, dist, grad = run(options)
    assert all(f.is_contiguous() for f in feats)
    for f, f0 in zip(feats, feats0):
        assert torch.allclose(f, f0, rtol=1e-4, atol=1e-5)
    assert torch.allclose(logits, logits0, rtol=1e-4, atol=1e-5)
    assert torch.allclose(dist, dist0, rtol=1e-4, atol=1e-6)
    assert torch.allclose(grad, grad0, rtol=1e-3, atol=1e-7)


def test_channels_last_runs_through_every_layer(small_G, small_D):
    """Inside the networks every conv output stays channels-last (no layer falls back to NCHW, which
    would cost a reorder in the next convolution); the public outputs are NCHW."""
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append((type(m).__name__, o)))
             for m in list(small_G.synthesis.modules()) + list(small_D.modules())
             if type(m).__name__ in ("SynthesisLayer", "Conv2dLayer")]
    try:
        with layer_options(channels_last=True, folded_epilogues=True):
            img = small_G.synthesis(small_G.broadcast(small_G.mapping(torch.randn(2, 64))))
            small_D.block_outputs(torch.rand(2, 3, 32, 32))
    finally:
        for h in hooks:
            h.remove()
    assert {name for name, _ in seen} == {"SynthesisLayer", "Conv2dLayer"}
    nchw = [(name, tuple(o.shape)) for name, o in seen if not o.is_contiguous(memory_format=torch.channels_last)]
    assert not nchw
    assert img.is_contiguous()


def test_float64_layers_agree_to_double_rounding(small_G):
    """In float64 the two arrangements differ only by float64 rounding."""
    G = small_G.double()
    try:
        ws = G.broadcast(G.mapping(torch.randn(2, 64, dtype=torch.float64)))
        with layer_options(**PLAIN):
            ref = G.synthesis(ws)
        with layer_options(channels_last=True, folded_epilogues=True):
            out = G.synthesis(ws)
        assert torch.allclose(out, ref, rtol=0, atol=1e-12)
    finally:
        small_G.float()


def test_layer_options_restore_the_settings():
    from latentspaces.generator import ops

    before = (ops._CHANNELS_LAST.get("cpu", False), ops.folded_epilogues())
    with pytest.raises(RuntimeError):
        with layer_options(channels_last=not before[0], folded_epilogues=not before[1]):
            assert ops.folded_epilogues() == (not before[1])
            raise RuntimeError("leave the block")
    assert (ops._CHANNELS_LAST.get("cpu", False), ops.folded_epilogues()) == before


def test_unknown_activations_and_gains_are_refused():
    with pytest.raises(ValueError, match="activation"):
        FullyConnectedLayer(4, 4, activation="gelu")
    with pytest.raises(ValueError, match="activation"):
        Conv2dLayer(4, 4, 3, activation="relu")
    with pytest.raises(ValueError, match="gain must be positive"):
        Conv2dLayer(4, 4, 3, activation="lrelu")(torch.zeros(1, 4, 8, 8), gain=-1.0)


def test_with_layers_runs_the_command_under_the_named_layers(monkeypatch):
    """The benchmarks' wrapper turns the speed-ups off for 'plain' around the command, and back after."""
    import experiments.cli
    from experiments.benchmarks import with_layers
    from latentspaces.generator import ops

    seen = []
    monkeypatch.setattr(experiments.cli, "main",
                        lambda argv: seen.append((argv, ops._CHANNELS_LAST["cpu"], ops.folded_epilogues())))
    with_layers.main(["plain", "compare", "--quick"])
    with_layers.main(["fast", "compare"])
    assert seen == [(["compare", "--quick"], False, False), (["compare"], True, True)]
    assert ops._CHANNELS_LAST["cpu"] and ops.folded_epilogues()
    with pytest.raises(SystemExit, match="usage"):
        with_layers.main(["slow", "compare"])


def test_the_prepared_gpu_checks_name_only_existing_variants_and_flags():
    """experiments/benchmarks/gpu_checks.sh runs on a lent GPU, not here: its variants and flags are checked
    against the benchmark's own, and CUDA-only variants are refused on a CPU before any work."""
    import re
    import subprocess
    from pathlib import Path

    from experiments.benchmarks import bench_inversion_step

    benchmarks = Path(__file__).resolve().parents[1] / "experiments" / "benchmarks"
    script = benchmarks / "gpu_checks.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    text = script.read_text().replace("\\\n", " ")   # continuation lines joined: one command per line
    commands = re.findall(r"-m experiments\.benchmarks\.(\w+)([^|\n]*)", text)
    assert {module for module, _ in commands} == {"bench_inversion_step", "bench_synthesis", "bench_head_memory"}
    for module, flags in commands:   # every flag is one the benchmark declares
        declared = set(re.findall(r'add_argument\("(--[\w-]+)"', (benchmarks / f"{module}.py").read_text()))
        assert set(re.findall(r"(--[\w-]+)", flags)) <= declared, (module, flags)
    lists = re.findall(r"--variants (\S+)", text) + re.findall(r"--optimized (\S+)", text)
    assert lists and all(v in bench_inversion_step.VARIANTS for names in lists for v in names.split(","))
    assert set(bench_inversion_step.CUDA_ONLY) <= set(bench_inversion_step.VARIANTS)
    with pytest.raises(SystemExit, match="folded\\+fp16 need --device cuda"):
        bench_inversion_step.main(["--device", "cpu", "--variants", "plain,fast,folded+fp16"])
