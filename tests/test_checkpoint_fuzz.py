"""Hostile and broken generator checkpoints: every file loads to a finite generator or is refused cleanly.

The named cases are the families a probe of mutated checkpoints found (huge declared sizes, stride-0
views, non-finite or overflowing weights, degenerate configs, silent casts and squeezes, deep nesting);
the seeded fuzz draws a few hundred more. All load in a sandboxed worker process with a memory and a
time limit (`experiments.tools.fuzz_checkpoints`), so a regression fails the test instead of hanging
or exhausting the machine.
"""

from __future__ import annotations

import random
import warnings

import pytest
import torch

import latentspaces as ls
from experiments.tools import fuzz_checkpoints as fz
from latentspaces.generator.config import ConfigError, check_config, state_bytes, state_shapes


def _generator(seed: int = 0) -> ls.Generator:
    rng = random.Random(seed)
    G = fz.small_generator(rng)
    while not fz._rosinality_able(G):
        G = fz.small_generator(rng)
    return G


def _case(name: str, fmt: str, edit) -> tuple:
    doc = fz.make_doc(_generator(), fmt)
    edit(doc)
    return name, fmt, doc


def _set(mapping: dict, key: str, value: object):
    def edit(doc: fz.Doc) -> None:
        getattr(doc, mapping)[key] = value
    return edit


def _nvlabs_kwarg(key: str, value: object):
    def edit(doc: fz.Doc) -> None:
        doc.fields[":_init_kwargs"] = {**doc.fields[":_init_kwargs"], key: value}
    return edit


def _tensor(key: str, fn):
    def edit(doc: fz.Doc) -> None:
        doc.tensors[key] = fn(doc.tensors[key])
    return edit


def _first_weight(fmt: str) -> str:
    return {"native": "mapping.fc0.weight", "nvlabs": "mapping.fc0.weight",
            "genforce": "mapping.dense0.weight"}.get(fmt, "style.1.weight")


NAN = float("nan")
CASES = [
    # declared sizes far beyond the tensors present: refused before anything is built
    _case("native mapping_layers 10**7", "native", _set("fields", "config.mapping_layers", 10**7)),
    _case("native z_dim 0", "native", _set("fields", "config.z_dim", 0)),
    _case("native resolution 2**40", "native", _set("fields", "config.resolution", 2**40)),
    _case("rosinality style.10000000.weight", "rosinality",
          _set("tensors", "style.10000000.weight", torch.randn(4, 4))),
    _case("nvlabs num_layers 10**7", "nvlabs", _set("fields", "mapping:num_layers", 10**7)),
    _case("nvlabs w_dim 10**6", "nvlabs", _nvlabs_kwarg("w_dim", 10**6)),
    _case("nvlabs z_dim 0", "nvlabs", _nvlabs_kwarg("z_dim", 0)),
    # a 200 KB file that declares a 16 GiB tensor
    _case("rosinality stride-0 expand(65536, 65536)", "rosinality",
          _set("tensors", "conv1.conv.modulation.weight", torch.zeros(1).expand(65536, 65536))),
    _case("rosinality stride-0 view of the right shape", "rosinality",
          _tensor("style.1.weight", lambda t: t[:1, :1].expand(*t.shape))),
    _case("nvlabs stride-0 expand(65536, 65536)", "nvlabs",
          _set("tensors", "mapping.fc0.weight", torch.zeros(1).expand(65536, 65536))),
    # non-finite and overflowing weights, all formats
    *[_case(f"{fmt} NaN weight", fmt, _tensor(_first_weight(fmt), lambda t: t.index_fill(0, torch.tensor([0]), NAN)))
      for fmt in fz.FORMATS],
    *[_case(f"{fmt} Inf weight", fmt, _tensor(_first_weight(fmt), lambda t: t.index_fill(0, torch.tensor([0]), float("inf"))))
      for fmt in fz.FORMATS],
    *[_case(f"{fmt} 1e30 weight", fmt, _tensor(_first_weight(fmt), lambda t: t * 1e30)) for fmt in fz.FORMATS],
    _case("nvlabs NaN bias_gain", "nvlabs", _set("fields", "mapping.fc1:bias_gain", NAN)),
    _case("nvlabs NaN conv_clamp", "nvlabs", _set("fields", "synthesis.b8.conv1:conv_clamp", NAN)),
    _case("native NaN mapping_lr_multiplier", "native", _set("fields", "config.mapping_lr_multiplier", NAN)),
    _case("native NaN conv_clamp", "native", _set("fields", "config.conv_clamp", NAN)),
    # degenerate configs
    _case("native conv_clamp 0", "native", _set("fields", "config.conv_clamp", 0)),
    _case("native conv_clamp -1", "native", _set("fields", "config.conv_clamp", -1.0)),
    _case("native mapping_lr_multiplier 0", "native", _set("fields", "config.mapping_lr_multiplier", 0.0)),
    _case("native zero taps", "native", _set("fields", "config.resample_taps", [0, 0, 0, 0])),
    _case("native odd taps", "native", _set("fields", "config.resample_taps", [1, 2, 1])),
    _case("nvlabs zero resample filter", "nvlabs", _tensor("synthesis.b8.resample_filter", torch.zeros_like)),
    # silent casts and squeezes
    *[_case(f"rosinality {dtype} weight", "rosinality", _tensor("style.1.weight", lambda t, d=dtype: t.to(d)))
      for dtype in (torch.int32, torch.uint8, torch.bool, torch.complex64)],
    *[_case(f"native {dtype} weight", "native", _tensor("mapping.fc0.weight", lambda t, d=dtype: t.to(d)))
      for dtype in (torch.int64, torch.uint8, torch.bool)],
    _case("nvlabs int weight", "nvlabs", _tensor("mapping.fc0.weight", lambda t: t.to(torch.int16))),
    _case("rosinality leading dimension 2", "rosinality", _tensor("conv1.conv.weight", lambda t: torch.cat([t, t]))),
    # nesting deep enough to exhaust Python's recursion
    _case("native 100k-deep JSON config", "native", _set("extra", "raw_config", "[" * 100_000 + "]" * 100_000)),
    _case("nvlabs 2000-deep records", "nvlabs", _set("extra", "deep_records", 2000)),
]

