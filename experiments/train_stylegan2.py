"""Deprecated: moved to experiments/training/train_stylegan2.py; run `python -m experiments.training.train_stylegan2`."""

import warnings

from experiments.training.train_stylegan2 import main

warnings.warn("python -m experiments.train_stylegan2 is deprecated; use python -m experiments.training.train_stylegan2",
              DeprecationWarning)

if __name__ == "__main__":
    main()
