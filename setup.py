"""latentspaces: StyleGAN inversion and editing across latent spaces (pip install -e .)."""

import re

from setuptools import find_packages, setup

# One version, the library's own (latentspaces.__version__; `latentspaces --version` prints it).
VERSION = re.search(r'^__version__ = "([^"]+)"', open("latentspaces/__init__.py", encoding="utf-8").read(), re.M).group(1)

setup(
    name="latentspaces",
    version=VERSION,
    description="StyleGAN2 inversion and editing across Z, Z+, W, W+, S, P_N and F/* latent spaces",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    license="MIT",
    classifiers=[
        "Programming Language :: Python :: 3",
        "License :: OSI Approved :: MIT License",
        "Operating System :: OS Independent",
        "Intended Audience :: Science/Research",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
        "Topic :: Scientific/Engineering :: Image Processing",
    ],
    packages=find_packages(include=["latentspaces*", "optimizers*", "encoders*", "experiments*"]),
    package_data={"latentspaces": ["assets/*.safetensors", "assets/*.json", "assets/*.npz"],
                  "experiments": ["app/static/*"]},   # the editor page (latentspaces app)
    install_requires=[
        "torch>=2.1",
        "numpy>=1.24",
        "safetensors>=0.4",
        "tqdm>=4.60",
        "scipy>=1.10",
        "scikit-learn>=1.3",
        "matplotlib>=3.7",
        "pillow>=9.0",
        "lpips>=0.1.4",
        "torchmetrics>=1.0",
        "torchvision>=0.16",
        "scikit-image>=0.21",
        "dlib-bin>=19.24",
        "face-recognition-models>=0.3.0",
    ],
    extras_require={
        # the tutorial notebook's test (nbclient, ipykernel) and the browser editor's (selenium drives Chromium)
        "test": ["pytest>=7", "nbclient>=0.9", "nbformat>=5.9", "ipykernel>=6.25", "selenium>=4.20"],
        "docs": ["mkdocs>=1.6", "mkdocstrings[python]>=0.25", "nbformat>=5.9"],      # mkdocs build --strict
    },
    entry_points={"console_scripts": ["latentspaces=experiments.cli:main"]},
)
