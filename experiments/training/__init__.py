"""Trainers of the project's networks, all on one shared loop.

    loop.py                  TrainingLoop and the Trainer hooks: steps, resume, snapshots, time budget, export
    common.py                run setup, flags, per-rank batches and seeds, training codes, perceptual loss, plots
    images.py                --data (default domain, generator samples, a photo folder), held-out scores
    folder_data.py           a photo folder: index, held-out split, sharded epochs, resumable loader, --align
    heads.py                 what the trainers over a frozen generator share (flags, data, export)
    train_stylegan2.py       the default generator (and its discriminator)
    train_f_encoder.py       BDInvert's F-space encoder
    train_wplus_encoder.py   the e4e-style W+ encoder
    train_sdic.py            the SDIC compensation head
    train_hfgi.py            the HFGI compensation head
    train_gradstyle.py       the GradStyle compensation head
    train_reganie.py         ReGANIE's rectifying network (a re-rendering head)
    adversarial.py           one discriminator step beside a head (HFGI and GradStyle with --lambda-adv)
    editing.py               random edits along W directions (GANSpace), for the ReGANIE and GradStyle trainers

Run one with `latentspaces train <name> --help`.
"""
