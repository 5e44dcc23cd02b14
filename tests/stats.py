"""The one statistics helper of the tests: z-scores of moments against the truth, with standard errors.

No tolerance on Monte Carlo output is picked by hand: every check is ``|z| < Z_THRESHOLD`` with a
standard error computed from the draws themselves: sd/√N for independent draws, sd/√ESS for MCMC,
and for a variance the standard error of the mean of the centred squares (from the ESS *of the
squares*, which mixes slower than x when a sampler moves x → −x). ``MIN_ESS`` is the floor below
which a chain "did not mix": its MCSE is itself unreliable, so the check fails there too.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.diagnostics import effective_sample_size

#: z for statistical checks (STYLE: about 4.5 standard errors; a fixed seed makes each check
#: deterministic, and the mutants show that the checks fail on broken samplers).
Z_THRESHOLD = 4.5
#: Fewer effective draws than this: the chains did not mix (and sd/√ESS is not trustworthy).
MIN_ESS = 100.0


def moment_z_scores(draws, true_mean, true_variance):
    """z-scores of the per-coordinate mean and variance of iid ``draws`` (N, dim).

    Standard errors come from the draws: sd/√N for the mean, and sd((x−μ)²)/√N for the variance
    (μ the true mean, so the variance estimator is an iid average).
    """
    draws = np.asarray(draws, np.float64)
    n = draws.shape[0]
    mean_z = (draws.mean(0) - true_mean) / (draws.std(0, ddof=1) / np.sqrt(n))
    squared = (draws - true_mean) ** 2
    var_z = (squared.mean(0) - true_variance) / (squared.std(0, ddof=1) / np.sqrt(n))
    return mean_z, var_z


def max_abs_z(draws, true_mean, true_variance) -> float:
    """The largest |z| of `moment_z_scores`."""
    mean_z, var_z = moment_z_scores(draws, true_mean, true_variance)
    return float(np.max(np.abs(np.concatenate([mean_z, var_z]))))


def mean_and_mcse(draws):
    """Mean over (chain, draw) and its MCSE sd/√ESS, per scalar; also the ESS."""
    draws = np.asarray(draws, np.float64)
    ess = np.asarray(effective_sample_size(draws))
    flat = draws.reshape(-1, *draws.shape[2:])
    return flat.mean(0), flat.std(0, ddof=1) / np.sqrt(ess), ess


def mcmc_moment_z_scores(draws, true_mean, true_variance):
    """z-scores of the mean and the variance of MCMC ``draws`` (chains, samples, ...) against the truth.

    MCSE = sd/√ESS with NumPyro's multi-chain ESS, of x for the mean and of (x − μ)² for the
    variance. Returns ``(mean_z, variance_z, min_ess)`` with the smaller ESS of the two moments.
    """
    mean, mean_mcse, mean_ess = mean_and_mcse(draws)
    squared, squared_mcse, squared_ess = mean_and_mcse((np.asarray(draws) - true_mean) ** 2)
    min_ess = min(np.min(mean_ess), np.min(squared_ess))
    return (mean - true_mean) / mean_mcse, (squared - true_variance) / squared_mcse, min_ess


def reference_z_scores(draws, reference_mean, reference_sd):
    """z-scores of the mean and sd of MCMC ``draws`` (chains, samples, ...) against reference values.

    The sd's MCSE comes from the ESS of the centred squares by the delta method: sd((x − m)²) /
    √ESS / (2·sd). Returns ``(mean_z, sd_z, min_ess)``.
    """
    draws = np.asarray(draws, np.float64)
    mean, mean_mcse, mean_ess = mean_and_mcse(draws)
    squared, squared_mcse, squared_ess = mean_and_mcse((draws - mean) ** 2)
    sd = np.sqrt(squared)
    sd_mcse = squared_mcse / (2.0 * sd)
    min_ess = min(np.min(mean_ess), np.min(squared_ess))
    return (mean - reference_mean) / mean_mcse, (sd - reference_sd) / sd_mcse, min_ess


def tree_max_abs_diff(a, b) -> float:
    """The largest absolute difference between two pytrees of arrays of the same structure."""
    diffs = jax.tree_util.tree_map(
        lambda x, y: jnp.max(jnp.abs(jnp.asarray(x, float) - jnp.asarray(y, float))), a, b
    )
    return float(max(jax.tree_util.tree_leaves(diffs)))
