"""Tests of the mixing diagnostics: the paper's ESS, the standard ESS and R-hat, mode statistics.

The paper's ESS is checked on AR(1) chains, whose autocorrelation is known exactly
(ρ_t = φᵗ), with tolerances of Z standard errors estimated from the spread over independent
groups of chains, and it must reject deliberately broken estimators on the same data.
"""

from __future__ import annotations

import arviz as az
import numpy as np
import pytest
from numpyro.diagnostics import split_gelman_rubin

from l2hmc_ppl import diagnostics

Z = 4.5
PHI = 0.7
NUM_STEPS, NUM_CHAINS, NUM_GROUPS = 2000, 1000, 40
SCALES = np.array([1.0, 3.0])  # unequal variances: the normalisation by Tr(Σ) matters


def _ar1_chains(rng, phi, num_steps, num_chains, num_dims) -> np.ndarray:
    """Stationary AR(1) chains x_{t+1} = φ x_t + √(1 − φ²) ε, x_1 ~ N(0, 1); (steps, chains, dims)."""
    chains = np.empty((num_steps, num_chains, num_dims))
    chains[0] = rng.standard_normal((num_chains, num_dims))
    innovation_scale = np.sqrt(1 - phi**2)
    for step in range(1, num_steps):
        chains[step] = phi * chains[step - 1] + innovation_scale * rng.standard_normal((num_chains, num_dims))
    return chains


@pytest.fixture(scope="module")
def ar1():
    """AR(1) chains with stds SCALES: mean 0, covariance diag(SCALES²), ρ_t = φᵗ exactly."""
    rng = np.random.default_rng(1711)
    samples = _ar1_chains(rng, PHI, NUM_STEPS, NUM_CHAINS, 2) * SCALES
    return samples, np.zeros(2), np.diag(SCALES**2)


def _truncated_theory(phi: float, threshold: float = 0.05) -> tuple[float, int]:
    """The paper's ESS for exact ρ_t = φᵗ, and the truncation lag t* (first ρ_t < threshold)."""
    lags = np.arange(1, 1000)
    cutoff = int(lags[np.argmax(phi**lags < threshold)])
    return 1.0 / (1.0 + 2.0 * np.sum(phi ** np.arange(1, cutoff))), cutoff


# --------------------------------------------------------------------------------------------------
# The paper's ESS


def test_autocorrelation_equals_direct_sum():
    rng = np.random.default_rng(0)
    samples = rng.standard_normal((37, 3, 4)).cumsum(axis=0)
    mean = rng.standard_normal(4)
    factor = rng.standard_normal((4, 4))
    covariance = factor @ factor.T
    centred = samples - mean
    num_steps = samples.shape[0]
    direct = [
        np.mean(np.sum(centred[: num_steps - t] * centred[t:], axis=(0, 2)))
        / ((num_steps - t) * np.trace(covariance))
        for t in range(num_steps)
    ]
    rho = diagnostics.autocorrelation(samples, mean, covariance)
    np.testing.assert_allclose(rho, direct, rtol=1e-10, atol=1e-12)
    # Variances instead of the full matrix, max_lag, and (steps, chains) input for dim = 1.
    np.testing.assert_allclose(
        diagnostics.autocorrelation(samples, mean, np.diag(covariance), max_lag=5), direct[:6]
    )
    np.testing.assert_allclose(
        diagnostics.autocorrelation(samples[..., 0], mean[:1], covariance[:1, :1]),
        diagnostics.autocorrelation(samples[..., :1], mean[:1], covariance[:1, :1]),
    )


def test_paper_ess_is_one_for_iid_draws():
    # For iid draws ρ̂_1 ≈ 0 ± SE, far below the threshold, so the sum stops at t = 1 and the ESS
    # is exactly 1. Check that this is a sure outcome and not luck: 0.05 is many SE away.
    rng = np.random.default_rng(2)
    samples = rng.standard_normal((2000, 200, 3)) * SCALES.mean() + 1.5
    mean, covariance = np.full(3, 1.5), np.eye(3) * SCALES.mean() ** 2
    groups = np.array(
        [diagnostics.autocorrelation(samples[:, g::20], mean, covariance, 1)[1] for g in range(20)]
    )
    rho_1 = diagnostics.autocorrelation(samples, mean, covariance, max_lag=1)[1]
    standard_error = groups.std(ddof=1) / np.sqrt(len(groups))
    assert abs(rho_1) < Z * standard_error
    assert abs(rho_1) + Z * standard_error < 0.05
    assert diagnostics.paper_ess(samples, mean, covariance) == 1.0


