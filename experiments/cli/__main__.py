"""`python -m experiments.cli ...` and `torchrun ... -m experiments.cli ...`: the `latentspaces` command."""

from . import main

main()
