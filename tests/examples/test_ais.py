"""The DLGM example's annealed importance sampling: exact helpers, then accuracy against a known marginal.

The model is linear-Gaussian, so log p(x) is known in closed form:
z ~ N(0, I_d), x | z ~ N(W z + b, σ² I_D)  ⇒  log p(x) = log N(x; b, W Wᵀ + σ² I_D).

Tolerances are ``Z_THRESHOLD`` (tests/stats.py) times the estimator's own delta-method standard error.
The estimate log-mean-exp(w) is biased low by about SE²/2 (Jensen; the weights themselves are
unbiased). With 64 chains and 1000 annealing steps SE is about 0.05, so the bias is ~1e-3, a few
percent of one SE and negligible next to Z_THRESHOLD SE; it is still added to the allowance below.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from tests.stats import Z_THRESHOLD

from ais import (
    AISResult,
    _run_ais,
    ais_log_marginal,
    annealing_schedule,
    log_mean_exp_and_standard_error,
)

LATENT_DIM, DATA_DIM, NOISE_SD = 3, 5, 0.5
NUM_CHAINS, NUM_ANNEALING_STEPS, NUM_DATA = 64, 1000, 8
NUM_REPLICATES = 16

_rng = np.random.default_rng(20180430)
WEIGHT = _rng.normal(size=(DATA_DIM, LATENT_DIM))
BIAS = _rng.normal(size=DATA_DIM)
# Data spread wider than the model's marginal, so some points sit in the tails (hard cases).
DATA = BIAS + 2.0 * _rng.normal(size=(NUM_DATA, DATA_DIM))


def exact_log_marginal(x):
    covariance = WEIGHT @ WEIGHT.T + NOISE_SD**2 * np.eye(DATA_DIM)
    return scipy.stats.multivariate_normal(BIAS, covariance).logpdf(x)


def log_prior(z):
    return -0.5 * jnp.sum(z**2) - 0.5 * z.shape[0] * jnp.log(2 * jnp.pi)


def prior_sample(rng_key):
    return jax.random.normal(rng_key, (LATENT_DIM,))


def log_likelihood(z, x):
    return jnp.sum(jax.scipy.stats.norm.logpdf(x, WEIGHT @ z + BIAS, NOISE_SD))


@jax.jit
@jax.vmap
def estimate(rng_key, x) -> AISResult:
    """The public estimator, vmapped over data points (the MNIST use)."""
    return ais_log_marginal(
        rng_key,
        log_prior,
        lambda z: log_likelihood(z, x),
        prior_sample,
        num_chains=NUM_CHAINS,
        num_annealing_steps=NUM_ANNEALING_STEPS,
        step_size=0.1,
    )


@jax.jit
@jax.vmap
def estimate_with_betas(rng_key, x, betas) -> AISResult:
    """The unchecked core with an arbitrary schedule: how the mutants are built."""
    return _run_ais(
        rng_key,
        betas,
        jnp.asarray(0.1),
        0.65,
        0.05,
        log_prior_fn=log_prior,
        log_likelihood_fn=lambda z: log_likelihood(z, x),
        prior_sample_fn=prior_sample,
        num_chains=NUM_CHAINS,
        num_leapfrog_steps=10,
        adapt_step_size=True,
    )


def z_scores(result: AISResult, exact) -> np.ndarray:
    """(estimate − exact) / SE."""
    return (np.asarray(result.log_marginal) - exact) / np.asarray(result.standard_error)


def is_accurate(result: AISResult, exact) -> np.ndarray:
    """|estimate − exact| ≤ Z_THRESHOLD·SE + SE²/2: the second term allows for the Jensen bias."""
    se = np.asarray(result.standard_error)
    return np.abs(np.asarray(result.log_marginal) - exact) <= Z_THRESHOLD * se + 0.5 * se**2


@pytest.fixture(scope="module")
def batch_result() -> AISResult:
    keys = jax.random.split(jax.random.key(0), NUM_DATA)
    return estimate(keys, jnp.asarray(DATA))


# ----------------------------------------------------------------------------- exact helpers


def test_log_mean_exp_and_standard_error_match_direct_float64_formula():
    log_weights = np.array([-1000.3, -1001.0, -999.7, -1002.5, -np.inf])
    value, se = log_mean_exp_and_standard_error(jnp.asarray(log_weights))
    weights = np.exp(log_weights + 1000.0)  # shifted by hand; exp(-1000) would underflow
    assert np.isclose(value, np.log(weights.mean()) - 1000.0, rtol=0, atol=1e-12)
    expected_se = weights.std(ddof=1) / (np.sqrt(weights.size) * weights.mean())
    assert np.isclose(se, expected_se, rtol=1e-12)


def test_log_mean_exp_equal_weights_have_zero_standard_error():
    value, se = log_mean_exp_and_standard_error(jnp.full(7, 3.25))
    assert np.isclose(value, 3.25) and se == 0.0


@pytest.mark.parametrize("kind", ["sigmoid", "linear"])
def test_annealing_schedule_is_increasing_from_exactly_zero_to_one(kind):
    betas = annealing_schedule(100, kind)
    assert betas.shape == (101,)
    assert betas[0] == 0.0 and betas[-1] == 1.0
    assert np.all(np.diff(betas) > 0)


def test_sigmoid_schedule_is_denser_near_the_ends():
    steps = np.diff(annealing_schedule(1000, "sigmoid"))
    assert steps[0] < steps[500] and steps[-1] < steps[500]


def test_invalid_arguments_are_refused():
    args = (jax.random.key(0), log_prior, lambda z: log_likelihood(z, DATA[0]), prior_sample)
    with pytest.raises(ValueError, match="schedule"):
        ais_log_marginal(*args, num_annealing_steps=10, schedule="cosine")
    with pytest.raises(ValueError, match="0 to exactly 1"):
        ais_log_marginal(*args, num_annealing_steps=10, schedule=0.5 * np.linspace(0, 1, 11))
    with pytest.raises(ValueError, match="shape"):
        ais_log_marginal(*args, num_annealing_steps=10, schedule=np.linspace(0, 1, 5))
    with pytest.raises(ValueError, match="initial scalar"):
        ais_log_marginal(*args, num_annealing_steps=10, step_size=jnp.ones(10))
    with pytest.raises(ValueError, match="shape"):
        ais_log_marginal(*args, num_annealing_steps=10, step_size=jnp.ones(3), adapt_step_size=False)


# ----------------------------------------------------------------------------- accuracy


def test_matches_the_exact_marginal_within_its_standard_error(batch_result):
    exact = exact_log_marginal(DATA)
    assert batch_result.log_weights.shape == (NUM_DATA, NUM_CHAINS)
    assert np.all(np.isfinite(batch_result.standard_error))
    assert np.all(is_accurate(batch_result, exact)), f"z-scores {z_scores(batch_result, exact)}"


def test_step_size_adapts_toward_the_target_acceptance(batch_result):
    assert batch_result.step_sizes.shape == (NUM_DATA, NUM_ANNEALING_STEPS)
    # Robbins–Monro keeps the running acceptance near 0.65; a non-adapting 0.1 would give ~0.99.
    assert np.all(np.abs(np.asarray(batch_result.acceptance_rate) - 0.65) < 0.05)
    # The step size moved away from its initial value (the prior allows much larger steps).
    assert np.all(np.max(batch_result.step_sizes, axis=1) > 0.3)


def test_standard_error_is_calibrated_across_replicates():
    """Sum of squared z-scores over independent replicates ~ χ² with that many dof.

    Fails if the reported SE is off by a constant factor (e.g. a missing √n: factor 8 here). The
    Jensen bias (~SE²/2 ≈ 0.005 ≈ 0.05 SE) shifts each z by a negligible amount.
    """
    keys = jax.random.split(jax.random.key(1), NUM_REPLICATES)
    x = jnp.broadcast_to(jnp.asarray(DATA[0]), (NUM_REPLICATES, DATA_DIM))
    result = estimate(keys, x)
    statistic = np.sum(z_scores(result, exact_log_marginal(DATA[0])) ** 2)
    tail = 2 * scipy.stats.norm.sf(Z_THRESHOLD)  # the same two-sided level as |z| < Z_THRESHOLD
    low, high = scipy.stats.chi2(NUM_REPLICATES).ppf([tail / 2, 1 - tail / 2])
    assert low < statistic < high, f"Σz² = {statistic}, expected in ({low}, {high})"
    # Mutant: an SE that forgets the √n would make Σz² tiny and is detected.
    assert (
        np.sum(
            z_scores(
                result._replace(standard_error=result.standard_error * np.sqrt(NUM_CHAINS)),
                exact_log_marginal(DATA[0]),
            )
            ** 2
        )
        < low
    )


def test_wrong_schedule_endpoint_is_detected():
    """Mutant: annealing only to β_T = 0.5 estimates ∫ p(z) p(x|z)^½ dz, not p(x)."""
    keys = jax.random.split(jax.random.key(0), NUM_DATA)
    correct = jnp.broadcast_to(annealing_schedule(NUM_ANNEALING_STEPS), (NUM_DATA, NUM_ANNEALING_STEPS + 1))
    exact = exact_log_marginal(DATA)
    # The unchecked core with the right schedule passes (so the mutant fails for its bug alone).
    assert np.all(is_accurate(estimate_with_betas(keys, jnp.asarray(DATA), correct), exact))
    broken = estimate_with_betas(keys, jnp.asarray(DATA), 0.5 * correct)
    assert not np.all(is_accurate(broken, exact))


def test_same_key_same_result_and_fixed_step_size_schedule_reuse(batch_result):
    keys = jax.random.split(jax.random.key(0), NUM_DATA)
    again = estimate(keys, jnp.asarray(DATA))
    np.testing.assert_array_equal(again.log_weights, batch_result.log_weights)

    # Pilot-then-freeze: the pilot's step sizes, reused without adaptation, are used verbatim and
    # give an estimate that is unbiased to the letter; it must pass the same check.
    x, pilot_steps = DATA[0], batch_result.step_sizes[0]
    frozen = ais_log_marginal(
        jax.random.key(5),
        log_prior,
        lambda z: log_likelihood(z, x),
        prior_sample,
        num_chains=NUM_CHAINS,
        num_annealing_steps=NUM_ANNEALING_STEPS,
        step_size=pilot_steps,
        adapt_step_size=False,
    )
    np.testing.assert_array_equal(frozen.step_sizes, pilot_steps)
    assert is_accurate(frozen, exact_log_marginal(x))


def test_float32_model_runs_in_float32():
    weight, bias = jnp.asarray(WEIGHT, jnp.float32), jnp.asarray(BIAS, jnp.float32)
    x = jnp.asarray(DATA[1], jnp.float32)

    def log_likelihood32(z):
        return jnp.sum(jax.scipy.stats.norm.logpdf(x, weight @ z + bias, jnp.float32(NOISE_SD)))

    result = ais_log_marginal(
        jax.random.key(3),
        log_prior,
        log_likelihood32,
        lambda k: jax.random.normal(k, (LATENT_DIM,), jnp.float32),
        num_chains=NUM_CHAINS,
        num_annealing_steps=NUM_ANNEALING_STEPS,
        step_size=0.1,
    )
    assert result.log_weights.dtype == jnp.float32
    assert result.positions.shape == (NUM_CHAINS, LATENT_DIM)
    assert is_accurate(result, exact_log_marginal(DATA[1]))
