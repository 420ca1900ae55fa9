"""latentspaces: the metadata is in pyproject.toml (PEP 621); this file lets older pips install it editable."""

from setuptools import setup

setup()
