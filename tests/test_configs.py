"""Every command's numbers live in one typed config: no flag means the config's default, the flags and their help are
made from its fields, and the Python functions default to the same config."""

from __future__ import annotations

import argparse
import inspect
from dataclasses import fields

import pytest

from experiments.cli import COMMANDS, build_parser
from experiments.config import RECIPE_FLAGS, Config, flag_of
from experiments.studies.compensation import CompensationConfig, run_compensation_comparison
from experiments.studies.f_layer_sweep import FLayerSweepConfig, run_f_layer_sweep
from experiments.studies.identity_curves import IdentityCurvesConfig, run_identity_curves
from experiments.studies.space_comparison import CompareConfig, run_space_comparison
from optimizers import PAPER, RECIPES
from optimizers.recipes import DEFAULT_RECIPE

CONFIGURED = [name for name, module in COMMANDS.items() if module.CONFIG is not None]


def _argv(name: str, tmp_path) -> list:
    """The fewest flags command `name` runs with (files it must find made in tmp_path)."""
    for f in ("c.safetensors", "d.safetensors", "photo.png"):
        (tmp_path / f).write_bytes(b"x")
    needed = {"paired": ["--out", str(tmp_path)], "tradeoff": ["--out", str(tmp_path)],
              "score-identity": ["--out", str(tmp_path)], "app": [],
              "align": [str(tmp_path / "photo.png"), "--out", str(tmp_path / "o")],
              "edit": ["--out", str(tmp_path / "o"), "--codes", str(tmp_path / "c.safetensors"), "--direction",
                       str(tmp_path / "d.safetensors")],
              "drag": ["--out", str(tmp_path / "o"), "--seed", "0"]}
    return [name, *needed.get(name, ["--out", str(tmp_path / "o")])]


def _parsers(parser: argparse.ArgumentParser) -> dict:
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sub.choices


def test_every_command_module_declares_the_protocol():
    assert list(COMMANDS) == ["compare", "identity-curves", "compensation", "f-layer-sweep", "score-identity", "paired",
                              "tradeoff", "drag-study", "align", "invert", "edit", "drag", "directions", "app", "train"]
    for name, module in COMMANDS.items():
        assert module.NAME == name and module.HELP and module.RANKS in ("one", "sharded", "trainer"), name
        assert callable(module.add_arguments) and callable(module.check) and callable(module.run), name
        assert module.CONFIG is None or issubclass(module.CONFIG, Config), name


@pytest.mark.parametrize("name", CONFIGURED)
def test_no_flags_give_the_configs_default(name, tmp_path):
    """Parsing no optional flags gives the config's own default: the paper preset where a config has presets (and
    that preset is the config's defaults), the defaults elsewhere."""
    config = COMMANDS[name].CONFIG
    args = build_parser().parse_args(_argv(name, tmp_path))
    assert config.from_args(args) == config()
    if config.PRESETS:
        assert set(config.PRESETS) == set(RECIPES) and config.PRESETS[DEFAULT_RECIPE] == config()
        assert getattr(config.PRESETS["quick"], "recipe", RECIPES["quick"]) is RECIPES["quick"]


@pytest.mark.parametrize("name", CONFIGURED)
def test_every_field_with_a_flag_has_one_whose_help_states_the_default(name):
    """The flags are made from the fields: each `option` field (and each recipe field) is a flag whose default is
    None (the preset's value) and whose help says the value, so no default is typed twice."""
    config = COMMANDS[name].CONFIG
    actions = {a.dest: a for a in _parsers(build_parser())[name]._actions}
    for f in fields(config):
        flag = flag_of(f)
        if f.name == "recipe":
            recipe_flags = [k for k in RECIPE_FLAGS if k in actions]
            assert "steps" in recipe_flags and "recipe" in actions, name
            for key in recipe_flags:
                help_text = " ".join(actions[key].help.split())
                assert actions[key].default is None, (name, key)
                assert "(default " in help_text or ("(quick " in help_text and "paper " in help_text), (name, key)
            continue
        if flag is None:
            assert f.name not in actions, (name, f.name)   # a setting without a flag stays one
            continue
        action = actions[f.name]
        assert action.default is None, (name, f.name)
        help_text = " ".join(action.help.split())
        assert "(default " in help_text or ("(quick " in help_text and "paper " in help_text), (name, f.name, help_text)


