"""Small targets with exact samplers and moments, shared by the kernel and training tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class ExactTarget(NamedTuple):
    logdensity_fn: Callable
    sample: Callable
    mean: np.ndarray
    variance: np.ndarray


def correlated_gaussian() -> ExactTarget:
    covariance = jnp.array([[1.0, 1.8], [1.8, 4.0]])  # correlation 0.9
    precision = jnp.linalg.inv(covariance)
    chol = jnp.linalg.cholesky(covariance)
    return ExactTarget(
        lambda x: -0.5 * x @ precision @ x,
        lambda key, n: jax.random.normal(key, (n, 2)) @ chol.T,
        np.zeros(2),
        np.diag(np.asarray(covariance)),
    )


def banana() -> ExactTarget:
    """x0 ~ N(0, 1), x1 | x0 ~ N(x0²/2, 0.5²): skewed in x1, curved."""

    def logdensity_fn(x):
        return -0.5 * x[0] ** 2 - 0.5 * ((x[1] - 0.5 * x[0] ** 2) / 0.5) ** 2

    def sample(key, n):
        key_a, key_b = jax.random.split(key)
        x0 = jax.random.normal(key_a, (n,))
        return jnp.stack([x0, 0.5 * x0**2 + 0.5 * jax.random.normal(key_b, (n,))], axis=1)

    # E[x1] = 1/2, Var[x1] = Var(x0²)/4 + 1/4 = 3/4.
    return ExactTarget(logdensity_fn, sample, np.array([0.0, 0.5]), np.array([1.0, 0.75]))


def two_mode_mixture() -> ExactTarget:
    """0.3 N((−1.5, 0), 0.5² I) + 0.7 N((1.5, 0), 0.5² I): unequal weights, so not symmetric."""
    weights = jnp.array([0.3, 0.7])
    centres = jnp.array([[-1.5, 0.0], [1.5, 0.0]])
    sd = 0.5

    def logdensity_fn(x):
        log_components = -0.5 * jnp.sum(((x - centres) / sd) ** 2, axis=1)
        return jax.nn.logsumexp(log_components + jnp.log(weights))

    def sample(key, n):
        key_c, key_n = jax.random.split(key)
        component = jax.random.choice(key_c, 2, (n,), p=weights)
        return centres[component] + sd * jax.random.normal(key_n, (n, 2))

    mean_x0 = float(weights @ centres[:, 0])
    var_x0 = sd**2 + float(weights @ centres[:, 0] ** 2) - mean_x0**2
    return ExactTarget(logdensity_fn, sample, np.array([mean_x0, 0.0]), np.array([var_x0, sd**2]))


TARGETS = {"correlated_gaussian": correlated_gaussian, "banana": banana, "mixture": two_mode_mixture}
