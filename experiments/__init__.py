"""Runnable experiments, training scripts and benchmarks (python -m experiments.<name>)."""