def test_help_shows_each_presets_value_where_they_differ():
    actions = {a.dest: a for a in _parsers(build_parser())["compare"]._actions}
    assert "(quick 8, full 64, paper 64)" in actions["n_targets"].help
    assert "(default 8)" in actions["chunk"].help
    assert "(quick 100, full 1200, paper 1200)" in " ".join(actions["steps"].help.split())
    assert "--n" in actions["n_targets"].option_strings
    comp = {a.dest: a for a in _parsers(build_parser())["compensation"]._actions}
    assert "(quick 100, full 450, paper 450)" in comp["pivot_steps"].help
    assert "init" not in comp   # the F/Z+ method always starts from the F encoder


def test_the_python_calls_default_to_the_commands_config():
    """A study called without a config runs what its command runs without flags: the paper preset."""
    for study, config in ((run_space_comparison, CompareConfig), (run_identity_curves, IdentityCurvesConfig),
                          (run_f_layer_sweep, FLayerSweepConfig), (run_compensation_comparison, CompensationConfig)):
        assert inspect.signature(study).parameters["config"].default is None, study.__name__
        assert config().recipe is PAPER and config() == config.PRESETS["paper"], config.__name__
    # the quick presets share their numbers (studies/presets.py): the same targets and samples everywhere
    assert {c.PRESETS["quick"].n_targets for c in (CompareConfig, IdentityCurvesConfig, CompensationConfig,
                                                   FLayerSweepConfig)} == {8}
    assert IdentityCurvesConfig.PRESETS["quick"].direction_samples == CompensationConfig.PRESETS["quick"].direction_samples


def test_a_flag_given_replaces_the_preset_and_renames_the_recipe(tmp_path):
    args = build_parser().parse_args(["compare", "--out", str(tmp_path), "--quick", "--steps", "0", "--chunk", "3"])
    c = CompareConfig.from_args(args)
    assert (c.recipe.steps, c.recipe.name, c.chunk, c.n_targets) == (0, "quick, steps=0", 3, 8)


def test_every_trainer_is_a_train_subcommand():
    from experiments.cli.train import TRAINERS
    train = _parsers(build_parser())["train"]
    assert set(_parsers(train)) == set(TRAINERS) == {"stylegan2", "f-encoder", "wplus-encoder", "sdic", "hfgi",
                                                    "gradstyle", "reganie"}
    args = build_parser().parse_args(["train", "sdic", "--out", "x", "--steps", "5"])
    assert (args.command, args.trainer, args.out) == ("train", "sdic", "x")
    from experiments.training.train_sdic import SDICConfig
    assert SDICConfig.from_args(build_parser().parse_args(["train", "sdic", "--out", "x"])) == SDICConfig(out="x")


@pytest.mark.parametrize("name", ["stylegan2", "f-encoder", "wplus-encoder", "sdic", "hfgi", "gradstyle", "reganie"])
def test_every_trainers_flags_are_its_configs_fields(name):
    """`latentspaces train NAME --out x` gives the trainer's config with out='x' and every other field at its default;
    each field is a flag whose help states the default; a config without its run directory is refused."""
    from experiments.cli.train import TRAINERS
    config = TRAINERS[name].CONFIG
    parser = _parsers(_parsers(build_parser())["train"])[name]
    assert config.from_args(build_parser().parse_args(["train", name, "--out", "x"])) == config(out="x")
    actions = {a.dest: a for a in parser._actions}
    for f in fields(config):
        assert f.name in actions, (name, f.name)
        if f.name != "out":
            assert actions[f.name].default is None and "(default " in " ".join(actions[f.name].help.split()), (name,
                                                                                                           f.name)
    with pytest.raises(ValueError, match="out, the run directory, is required"):
        config()
