"""Deprecated: moved to experiments/training/train_sdic.py; run `python -m experiments.training.train_sdic`."""

import warnings

from experiments.training.train_sdic import main

warnings.warn("python -m experiments.train_sdic is deprecated; use python -m experiments.training.train_sdic",
              DeprecationWarning)

if __name__ == "__main__":
    main()
