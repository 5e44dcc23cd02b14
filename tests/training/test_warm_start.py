"""The warm start: tuned HMC exactly, burn-in from afar, stragglers restarted, arrival checked."""

import importlib
import warnings

import blackjax.mcmc.integrators as integrators
import blackjax.mcmc.metrics as metrics
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import l2hmc_ppl
from l2hmc_ppl import L2HMCDynamics
from l2hmc_ppl.targets import scg


def test_warm_start_is_tuned_hmc_with_the_adapted_mass_matrix():
    target = scg()
    dynamics = L2HMCDynamics(2, num_leapfrog_steps=5, key=jax.random.key(0))
    chains = l2hmc_ppl.init_chains(target.sample(jax.random.key(1), 64), target.logdensity_fn)
    adapted, _, info = l2hmc_ppl.warm_start(
        jax.random.key(2), target.logdensity_fn, dynamics, chains, num_steps=80, dense_mass=True
    )
    assert adapted.dense_preconditioner
    hmc = adapted.as_hmc_limit()
    np.testing.assert_allclose(
        hmc.preconditioner_scale @ hmc.preconditioner_scale.T, info.covariance, rtol=1e-10
    )

    # One proposal of the kernel against BlackJAX's velocity Verlet with inverse mass L Lᵀ.
    state = l2hmc_ppl.init(jnp.array([3.0, 2.0]), target.logdensity_fn)
    key = jax.random.key(5)
    proposal = l2hmc_ppl.propose(key, state, target.logdensity_fn, hmc)
    key_momentum, _ = jax.random.split(key)
    whitened_momentum = jax.random.normal(key_momentum, (2,))
    chol = hmc.preconditioner_scale
    momentum = jnp.linalg.solve(chol.T, whitened_momentum)  # p = L⁻ᵀ v, so ½|v|² = ½ pᵀ L Lᵀ p
    metric = metrics.gaussian_euclidean(chol @ chol.T)
    step = integrators.velocity_verlet(target.logdensity_fn, metric.kinetic_energy)
    step_size = float(proposal.direction) * hmc.step_size  # a backward proposal integrates with −ε
    integrator_state = integrators.IntegratorState(
        state.position, momentum, state.logdensity, state.logdensity_grad
    )
    for _ in range(hmc.num_leapfrog_steps):
        integrator_state = step(integrator_state, step_size)
    np.testing.assert_allclose(proposal.state.position, integrator_state.position, rtol=1e-10)
    energy_change = (
        -integrator_state.logdensity
        + metric.kinetic_energy(integrator_state.momentum)
        - (-state.logdensity + metric.kinetic_energy(momentum))
    )
    np.testing.assert_allclose(proposal.energy_change, energy_change, rtol=1e-8, atol=1e-10)
    assert float(proposal.log_det_jacobian) == 0.0


@pytest.mark.parametrize("dense_mass", [False, True])
def test_one_compiled_block_per_metric_kind(dense_mass):
    def logdensity_fn(x):  # a fresh function: a new entry in the compiled block's cache
        return -0.5 * jnp.sum(x**2 / jnp.array([1.0, 4.0]))

    dynamics = L2HMCDynamics(2, num_leapfrog_steps=2, key=jax.random.key(0))
    chains = l2hmc_ppl.init_chains(jax.random.normal(jax.random.key(1), (8, 2)), logdensity_fn)
    # (the package exports the function `warm_start`, which hides the module of the same name)
    warm_start_module = importlib.import_module("l2hmc_ppl.training.warm_start")
    block = warm_start_module._adapt_block._cached  # the jax.jit inside eqx.filter_jit
    before = block._cache_size()
    l2hmc_ppl.warm_start(
        jax.random.key(2), logdensity_fn, dynamics, chains, num_steps=48, dense_mass=dense_mass
    )
    assert block._cache_size() - before == 1


