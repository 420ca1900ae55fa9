"""One-off tools: the shipped held-out targets (make_heldout_targets) and the default generator's
quality report (quality_report)."""
