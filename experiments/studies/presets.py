"""The preset numbers the studies share, by recipe name: typed here once, read by every study's config.

`quick` finishes both main experiments in minutes on a 2-core CPU (8 held-out targets, 3 GANSpace
directions per kind from 50,000 W samples, P_N fitted on 100,000); `full` and `paper` use all 64
held-out targets, 5 directions from GANSpace's 300,000 samples and P_N fitted on 10^6 (the paper's).
The inversion numbers themselves are the recipes' (`optimizers.recipes`).
"""

from __future__ import annotations

from typing import Dict

from latentspaces.directions import GANSPACE_SAMPLES

TARGETS: Dict[str, int] = {"quick": 8, "full": 64, "paper": 64}                          # held-out targets
PN_SAMPLES: Dict[str, int] = {"quick": 100_000, "full": 1_000_000, "paper": 1_000_000}   # W samples for P_N
DIRECTIONS: Dict[str, int] = {"quick": 3, "full": 5, "paper": 5}                         # GANSpace per kind
DIRECTION_SAMPLES: Dict[str, int] = {"quick": 50_000, "full": GANSPACE_SAMPLES, "paper": GANSPACE_SAMPLES}

__all__ = ["DIRECTIONS", "DIRECTION_SAMPLES", "PN_SAMPLES", "TARGETS"]
