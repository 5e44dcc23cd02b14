"""Shared test configuration.

The whole suite runs in float64 so that exact properties (invertibility, log-determinants, the HMC
limit) can be checked to ~1e-10; float32 is exercised explicitly where it matters.
"""

import jax

jax.config.update("jax_enable_x64", True)
