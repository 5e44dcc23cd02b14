"""The training objectives: the paper's loss against NumPy, and the moment-aware loss."""

import jax.numpy as jnp
import numpy as np

from l2hmc_ppl import esjd_loss
from l2hmc_ppl.training import moment_jumps, moments_loss


def test_paper_loss_matches_numpy():
    rng = np.random.default_rng(0)
    x, x_new = rng.normal(size=(2, 6, 3))
    acceptance = rng.uniform(size=6)
    for scale in (0.1, 2.0):
        jump = np.sum((x - x_new) ** 2, axis=1) * acceptance
        expected = scale / (jump + 1e-4) - jump / scale
        np.testing.assert_allclose(esjd_loss(x, x_new, acceptance, scale), expected, rtol=1e-12)
    per_dim = np.array([0.5, 1.0, 4.0])
    jump = np.sum((x - x_new) ** 2 / per_dim, axis=1) * acceptance
    np.testing.assert_allclose(esjd_loss(x, x_new, acceptance, per_dim), 1 / (jump + 1e-4) - jump, rtol=1e-12)
    # A non-finite proposal counts as no move, not as NaN.
    x_new[0, 0] = np.nan
    assert np.all(np.isfinite(esjd_loss(x, x_new, acceptance, 0.1)))


def test_moment_jumps_match_numpy_and_see_through_a_flip():
    rng = np.random.default_rng(1)
    z, z_new = rng.normal(size=(2, 5, 4))
    first, second = moment_jumps(z, z_new)
    np.testing.assert_allclose(first, np.mean((z_new - z) ** 2, axis=1), rtol=1e-12)
    np.testing.assert_allclose(second, 0.5 * np.mean((z_new**2 - z**2) ** 2, axis=1), rtol=1e-12)
    flipped_first, flipped_second = moment_jumps(z, -z)
    assert np.all(np.asarray(flipped_first) > 0) and np.all(np.asarray(flipped_second) == 0)
    # independent standard normal pairs: both jumps have expectation 2
    z, z_new = rng.normal(size=(2, 200_000, 1))
    first, second = moment_jumps(z, z_new)
    for jump in (np.asarray(first), np.asarray(second)):
        assert abs(jump.mean() - 2.0) < 5 * jump.std() / np.sqrt(jump.size)


def test_moments_loss_punishes_a_flip_that_the_paper_loss_rewards():
    rng = np.random.default_rng(2)
    z = rng.normal(size=(64, 3))
    accepted = np.ones(64)
    independent = rng.normal(size=(64, 3))
    # the paper's loss prefers the flip (a longer jump), the moment-aware loss the independent draw
    assert float(jnp.mean(esjd_loss(z, -z, accepted, 1.0))) < float(
        jnp.mean(esjd_loss(z, independent, accepted, 1.0))
    )
    assert float(jnp.mean(moments_loss(z, -z, accepted))) > float(
        jnp.mean(moments_loss(z, independent, accepted))
    )
    assert np.all(np.isfinite(moments_loss(z, np.full_like(z, np.nan), accepted)))
