"""One-off tools: the shipped held-out targets (make_heldout_targets), the default generator's quality
report (quality_report), the seeded checkpoint fuzzer (fuzz_checkpoints) and the README's photo
walk-through with its figure (walkthrough)."""