def _ar1_check(ar1) -> tuple[float, float, float]:
    """(paper_ess estimate, truncated theory, standard error) for the AR(1) chains.

    The chain average over NUM_CHAINS is the mean of NUM_GROUPS equal groups' averages, so the SE of
    S = Σ_{t<t*} ρ̂_t is sd(S_group)/√G; the delta method gives SE(ESS) = 2 ESS² SE(S).
    """
    samples, mean, covariance = ar1
    theory, cutoff = _truncated_theory(PHI)
    groups = np.array(
        [
            diagnostics.autocorrelation(samples[:, g::NUM_GROUPS], mean, covariance, cutoff)
            for g in range(NUM_GROUPS)
        ]
    )
    sums = groups[:, 1:cutoff].sum(axis=1)
    standard_error = 2 * theory**2 * sums.std(ddof=1) / np.sqrt(NUM_GROUPS)
    return diagnostics.paper_ess(samples, mean, covariance), theory, standard_error


def test_autocorrelation_of_ar1_is_unbiased(ar1):
    samples, mean, covariance = ar1
    _, cutoff = _truncated_theory(PHI)
    groups = np.array(
        [
            diagnostics.autocorrelation(samples[:, g::NUM_GROUPS], mean, covariance, cutoff)
            for g in range(NUM_GROUPS)
        ]
    )
    standard_error = groups.std(axis=0, ddof=1) / np.sqrt(NUM_GROUPS)
    rho = diagnostics.autocorrelation(samples, mean, covariance, max_lag=cutoff)
    truth = PHI ** np.arange(cutoff + 1)
    assert np.all(np.abs(rho - truth) < Z * standard_error)
    # The estimated truncation lag is the theoretical one by a wide margin (not by luck):
    # ρ_{t*−1} and ρ_{t*} are both more than Z SE away from the threshold.
    assert np.all(np.abs(truth[cutoff - 1 :] - 0.05) > Z * standard_error[cutoff - 1 :])


def test_paper_ess_matches_ar1_theory(ar1):
    # ρ_t = φᵗ gives ESS = 1/(1 + 2 Σ_{t<t*} φᵗ) = 0.1853 for φ = 0.7 (t* = 9); without the
    # truncation it would be (1 − φ)/(1 + φ) = 0.1765, a 19-SE difference here.
    estimate, theory, standard_error = _ar1_check(ar1)
    assert abs(estimate - theory) < Z * standard_error
    assert abs((1 - PHI) / (1 + PHI) - theory) > Z * standard_error


def _mutants(samples, mean, covariance):
    """Broken versions of paper_ess, built from the (tested) autocorrelation curve."""
    rho = diagnostics.autocorrelation(samples, mean, covariance)
    cutoff = int(np.argmax(rho[1:] < 0.05)) + 1
    unit_variance = rho * np.trace(covariance) / covariance.shape[0]  # divides by dim, not Tr Σ
    return {
        "no truncation": 1 / (1 + 2 * np.sum(rho[1:])),
        "lag t* included": 1 / (1 + 2 * np.sum(rho[1 : cutoff + 1])),
        "normalised by dim instead of Tr(Sigma)": 1 / (1 + 2 * np.sum(unit_variance[1:cutoff])),
        "factor 2 missing": 1 / (1 + np.sum(rho[1:cutoff])),
    }


def test_broken_estimators_fail_the_ar1_check(ar1):
    _, theory, standard_error = _ar1_check(ar1)
    for name, value in _mutants(*ar1).items():
        assert abs(value - theory) > Z * standard_error, name


def test_paper_ess_edge_cases(ar1):
    samples, mean, covariance = ar1
    short = samples[:50, :10]
    np.testing.assert_allclose(
        diagnostics.paper_ess(short, mean, np.diag(covariance)),
        diagnostics.paper_ess(short, mean, covariance),
    )
    # A chain that never decorrelates below the threshold sums all lags.
    frozen = np.ones((20, 4, 2))
    rho = diagnostics.autocorrelation(frozen, np.zeros(2), np.eye(2))
    assert diagnostics.paper_ess(frozen, np.zeros(2), np.eye(2)) == pytest.approx(1 / (1 + 2 * rho[1:].sum()))
    broken = short.copy()
    broken[3, 2, 1] = np.nan
    assert np.isnan(diagnostics.paper_ess(broken, mean, covariance))
    with pytest.raises(ValueError, match="num_steps, num_chains, dim"):
        diagnostics.paper_ess(np.zeros(5), np.zeros(1), np.eye(1))


def test_ess_per_gradient():
    assert diagnostics.ess_per_gradient(0.5, 10) == pytest.approx(0.05)
    with pytest.raises(ValueError):
        diagnostics.ess_per_gradient(0.5, 0)


# --------------------------------------------------------------------------------------------------
# Standard ESS and R-hat


