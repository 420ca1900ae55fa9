"""Typed configs: one frozen dataclass per study, trainer-free command and preset, whose fields make the flags.

A study's config holds every number that decides its results; the Python function takes it whole and
the `latentspaces` command builds it from its flags, so a default, a bound or a help text is typed once,
on the field:

    @dataclass(frozen=True)
    class CompareConfig(Config):
        n_targets: int = option(64, "held-out targets 0 .. N-1", type=positive_int, names=("--n",))
        recipe: InversionRecipe = PAPER     # its fields are the recipe flags (--steps, --lr, ...)

    CompareConfig.PRESETS = {"quick": CompareConfig(n_targets=8, recipe=QUICK), "full": ..., "paper": CompareConfig()}

`add_config_flags(parser, CompareConfig)` adds `--n-targets` (and `--n`) with `default=None` and the help
"held-out targets 0 .. N-1 (quick 8, full 64, paper 64)": the values come from the presets (or the
field's default where a config has none). `CompareConfig.from_args(args)` starts from the preset that
--recipe (or --quick) picks and replaces each field whose flag was given: a flag left out is None and
means "the preset's value"; any value given is used as given, 0 included (the flag's `type` has checked
its range). A recipe changed by a flag is renamed to say so ('paper, steps=100'), and that name is what a
run folder records. Fields without `option` metadata are settings with no flag (a preset's P_N sample
count, say).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
from dataclasses import dataclass, fields, replace
from typing import Any, Callable, ClassVar, Dict, Optional, Sequence, Tuple, Type, TypeVar

from latentspaces.metrics.perceptual import PERCEPTUAL_CHOICES
from optimizers import InversionRecipe
from optimizers.recipes import DEFAULT_RECIPE, INITS, RECIPES

from .argtypes import learning_rate, non_negative_float, step_count

T = TypeVar("T", bound="Config")


@dataclass(frozen=True)
class Flag:
    """How a config field is given on the command line."""

    help: str                                   # what the field is, without its default (generated)
    type: Optional[Callable[[str], Any]] = None  # argparse type: parses and checks range (experiments.argtypes)
    choices: Optional[Sequence[Any]] = None     # the allowed values, when a closed set
    names: Tuple[str, ...] = ()                 # more option strings ('--n' beside '--n-targets')
    metavar: Optional[str] = None
    nargs: Optional[int] = None                 # values the flag takes (None: one)
    required: bool = False                      # the command line must give it (a run directory, say)
    const: Any = None                           # a switch: the flag takes no value and sets this one
    negative: bool = False                      # a switch spelled '--no-NAME' (const False), default True
    default_text: Optional[str] = None          # how the default reads in the help, when not the value itself


def option(default: Any = dataclasses.MISSING, help: str = "", **flag: Any) -> Any:
    """A config field with a flag: its default (the config's own) and how the command line gives it (`Flag`).
    A dict or list default is copied for each config (a frozen config never shares a mutable default)."""
    metadata = {"flag": Flag(help=help, **flag)}
    if isinstance(default, (dict, list)):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def flag_of(f: dataclasses.Field) -> Optional[Flag]:
    """The flag of a config field (None: the field has no flag)."""
    return f.metadata.get("flag")


# The recipe's flags, one per InversionRecipe field a command line may change (lambda_mse included).
RECIPE_FLAGS: Dict[str, Flag] = {
    "steps": Flag("optimizer steps; 0 keeps the start", type=step_count),
    "lr": Flag("Adam learning rate", type=learning_rate),
    "lambda_mse": Flag("weight of the pixel MSE in the loss", type=non_negative_float),
    "lambda_per": Flag("perceptual weight in the loss", type=non_negative_float),
    "lambda_reg": Flag("weight of mean((f - f0)^2) on an encoder-started F space", type=non_negative_float),
    "init": Flag("start: 'encoder' (F spaces from the F encoder; W+, W, S, P_N from the W+ encoder; Z and Z+ from "
                 "their mean), 'mean' (w_avg and its counterparts) or 'random' (one code of each space's prior drawn "
                 "with --seed, the same for every target)", choices=INITS),
    "perceptual": Flag("perceptual distance ('auto': LPIPS-VGG when its backbone is on this machine, else D-features, "
                       "the default model's)", choices=PERCEPTUAL_CHOICES),
}


# The recipe flags of the studies that choose their own start (compensation's F/Z+ method, the F-layer sweep).
RECIPE_WITHOUT_INIT = tuple(key for key in RECIPE_FLAGS if key != "init")


def recipe_flag(args: argparse.Namespace) -> str:
    """The preset a command line picks: --recipe, 'quick' for --quick, else the default ('paper')."""
    name = getattr(args, "recipe", None)
    if name is not None:
        return name
    return "quick" if getattr(args, "quick", False) else DEFAULT_RECIPE


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, dict):
        return json.dumps(value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (tuple, list)):
        return ",".join(_text(v) for v in value) if value else "none"
    return str(value)


def _as_field(f: dataclasses.Field, value: Any) -> Any:
    """A parsed flag as a frozen config holds it: the values of a flag that takes several (nargs) as a tuple."""
    return tuple(value) if flag_of(f).nargs is not None else value


class Config:
    """Base of the typed configs: presets by recipe name, `from_args`, and the flags (`add_config_flags`)."""

    PRESETS: ClassVar[Dict[str, "Config"]] = {}

    @classmethod
    def preset(cls: Type[T], name: str) -> T:
        """The preset of recipe `name` ('quick', 'full', 'paper'); the config's defaults where it has no presets."""
        return cls.PRESETS[name] if cls.PRESETS else cls()  # type: ignore[return-value]

    @classmethod
    def from_args(cls: Type[T], args: argparse.Namespace) -> T:
        """The preset --recipe / --quick picks, with every field whose flag was given (not None) replaced by it;
        flags of recipe fields change the recipe (renamed to say so)."""
        given = {f.name: _as_field(f, getattr(args, f.name)) for f in fields(cls)
                 if flag_of(f) is not None and getattr(args, f.name, None) is not None}
        if not cls.PRESETS:   # built from the flags given (a config may require some: a trainer's run directory)
            return cls(**given)
        base = cls.preset(recipe_flag(args))
        recipe: Optional[InversionRecipe] = getattr(base, "recipe", None)
        if isinstance(recipe, InversionRecipe):
            changes = {k: getattr(args, k) for k in RECIPE_FLAGS if getattr(args, k, None) is not None}
            given["recipe"] = recipe.replace(**changes)
        return replace(base, **given)


def _default_text(cls: Type[Config], name: str, flag: Optional[Flag] = None,
                  value: Callable[[Config], Any] = None) -> str:
    """'(default X)', or '(quick A, full B, paper C)' when the presets differ."""
    if flag is not None and flag.default_text is not None:
        return f"(default {flag.default_text})"
    get = value or (lambda c: getattr(c, name))
    if cls.PRESETS:
        values = {preset: _text(get(c)) for preset, c in cls.PRESETS.items()}
        if len(set(values.values())) > 1:
            return "(" + ", ".join(f"{preset} {v}" for preset, v in values.items()) + ")"
        return f"(default {next(iter(values.values()))})"
    if value is not None:
        return f"(default {_text(get(cls()))})"
    f = next(f for f in fields(cls) if f.name == name)   # the field's own default (a config may require others)
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
    return f"(default {_text(default)})"


def _escaped(help: str) -> str:
    """A help text as argparse reads it (it formats help with %: a literal % is written %%)."""
    return help.replace("%", "%%")


def add_config_flags(parser: argparse.ArgumentParser, cls: Type[Config],
                     recipe_fields: Sequence[str] = tuple(RECIPE_FLAGS)) -> None:
    """One flag per field of `cls` with `option` metadata (and, for a recipe field, `recipe_fields`' flags),
    each with default None and a help that states the default or each preset's value."""
    for f in fields(cls):
        if f.type in (InversionRecipe, "InversionRecipe"):
            parser.add_argument("--recipe", choices=tuple(RECIPES), default=None,
                                help=f"inversion recipe and its presets (default {DEFAULT_RECIPE}): " + "; ".join(
                                    RECIPES[name].describe() for name in RECIPES))
            for key in recipe_fields:
                flag = RECIPE_FLAGS[key]
                text = _default_text(cls, key, value=lambda c, k=key: getattr(c.recipe, k))
                parser.add_argument(f"--{key.replace('_', '-')}", dest=key, type=flag.type, choices=flag.choices,
                                    default=None, help=_escaped(f"{flag.help} {text}"))
            continue
        flag = flag_of(f)
        if flag is None:
            continue
        names = (f"--{'no-' if flag.negative else ''}{f.name.replace('_', '-')}", *flag.names)
        if flag.required:
            parser.add_argument(*names, dest=f.name, type=flag.type, required=True, metavar=flag.metavar,
                                help=_escaped(flag.help))
            continue
        text = _default_text(cls, f.name, flag)
        if flag.negative:
            parser.add_argument(*names, dest=f.name, action="store_const", const=False, default=None,
                                help=_escaped(f"{flag.help} {text}"))
        elif flag.const is not None:
            parser.add_argument(*names, dest=f.name, action="store_const", const=flag.const, default=None,
                                help=_escaped(f"{flag.help} {text}"))
        else:
            parser.add_argument(*names, dest=f.name, type=flag.type, choices=flag.choices, default=None,
                                nargs=flag.nargs, metavar=flag.metavar, help=_escaped(f"{flag.help} {text}"))


__all__ = ["Config", "Flag", "RECIPE_FLAGS", "RECIPE_WITHOUT_INIT", "add_config_flags", "flag_of", "option", "recipe_flag"]
