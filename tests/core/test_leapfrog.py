"""Exact (non-statistical) properties of the learned leapfrog, in float64.

Invertibility, the log-determinant against autodiff (reverse mode: the integrator has a custom
VJP), the HMC limit against BlackJAX's velocity Verlet, and the stop at the first non-finite value
(with a gradient that stays finite).
"""

import blackjax.mcmc.integrators as integrators
import blackjax.mcmc.metrics as metrics
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import l2hmc_ppl
from l2hmc_ppl import L2HMCDynamics, learned_leapfrog
from l2hmc_ppl.core import finite_value_and_grad, hmc_leapfrog
from tests.mutants import randomize_heads

DIM = 5
COVARIANCE = jnp.array([[1.0 + i if i == j else 0.5 for j in range(DIM)] for i in range(DIM)])
PRECISION = jnp.linalg.inv(COVARIANCE)


def gaussian_logdensity(x):
    return -0.5 * x @ PRECISION @ x


def anharmonic_logdensity(x):
    # A non-Gaussian target so that ∇U is not linear.
    return -0.25 * jnp.sum(x**4) - 0.5 * jnp.sum(x**2) + 0.3 * x[0] * x[1]


@pytest.fixture(scope="module")
def random_dynamics():
    dynamics = L2HMCDynamics(DIM, num_leapfrog_steps=4, hidden_size=8, step_size=0.2, key=jax.random.key(0))
    # Order-one heads; much larger ones make the quartic target's trajectories blow up (|v| ~ 1e10),
    # where any float round-off is amplified beyond 1e-10.
    return randomize_heads(dynamics, jax.random.key(1), scale=0.5)


def _phase_point(seed):
    key_x, key_v = jax.random.split(jax.random.key(seed))
    return jax.random.normal(key_x, (DIM,)), jax.random.normal(key_v, (DIM,))


def _leapfrog(dynamics, logdensity_fn, x, v, direction, integrator=learned_leapfrog, **kwargs):
    logdensity, grad = jax.value_and_grad(logdensity_fn)(x)
    return integrator(dynamics, logdensity_fn, x, v, logdensity, grad, direction, **kwargs)


@pytest.mark.parametrize("logdensity_fn", [gaussian_logdensity, anharmonic_logdensity])
@pytest.mark.parametrize("direction", [1.0, -1.0])
def test_reverse_undoes_forward(random_dynamics, logdensity_fn, direction):
    x, v = _phase_point(2)
    there = _leapfrog(random_dynamics, logdensity_fn, x, v, direction)
    back = _leapfrog(random_dynamics, logdensity_fn, there.position, there.momentum, -direction)
    assert bool(there.is_finite) and bool(back.is_finite)
    assert float(jnp.max(jnp.abs(there.position - x))) > 1e-2  # it moved
    assert float(jnp.abs(there.log_det_jacobian)) > 1e-2  # the heads matter
    assert float(jnp.max(jnp.abs(back.position - x))) < 1e-10
    assert float(jnp.max(jnp.abs(back.momentum - v))) < 1e-10
    assert abs(float(there.log_det_jacobian + back.log_det_jacobian)) < 1e-10


@pytest.mark.parametrize("direction", [1.0, -1.0])
def test_log_det_matches_autodiff_jacobian(random_dynamics, direction):
    logdensity_fn = anharmonic_logdensity

    def phase_map(xi):
        out = _leapfrog(random_dynamics, logdensity_fn, xi[:DIM], xi[DIM:], direction)
        return jnp.concatenate([out.position, out.momentum])

    x, v = _phase_point(3)
    sign, autodiff_log_det = jnp.linalg.slogdet(jax.jacrev(phase_map)(jnp.concatenate([x, v])))
    result = _leapfrog(random_dynamics, logdensity_fn, x, v, direction)
    assert float(sign) == 1.0
    assert abs(float(result.log_det_jacobian - autodiff_log_det)) < 1e-10
    assert abs(float(autodiff_log_det)) > 1e-2


@pytest.mark.parametrize("dim", [1, 2, 5])
@pytest.mark.parametrize("integrator", [learned_leapfrog, hmc_leapfrog])
def test_zero_heads_reproduce_blackjax_velocity_verlet(dim, integrator):
    num_steps, step_size = 6, 0.15
    dynamics = L2HMCDynamics(dim, num_leapfrog_steps=num_steps, step_size=step_size, key=jax.random.key(4))
    dynamics = randomize_heads(dynamics, jax.random.key(5)).as_hmc_limit()
    logdensity_fn = lambda x: -0.25 * jnp.sum(x**4) - 0.5 * jnp.sum(x**2)  # noqa: E731
    x = jnp.linspace(-1.0, 1.2, dim)
    v = jnp.linspace(0.7, -0.4, dim)
    ours = _leapfrog(dynamics, logdensity_fn, x, v, 1.0, integrator)

    step = integrators.velocity_verlet(
        logdensity_fn, metrics.gaussian_euclidean(jnp.ones(dim)).kinetic_energy
    )
    state = integrators.IntegratorState(x, v, *jax.value_and_grad(logdensity_fn)(x))
    for _ in range(num_steps):
        state = step(state, step_size)
    assert float(jnp.max(jnp.abs(ours.position - state.position))) < 1e-12
    assert float(jnp.max(jnp.abs(ours.momentum - state.momentum))) < 1e-12
    assert float(ours.log_det_jacobian) == 0.0


