"""Helpers shared by the tests: random non-trivial weights and moment checks with standard errors."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from l2hmc_ppl import L2HMCDynamics

#: z for statistical checks (STYLE.md): about 4.5-5 standard errors.
Z_THRESHOLD = 5.0


def randomize_heads(dynamics: L2HMCDynamics, rng_key, scale: float = 1.0) -> L2HMCDynamics:
    """Replace every head weight, bias and log-coefficient by random values of order ``scale``.

    Freshly built dynamics start near the HMC limit (heads ~1e-3); exactness must hold for any
    weights, so the exact and invariance tests use heads that make S, Q, T of order one.
    """

    def heads(d):
        nets = (d.position_net, d.momentum_net)
        out = []
        for net in nets:
            for head in (net.scale_head, net.transformation_head, net.translation_head):
                out += [head.weight, head.bias]
            out += [net.scale_log_coeff, net.transformation_log_coeff]
        return out

    leaves = heads(dynamics)
    keys = jax.random.split(rng_key, len(leaves))
    new = []
    for key, leaf in zip(keys, leaves, strict=True):
        fan_in = leaf.shape[-1] if leaf.ndim == 2 else 1
        new.append(scale * jax.random.normal(key, leaf.shape, leaf.dtype) / np.sqrt(fan_in))
    return eqx.tree_at(heads, dynamics, new)


def moment_z_scores(draws, true_mean, true_variance):
    """z-scores of the per-coordinate sample mean and variance of iid ``draws`` (N, dim).

    Standard errors come from the draws themselves: sd/√N for the mean, and sd((x−μ)²)/√N for the
    variance (μ the true mean, so the variance estimator is an iid average).
    """
    draws = np.asarray(draws, np.float64)
    n = draws.shape[0]
    mean_z = (draws.mean(0) - true_mean) / (draws.std(0, ddof=1) / np.sqrt(n))
    squared = (draws - true_mean) ** 2
    var_z = (squared.mean(0) - true_variance) / (squared.std(0, ddof=1) / np.sqrt(n))
    return mean_z, var_z


def max_abs_z(draws, true_mean, true_variance) -> float:
    mean_z, var_z = moment_z_scores(draws, true_mean, true_variance)
    return float(np.max(np.abs(np.concatenate([mean_z, var_z]))))


def tree_max_abs_diff(a, b) -> float:
    diffs = jax.tree_util.tree_map(lambda x, y: jnp.max(jnp.abs(x - y)), a, b)
    return float(max(jax.tree_util.tree_leaves(diffs)))
