"""Trainers of the project's networks, all on one shared loop.

    loop.py                  TrainingLoop and the Trainer hooks: steps, resume, snapshots, time budget, export
    common.py                run setup, flags, per-rank batches and seeds, training codes, perceptual loss, plots
    train_stylegan2.py       the default generator (and its discriminator)
    train_f_encoder.py       BDInvert's F-space encoder
    train_wplus_encoder.py   the e4e-style W+ encoder
    train_sdic.py            the SDIC compensation head

Run one with `python -m experiments.training.train_<name> --help`.
"""