@pytest.mark.parametrize("direction", [1.0, -1.0])
def test_hmc_leapfrog_is_the_learned_leapfrog_with_zero_heads(random_dynamics, direction):
    hmc = random_dynamics.as_hmc_limit()
    x, v = _phase_point(6)
    learned = _leapfrog(hmc, anharmonic_logdensity, x, v, direction)
    plain = _leapfrog(hmc, anharmonic_logdensity, x, v, direction, hmc_leapfrog)
    for a, b in zip(learned, plain, strict=True):
        assert float(jnp.max(jnp.abs(jnp.asarray(a, float) - jnp.asarray(b, float)))) < 1e-12


def test_a_given_step_size_replaces_the_dynamics_step_size(random_dynamics):
    x, v = _phase_point(7)
    given = _leapfrog(random_dynamics, gaussian_logdensity, x, v, 1.0, step_size=jnp.asarray(0.05))
    replaced = _leapfrog(random_dynamics.with_step_size(0.05), gaussian_logdensity, x, v, 1.0)
    assert float(jnp.max(jnp.abs(given.position - replaced.position))) < 1e-14


def test_trajectory_stops_at_the_first_non_finite_value():
    # log p is NaN beyond x₀ = 1: the trajectory keeps its last finite point and is flagged.
    def logdensity_fn(x):
        return jnp.where(x[0] > 1.0, jnp.nan, -0.5 * jnp.sum(x**2))

    dynamics = L2HMCDynamics(2, num_leapfrog_steps=8, step_size=0.3, key=jax.random.key(0)).as_hmc_limit()
    x, v = jnp.array([0.5, 0.0]), jnp.array([2.0, 0.0])
    result = _leapfrog(dynamics, logdensity_fn, x, v, 1.0)
    assert not bool(result.is_finite)
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in result[:-1])
    assert float(result.position[0]) <= 1.0  # the last point where log p was finite


def test_a_divergent_sample_contributes_a_zero_gradient():
    """The gradient through a trajectory that ran into NaN is exactly zero, never NaN."""

    def logdensity_fn(x):
        return jnp.where(x[0] > 1.0, jnp.nan, -0.5 * jnp.sum(x**2))

    dynamics = randomize_heads(
        L2HMCDynamics(2, num_leapfrog_steps=8, step_size=0.3, key=jax.random.key(0)), jax.random.key(1), 0.1
    )

    def loss(dynamics, x, v):
        result = _leapfrog(dynamics, logdensity_fn, x, v, 1.0)
        return jnp.where(result.is_finite, jnp.sum(result.position**2), 0.0)

    gradient = eqx.filter_grad(loss)
    good = gradient(dynamics, jnp.array([-0.5, 0.0]), jnp.array([0.1, 0.0]))
    bad = gradient(dynamics, jnp.array([0.5, 0.0]), jnp.array([3.0, 0.0]))
    good_leaves = [
        leaf for leaf in jax.tree_util.tree_leaves(good) if jnp.issubdtype(leaf.dtype, jnp.floating)
    ]
    bad_leaves = [leaf for leaf in jax.tree_util.tree_leaves(bad) if jnp.issubdtype(leaf.dtype, jnp.floating)]
    assert any(float(jnp.max(jnp.abs(leaf))) > 0 for leaf in good_leaves)
    assert all(bool(jnp.all(leaf == 0)) for leaf in bad_leaves)


def test_finite_value_and_grad():
    value, grad, ok = finite_value_and_grad(lambda x: jnp.sum(jnp.log(x)), jnp.array([1.0, 2.0]))
    assert bool(ok) and float(value) == pytest.approx(jnp.log(2.0)) and grad.tolist() == [1.0, 0.5]
    value, grad, ok = finite_value_and_grad(lambda x: jnp.sum(jnp.log(x)), jnp.array([-1.0, 2.0]))
    assert not bool(ok) and float(value) == 0.0 and grad.tolist() == [0.0, 0.0]
    # its derivative is zero where it is not finite (a select, not 0·NaN)
    through = jax.grad(lambda x: finite_value_and_grad(lambda y: jnp.sum(jnp.log(y)), x)[1].sum())
    assert bool(jnp.all(through(jnp.array([-1.0, 2.0])) == 0.0))
    assert bool(jnp.all(jnp.isfinite(through(jnp.array([1.0, 2.0])))))


def test_aux_must_match_the_networks():
    dynamics = L2HMCDynamics(3, key=jax.random.key(0))
    with pytest.raises(ValueError, match="aux"):
        _leapfrog(dynamics, lambda x: -jnp.sum(x**2), jnp.zeros(3), jnp.zeros(3), 1.0, aux=jnp.ones(4))


def test_log_densities_that_close_over_traced_values_differentiate():
    """Data captured by the log density and vmapped (not an argument of the vmapped function), with
    gradients with respect to the dynamics: the custom VJP must not leak the batch tracer."""
    dynamics = L2HMCDynamics(2, num_leapfrog_steps=2, key=jax.random.key(0))
    data = jnp.ones((3, 2))

    def loss(dynamics):
        def one(key, x):
            logdensity_fn = lambda z: -0.5 * jnp.sum((z - x) ** 2)  # noqa: E731
            state = l2hmc_ppl.init(jnp.zeros(2), logdensity_fn)
            return l2hmc_ppl.propose(key, state, logdensity_fn, dynamics).acceptance_probability

        return jax.vmap(one)(jax.random.split(jax.random.key(1), 3), data).sum()

    gradient = eqx.filter_grad(loss)(dynamics)
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree_util.tree_leaves(gradient))
    # and with respect to the captured data (through jit): the select passes finite cotangents on
    shifted = jax.jit(
        jax.grad(lambda x: finite_value_and_grad(lambda z: -0.5 * jnp.sum((z - x) ** 2), jnp.zeros(2))[0])
    )
    np.testing.assert_allclose(shifted(jnp.array([1.0, 2.0])), [-1.0, -2.0])