EXPECTED_MESSAGE = {
    "native mapping_layers 10**7": "mapping_layers = 10000000 is implausible",
    "rosinality style.10000000.weight": "style.10000000.weight",
    "nvlabs num_layers 10**7": "mapping_layers = 10000000",
    "nvlabs w_dim 10**6": "w_dim = 1000000",
    "rosinality stride-0 expand(65536, 65536)": "[65536, 65536]",
    "rosinality stride-0 view of the right shape": "stride 0",
    "nvlabs NaN bias_gain": "mapping.fc1.bias_gain",
    "native conv_clamp 0": "conv_clamp",
    "native mapping_lr_multiplier 0": "mapping_lr_multiplier",
    "native odd taps": "even count",
    "rosinality torch.int32 weight": "dtype torch.int32",
    "rosinality torch.complex64 weight": "dtype torch.complex64",
    "rosinality leading dimension 2": "conv1.conv.weight",
    "native 1e30 weight": "magnitude",
    "nvlabs 1e30 weight": "magnitude",
}


@pytest.fixture(scope="module")
def named_results(tmp_path_factory):
    folder = tmp_path_factory.mktemp("named")
    paths = []
    for i, (_name, _fmt, doc) in enumerate(CASES):
        path = folder / f"case{i:03d}"
        fz.write_doc(doc, path)
        paths.append(path)
    results = fz.run_mutants(paths, limit_mb=1024, timeout=20)
    return {name: results[path.name] for (name, _, _), path in zip(CASES, paths)}


@pytest.mark.parametrize("name", [c[0] for c in CASES])
def test_named_hostile_checkpoint_is_refused(named_results, name):
    result = named_results[name]
    assert result["outcome"] == "refused", result
    if name in EXPECTED_MESSAGE:
        assert EXPECTED_MESSAGE[name] in result["detail"], result["detail"]


@pytest.mark.slow
def test_seeded_fuzz_of_every_format():
    """A few hundred mutants: each loads to a finite generator or is refused by an anticipated check."""
    report = fz.fuzz(n=400, seed=20261201, limit_mb=1024, timeout=20)
    assert report.tried == 400
    assert {k: report.counts[k] for k in fz.FAILURES} == {k: 0 for k in fz.FAILURES}, report.failures[:5]
    for fmt, row in report.by_format.items():  # every format was exercised both ways
        assert row["refused"] > 0 and row["loaded"] > 0, (fmt, row)


