"""Deprecated: moved to experiments/training/train_f_encoder.py; run `python -m experiments.training.train_f_encoder`."""

import warnings

from experiments.training.train_f_encoder import main

warnings.warn("python -m experiments.train_f_encoder is deprecated; use python -m experiments.training.train_f_encoder",
              DeprecationWarning)

if __name__ == "__main__":
    main()