def test_burn_in_brings_far_chains_to_the_posterior_and_finds_its_scales():
    """Chains started 300 standard deviations away, on a Gaussian with scales 0.01 to 10."""
    scales = jnp.array([0.01, 0.1, 1.0, 10.0])

    def logdensity_fn(x):
        return -0.5 * jnp.sum(((x - 1.0) / scales) ** 2)

    dynamics = L2HMCDynamics(4, num_leapfrog_steps=5, key=jax.random.key(0))
    start = 1.0 + 300.0 * scales + 0.1 * jax.random.normal(jax.random.key(1), (32, 4))
    chains = l2hmc_ppl.init_chains(start, logdensity_fn)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no arrival warning
        adapted, chains, info = l2hmc_ppl.warm_start(
            jax.random.key(2), logdensity_fn, dynamics, chains, num_steps=800
        )
    # every chain arrived: its log density is that of a typical draw (−½χ²₄ ≥ −15 with prob. 1 − 2e-5)
    assert float(jnp.min(chains.logdensity)) > -15.0
    np.testing.assert_allclose(adapted.preconditioner_scale, scales, rtol=0.5)  # the scales, within 50%
    assert abs(float(info.logdensity_rise_z)) < 4.5


def test_chains_stuck_in_a_far_corner_are_restarted():
    """Half the chains start in a wide, negligible far mode from which HMC does not come back."""

    def logdensity_fn(x):
        near = -0.5 * jnp.sum(x**2)
        far = jnp.log(1e-3) - 4 * jnp.log(100.0) - 0.5 * jnp.sum(((x - 50.0) / 100.0) ** 2)
        return jnp.logaddexp(near, far)

    dynamics = L2HMCDynamics(4, num_leapfrog_steps=5, key=jax.random.key(0))
    start = jnp.concatenate([jax.random.normal(jax.random.key(1), (16, 4)), 50.0 + jnp.zeros((16, 4))])
    chains = l2hmc_ppl.init_chains(start, logdensity_fn)
    _, chains, info = l2hmc_ppl.warm_start(jax.random.key(2), logdensity_fn, dynamics, chains, num_steps=160)
    assert int(info.num_restarted) >= 16
    assert float(jnp.max(jnp.abs(chains.position))) < 10.0


def test_a_warm_start_too_short_to_arrive_warns():
    def logdensity_fn(x):
        return -0.5 * jnp.sum(x**2)

    dynamics = L2HMCDynamics(10, num_leapfrog_steps=2, key=jax.random.key(0))
    chains = l2hmc_ppl.init_chains(300.0 + jax.random.normal(jax.random.key(1), (32, 10)), logdensity_fn)
    with pytest.warns(UserWarning, match="did not settle|still rising at the end of the warm start"):
        l2hmc_ppl.warm_start(jax.random.key(2), logdensity_fn, dynamics, chains, num_steps=16)


def test_the_trajectory_length_is_chosen_per_gradient():
    """After whitening, a 1-d Gaussian is best sampled by one leapfrog step (ε near √2 gives nearly
    independent draws); a strongly correlated Gaussian with a diagonal metric needs long trajectories."""

    def standard_normal(x):
        return -0.5 * jnp.sum(x**2)

    covariance = jnp.array([[1.0, 0.995], [0.995, 1.0]])
    precision = jnp.linalg.inv(covariance)

    def correlated(x):
        return -0.5 * x @ precision @ x

    chosen = {}
    for name, logdensity_fn, dim in (("normal", standard_normal, 1), ("correlated", correlated, 2)):
        dynamics = l2hmc_ppl.default_dynamics(dim, key=jax.random.key(0))
        chains = l2hmc_ppl.init_chains(jax.random.normal(jax.random.key(1), (64, dim)), logdensity_fn)
        adapted, _, info = l2hmc_ppl.warm_start(
            jax.random.key(2), logdensity_fn, dynamics, chains, num_steps=320, dense_mass=False
        )
        assert adapted.num_leapfrog_steps == info.num_leapfrog_steps == adapted.masks.shape[0]
        assert info.trajectory_scores.shape == (len(warm_start_module_candidates()),)
        chosen[name] = adapted.num_leapfrog_steps
    assert chosen["normal"] == 1 and chosen["correlated"] >= 8, chosen


def warm_start_module_candidates():
    return importlib.import_module("l2hmc_ppl.training.warm_start").TRAJECTORY_CANDIDATES