def test_clean_files_of_every_format_load_exactly(tmp_path):
    G = _generator(3)
    z = torch.randn(2, G.z_dim)
    for fmt in fz.FORMATS:
        path = tmp_path / fmt
        fz.write_doc(fz.make_doc(G, fmt), path)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loaded = ls.load_generator(path)
        assert torch.allclose(loaded(z), G(z), atol=1e-6), fmt
        if fmt == "e4e":  # latent_avg [num_ws, w_dim]: its row mean, said so
            assert any("per-layer average" in str(w.message) for w in caught)
            assert torch.allclose(loaded.w_avg, G.w_avg, atol=1e-6)


def test_e4e_latent_avg_whose_rows_differ_uses_their_mean(tmp_path):
    G = _generator(4)
    doc = fz.make_doc(G, "e4e")
    doc.fields["latent_avg"] = torch.randn(G.num_ws, G.w_dim)
    fz.write_doc(doc, tmp_path / "g.pt")
    with pytest.warns(UserWarning, match="mean of its rows"):
        loaded = ls.load_generator(tmp_path / "g.pt")
    assert torch.allclose(loaded.w_avg, doc.fields["latent_avg"].mean(0))


def test_memory_limit_is_an_option(tmp_path):
    G = _generator(5)
    ls.save_generator(G, tmp_path / "g.safetensors")
    with pytest.raises(ls.CheckpointError, match="over max_bytes"):
        ls.load_generator(tmp_path / "g.safetensors", max_bytes=1000)


def test_config_checks_and_state_shapes_match_the_module():
    for config in [dict(z_dim=8, w_dim=16, resolution=16, mapping_layers=2, channels={4: 32, 8: 16, 16: 8}),
                   dict(resolution=64, channel_base=2048, use_noise=False, img_channels=1, conv_clamp=256)]:
        G = ls.Generator(**config)
        assert state_shapes(G.config) == {k: tuple(v.shape) for k, v in G.state_dict().items()}
        assert state_bytes(G.config) == 4 * sum(v.numel() for v in G.state_dict().values())
    for bad, match in [({"z_dim": 0}, "z_dim = 0"), ({"resolution": 48}, "power of two"),
                       ({"mapping_lr_multiplier": float("nan")}, "finite"), ({"conv_clamp": -1}, "conv_clamp"),
                       ({"resample_taps": [1, 1, 1]}, "even count"), ({"mapping_layers": 10**30}, r"about 2\^99"),
                       ({"bogus": 1}, "unknown generator config fields"), ({"use_noise": "yes"}, "use_noise")]:
        with pytest.raises(ConfigError, match=match):
            check_config(bad)
        with pytest.raises(ValueError, match=match):
            ls.Generator(**bad) if "bogus" not in bad else check_config(bad)


def test_finite_weights_whose_image_overflows_are_refused_naming_the_layer(tmp_path):
    G = ls.Generator(z_dim=8, w_dim=8, resolution=8, mapping_layers=3, channels={4: 8, 8: 8})
    with torch.no_grad():
        for p in G.parameters():
            p.fill_(9e7)  # under MAX_ABS_WEIGHT, but their products overflow float32
    ls.save_generator(G, tmp_path / "g.safetensors")
    with pytest.raises(ls.CheckpointError, match=r"every weight is finite, but the generator's image is not "
                                                 r"\(first non-finite output: (mapping|synthesis)\."):
        ls.load_generator(tmp_path / "g.safetensors")
    loaded = ls.load_generator(tmp_path / "g.safetensors", verify_output=False)  # the check can be skipped
    assert loaded.z_dim == G.z_dim


@pytest.mark.slow
@pytest.mark.parametrize("asset,reader", [("default-wplus", "encoder"), ("default-sdic", "encoder"),
                                          ("default-discriminator", "discriminator")])
def test_other_readers_of_the_storage_layer_refuse_damaged_files(tmp_path, asset, reader):
    """Encoders, heads and discriminators are built from a header config too: the same rule holds."""
    from latentspaces.assets import asset_path
    mutants = fz.make_storage_mutants(asset_path(asset), 60, seed=7, folder=tmp_path)
    results = fz.run_mutants([tmp_path / m.name for m in mutants], limit_mb=1024, timeout=20, reader=reader)
    failures = [(m.description, results[m.name]) for m in mutants if results[m.name]["outcome"] in fz.FAILURES]
    assert failures == []
    assert sum(results[m.name]["outcome"] == "refused" for m in mutants) > 30
