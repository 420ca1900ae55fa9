"""Benchmarks: scripts that time alternatives side by side in one run and print ratios."""
