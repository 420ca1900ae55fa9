"""The paper recipe's truncation, as the released code of "Revisiting Latent Space of GAN Inversion" runs it:
F/Z+, F/Z and W pass every step's ws through psi 0.7 on ws 0-7 toward w_avg; codes stay raw, and every reader
renders them in the space they were inverted in (code files record its options)."""

import pytest
import torch

import latentspaces as ls
from experiments.cli import main
from experiments.studies.inversions import chunk_space_options, invert_missing, load_codes, save_chunk
from latentspaces.errors import CheckpointError
from optimizers import PAPER, QUICK, HybridInverter

RELEASED = {"truncation_psi": 0.7, "truncation_cutoff": 8}


@pytest.fixture(scope="module")
def G():
    return ls.load_generator("default")


def test_the_paper_recipe_truncates_the_released_spaces_and_says_so(G):
    for name in ("FZPlus", "FZ", "W"):
        assert PAPER.space_options(name) == RELEASED and PAPER.space(name, G).options() == RELEASED
    for name in ("WPlus", "FWPlus", "ZPlus", "Z", "S"):
        assert PAPER.space_options(name) == {} and PAPER.space(name, G).options() == {}
    assert QUICK.space_options("FZPlus") == {} and "truncat" not in str(QUICK.record())
    assert PAPER.record()["truncation_psi"] == 0.7 and PAPER.record()["truncated_spaces"] == ["FZPlus", "FZ", "W"]
    assert "FZPlus, FZ, W truncated at psi 0.7 on ws 0-7" in PAPER.describe()
    untruncated = PAPER.replace(truncated_spaces=())
    assert untruncated.space_options("FZPlus") == {} and untruncated.name == "paper, truncated_spaces=()"
    for bad, match in ((dict(truncation_psi=0.0), "truncation_psi"), (dict(truncation_psi=1.5), "truncation_psi"),
                       (dict(truncation_cutoff=0), "truncation_cutoff"), (dict(truncated_spaces="FZPlus"), "tuple")):
        with pytest.raises(ValueError, match=match):
            PAPER.replace(**bad)


def test_a_space_built_without_the_recipes_truncation_is_refused(G):
    with pytest.raises(ValueError, match=r"build it with build_space\('FZPlus', G"):
        HybridInverter.from_recipe(ls.FZPlus(G), PAPER, perceptual=lambda x, y: x.new_zeros(len(x)))
    with pytest.raises(ValueError, match="no truncation"):   # a truncated space under an untruncated recipe
        HybridInverter.from_recipe(ls.FZPlus(G, truncation_psi=0.7, truncation_cutoff=8), QUICK)
    HybridInverter.from_recipe(ls.WPlus(G), PAPER, perceptual=lambda x, y: x.new_zeros(len(x)))   # W+: none


def test_the_truncated_fzplus_renders_ws_0_to_7_pulled_toward_w_avg(G):
    """The released step: w = mapping(z) per row, then w_avg + 0.7 (w - w_avg) on rows 0-7, then synthesis from
    f; computed here by hand from the untruncated space's ws (rows 8 and 9 untouched)."""
    plain, truncated = ls.FZPlus(G), PAPER.space("FZPlus", G)
    code = plain.random(2, seed=3)
    ws = plain.to_ws(code)
    by_hand = ws.clone()
    by_hand[:, :8] = G.w_avg + 0.7 * (ws[:, :8] - G.w_avg)
    assert G.num_ws == 10 and not torch.allclose(by_hand[:, 7], ws[:, 7]) and torch.equal(by_hand[:, 8:], ws[:, 8:])
    with torch.no_grad():
        expected = G.synthesis.from_feature(code.f, by_hand, plain.layer, noise_mode="const")
        torch.testing.assert_close(truncated.synthesize(code), expected, atol=1e-5, rtol=0)
        assert (truncated.synthesize(code) - plain.synthesize(code)).abs().max() > 0.01


def test_run_folders_record_the_truncation_and_readers_render_with_it(G, tmp_path):
    """invert_missing writes each chunk's space options; chunk_space_options reads them back; a code file with
    options that are not a truncation is refused by name."""
    targets = ls.assets.heldout_targets(2)
    recipe = PAPER.replace(steps=2, lambda_per=0.0)
    invert_missing(tmp_path, G, targets, ["FZPlus", "WPlus"], recipe, progress=False)
    assert chunk_space_options(tmp_path, "FZPlus") == RELEASED and chunk_space_options(tmp_path, "WPlus") == {}
    saved = ls.spaces.read_code_file(tmp_path / "codes" / "FZPlus_0.safetensors")
    space = ls.build_space("FZPlus", G, **saved.space_options)
    with torch.no_grad():   # the saved reconstructions are the truncated space's images of the saved codes
        again = ls.images.to_uint8(space.synthesize(load_codes(tmp_path, "FZPlus", 2)))
    assert (again.int() - saved.images.int()).abs().max() <= 1
    save_chunk(tmp_path / "bad", "W", 0, ls.Code(w=torch.zeros(1, 512)), torch.zeros(1, 3, 8, 8),
               steps=0, space_options={"noise_mode": "random"})
    with pytest.raises(CheckpointError, match="space_options must be an object with truncation_psi"):
        assert ls.spaces.read_code_file(tmp_path / "bad" / "codes" / "W_0.safetensors").space_options


def test_invert_and_edit_on_the_command_line_keep_the_truncation(tmp_path):
    """`invert --recipe paper --space W` records the truncation; `edit` renders alpha 0 as the inversion did."""
    main(["invert", "--out", str(tmp_path / "inv"), "--n", "1", "--steps", "1", "--space", "W", "--recipe", "paper",
          "--perceptual", "none", "--device", "cpu"])
    saved = ls.spaces.read_code_file(tmp_path / "inv" / "codes.safetensors")
    assert saved.space_options == RELEASED
    G = ls.load_generator("default")
    truncated, plain = ls.build_space("W", G, **saved.space_options), ls.W(G)
    with torch.no_grad():
        assert (truncated.synthesize(saved.code) - plain.synthesize(saved.code)).abs().max() > 1e-3