def test_standard_ess_equals_arviz_bulk_ess():
    rng = np.random.default_rng(3)
    samples = _ar1_chains(rng, 0.9, 300, 4, 3)
    samples[..., 0] = np.exp(samples[..., 0])  # rank normalisation makes bulk ESS invariant
    chains_first = np.swapaxes(samples, 0, 1)
    bulk = az.ess(az.convert_to_dataset(chains_first), method="bulk")["x"].values
    expected = bulk.min() / (300 * 4)
    np.testing.assert_allclose(diagnostics.standard_ess(samples), expected, rtol=1e-10)
    # Power: reading the array as (chains, steps, dim), i.e. skipping the layout conversion,
    # measures correlation across chains and gives a different answer.
    with pytest.warns(UserWarning, match="More chains"):  # ArviZ notices the wrong layout too
        wrong = az.ess(az.convert_to_dataset(samples), method="bulk")["x"].values.min()
    wrong /= 300 * 4
    assert abs(wrong - expected) > 0.5 * expected


def test_standard_ess_of_ar1(ar1):
    # Bulk ESS is invariant to the scale; its per-draw value for AR(1) is (1 − φ)/(1 + φ). The SE
    # of the full-data estimate is taken as that of the mean over NUM_GROUPS equal groups (same
    # total data); a single coordinate avoids the selection bias of the minimum.
    samples = ar1[0][..., :1]
    groups = np.array([diagnostics.standard_ess(samples[:, g::NUM_GROUPS]) for g in range(NUM_GROUPS)])
    standard_error = groups.std(ddof=1) / np.sqrt(NUM_GROUPS)
    estimate = diagnostics.standard_ess(samples)
    assert abs(estimate - (1 - PHI) / (1 + PHI)) < Z * standard_error
    # The minimum over coordinates, and an iid coordinate does not lower it.
    rng = np.random.default_rng(4)
    with_iid = np.concatenate([samples, rng.standard_normal(samples.shape)], axis=-1)
    assert diagnostics.standard_ess(with_iid) == pytest.approx(estimate)


def test_max_rhat():
    rng = np.random.default_rng(5)
    samples = _ar1_chains(rng, 0.5, 400, 8, 3)
    expected = split_gelman_rubin(np.swapaxes(samples, 0, 1)).max()
    assert diagnostics.max_rhat(samples) == pytest.approx(expected, rel=1e-12)
    # Power: shifting half of the chains by 4 within-chain sds in one coordinate makes the
    # between-chain variance of the (split) chain means ≈ 4·16/15, so R-hat ≈ √(1 + 4.27) ≈ 2.3.
    stuck = samples.copy()
    stuck[:, :4, 1] += 4.0
    assert diagnostics.max_rhat(stuck) > 1.5 > diagnostics.max_rhat(samples)


# --------------------------------------------------------------------------------------------------
# Mode statistics


MODES = np.array([[-2.0, 0.0], [2.0, 0.0]])
LEFT, RIGHT = [-2.1, 0.3], [1.7, -0.2]
# (steps, chains, dim): chain 0 stays left, chain 1 alternates, chain 2 switches once.
HAND_MADE = np.array(
    [
        [LEFT, LEFT, LEFT],
        [LEFT, RIGHT, LEFT],
        [LEFT, LEFT, RIGHT],
        [LEFT, RIGHT, RIGHT],
        [LEFT, LEFT, RIGHT],
    ]
)


def test_mode_statistics_on_hand_made_chains():
    np.testing.assert_array_equal(
        diagnostics.mode_assignments(HAND_MADE, MODES),
        [[0, 0, 0], [0, 1, 0], [0, 0, 1], [0, 1, 1], [0, 0, 1]],
    )
    np.testing.assert_allclose(
        diagnostics.mode_occupancy(HAND_MADE, MODES), [[1.0, 0.0], [0.6, 0.4], [0.4, 0.6]]
    )
    np.testing.assert_array_equal(diagnostics.mode_switches(HAND_MADE, MODES), [0, 4, 1])
    assert diagnostics.chains_visiting_all_modes(HAND_MADE, MODES) == 2
    # A point that is nearer mode 1 in Euclidean distance though its x-coordinate is closer to 0.
    three_modes = np.array([[0.0, 0.0], [1.0, 3.0], [5.0, 5.0]])
    np.testing.assert_array_equal(
        diagnostics.mode_assignments(np.array([[0.4, 2.0], [4.0, 4.0], [0.1, -1.0]]), three_modes),
        [1, 2, 0],
    )
    with pytest.raises(ValueError, match="modes must have shape"):
        diagnostics.mode_assignments(HAND_MADE, np.zeros((2, 3)))
