"""Shared test configuration.

The whole suite runs in float64 so that exact properties (invertibility, log-determinants, the HMC
limit) can be checked to ~1e-10; float32 is exercised explicitly where it matters.

The data sets live beside the repository (``../shared/data``); the library never looks there, so
the tests point its environment variables at them (unless they are set already).
"""

import os
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

DATA_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data"
for variable, folder in (("L2HMC_PPL_GERMAN_CREDIT", "german_credit"), ("L2HMC_PPL_MNIST", "mnist")):
    if not os.environ.get(variable) and (DATA_ROOT / folder).is_dir():
        os.environ[variable] = str(DATA_ROOT / folder)
