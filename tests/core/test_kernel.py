"""The L2HMC transition kernel: exact properties, then invariance of the target under it.

Invariance: MH with the learned proposal must leave the target invariant for *any* network weights,
so it is checked with random, untrained heads of order one. Each coordinate's mean and variance
after 1, 5 and 10 transitions of 2¹⁶ exact draws must be within ``Z_THRESHOLD`` standard errors
(computed from the draws) of the truth. The same check must fail on deliberately broken
integrators (tests/mutants.py), which shows that it can catch log-det, direction and mask bugs.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import l2hmc_ppl
from l2hmc_ppl import L2HMCDynamics
from tests.exact_targets import TARGETS, ExactTarget
from tests.mutants import MUTANTS, randomize_heads
from tests.stats import Z_THRESHOLD, max_abs_z, tree_max_abs_diff

DIM = 5
COVARIANCE = jnp.array([[1.0 + i if i == j else 0.5 for j in range(DIM)] for i in range(DIM)])
PRECISION = jnp.linalg.inv(COVARIANCE)


def gaussian_logdensity(x):
    return -0.5 * x @ PRECISION @ x


def _run_chain(kernel, dynamics, logdensity_fn, seed, num_steps=4):
    state = l2hmc_ppl.init(jnp.full(DIM, 0.3), logdensity_fn)
    infos = []
    for key in jax.random.split(jax.random.key(seed), num_steps):
        state, info = kernel(key, state, logdensity_fn, dynamics)
        infos.append(info)
    return state, infos


def test_same_key_same_draw_and_jit_equals_no_jit():
    dynamics = L2HMCDynamics(
        DIM, num_leapfrog_steps=3, step_size=0.2, step_size_jitter=0.5, key=jax.random.key(0)
    )
    dynamics = randomize_heads(dynamics, jax.random.key(1), scale=0.1)
    kernel = l2hmc_ppl.build_kernel()
    jitted = jax.jit(kernel, static_argnums=2)
    eager_a, infos = _run_chain(kernel, dynamics, gaussian_logdensity, seed=7)
    eager_b, _ = _run_chain(kernel, dynamics, gaussian_logdensity, seed=7)
    compiled, _ = _run_chain(jitted, dynamics, gaussian_logdensity, seed=7)
    other, _ = _run_chain(jitted, dynamics, gaussian_logdensity, seed=8)
    assert any(bool(info.is_accepted) for info in infos)
    assert tree_max_abs_diff(eager_a, eager_b) == 0.0
    assert tree_max_abs_diff(eager_a, compiled) < 1e-12
    assert tree_max_abs_diff(eager_a, other) > 1e-3


def test_vmap_over_chains_equals_loop():
    dynamics = randomize_heads(
        L2HMCDynamics(DIM, num_leapfrog_steps=4, key=jax.random.key(0)), jax.random.key(1), 0.5
    )
    kernel = jax.jit(l2hmc_ppl.build_kernel(), static_argnums=2)
    positions = jax.random.normal(jax.random.key(9), (4, DIM))
    keys = jax.random.split(jax.random.key(10), 4)
    states = l2hmc_ppl.init_chains(positions, gaussian_logdensity)
    batched, batched_info = jax.vmap(kernel, (0, 0, None, None))(keys, states, gaussian_logdensity, dynamics)
    for i in range(4):
        single = l2hmc_ppl.init(positions[i], gaussian_logdensity)
        single, info = kernel(keys[i], single, gaussian_logdensity, dynamics)
        assert tree_max_abs_diff(single.position, batched.position[i]) < 1e-12
        assert bool(info.is_accepted) == bool(batched_info.is_accepted[i])


def test_pytree_and_scalar_positions_and_float32():
    def logdensity_fn(params):
        return -0.5 * jnp.sum(params["loc"] ** 2) - 0.5 * jnp.sum((params["scale"] / 2.0) ** 2)

    position = {"loc": jnp.zeros(2, jnp.float32), "scale": jnp.ones((1,), jnp.float32)}
    dynamics = L2HMCDynamics(3, key=jax.random.key(0), dtype=jnp.float32)
    state = l2hmc_ppl.init(position, logdensity_fn)
    kernel = jax.jit(l2hmc_ppl.build_kernel(), static_argnums=2)
    for key in jax.random.split(jax.random.key(1), 5):
        state, info = kernel(key, state, logdensity_fn, dynamics)
    assert state.position["loc"].shape == (2,) and state.position["scale"].shape == (1,)
    assert state.position["loc"].dtype == jnp.float32
    assert state.logdensity_grad["scale"].dtype == jnp.float32
    assert info.acceptance_rate.dtype == jnp.float32
    assert bool(jnp.isfinite(state.logdensity))

    scalar_logdensity = lambda x: -0.5 * ((x - 1.0) / 2.0) ** 2  # noqa: E731 (a scalar position)
    state = l2hmc_ppl.init(jnp.asarray(0.5), scalar_logdensity)
    state, info = kernel(jax.random.key(2), state, scalar_logdensity, L2HMCDynamics(1, key=jax.random.key(0)))
    assert state.position.shape == ()


def test_step_size_jitter_draws_the_step_size_below_epsilon():
    dynamics = L2HMCDynamics(2, step_size=0.4, step_size_jitter=0.5, key=jax.random.key(0))
    kernel = jax.jit(jax.vmap(l2hmc_ppl.build_kernel(), (0, None, None, None)), static_argnums=2)
    state = l2hmc_ppl.init(jnp.zeros(2), lambda x: -0.5 * jnp.sum(x**2))
    _, info = kernel(
        jax.random.split(jax.random.key(1), 4000), state, lambda x: -0.5 * jnp.sum(x**2), dynamics
    )
    step_sizes = np.asarray(info.step_size)
    assert step_sizes.min() >= 0.2 - 1e-6 and step_sizes.max() <= 0.4 + 1e-6
    # uniform on (0.2, 0.4): mean 0.3 with sd 0.2/√12 per draw
    assert abs(step_sizes.mean() - 0.3) < Z_THRESHOLD * 0.2 / np.sqrt(12 * 4000)
    _, fixed = kernel(
        jax.random.split(jax.random.key(1), 8),
        state,
        lambda x: -0.5 * jnp.sum(x**2),
        dynamics.with_step_size_jitter(0.0),
    )
    assert np.all(np.asarray(fixed.step_size) == np.float64(0.4))


def test_non_finite_proposal_is_a_rejection():
    # log p is NaN for x[0] > 1: proposals landing there must be rejected, never propagate NaN.
    def logdensity_fn(x):
        return jnp.where(x[0] > 1.0, jnp.nan, -0.5 * jnp.sum(x**2))

    dynamics = L2HMCDynamics(2, step_size=0.8, key=jax.random.key(0))
    kernel = jax.jit(l2hmc_ppl.build_kernel(), static_argnums=2)
    state = l2hmc_ppl.init(jnp.array([0.9, 0.0]), logdensity_fn)
    rejected_non_finite = 0
    for key in jax.random.split(jax.random.key(1), 40):
        state, info = kernel(key, state, logdensity_fn, dynamics)
        assert bool(jnp.all(jnp.isfinite(state.position))) and bool(jnp.isfinite(state.logdensity))
        assert bool(jnp.isfinite(info.acceptance_rate))
        assert not (bool(info.is_divergent) and bool(info.is_accepted))
        rejected_non_finite += int(info.is_divergent)
    assert rejected_non_finite > 0  # the NaN region was actually hit


def test_bad_input_errors():
    dynamics = L2HMCDynamics(3, key=jax.random.key(0))
    kernel = l2hmc_ppl.build_kernel()
    logdensity_fn = lambda x: -0.5 * jnp.sum(x**2)  # noqa: E731
    state = l2hmc_ppl.init(jnp.zeros(2), logdensity_fn)
    with pytest.raises(ValueError, match="dim=3"):
        kernel(jax.random.key(0), state, logdensity_fn, dynamics)
    with pytest.raises(Exception, match="not finite at the initial position"):
        l2hmc_ppl.init(jnp.array([-1.0]), lambda x: jnp.sum(jnp.log(x)))
    with pytest.raises(Exception, match="gradient of the log density is not finite"):
        l2hmc_ppl.init(jnp.array([0.0]), lambda x: jnp.sum(jnp.sqrt(jnp.abs(x))))
    with pytest.raises(TypeError, match="floating-point"):
        l2hmc_ppl.init(jnp.array([1, 2]), logdensity_fn)


def test_init_error_under_jit():
    with pytest.raises(Exception, match="not finite at the initial position"):
        jax.jit(l2hmc_ppl.init, static_argnums=1)(jnp.array([-1.0]), lambda x: jnp.sum(jnp.log(x)))


def test_new_weights_do_not_retrace():
    num_traces = 0

    def logdensity_fn(x):
        nonlocal num_traces
        num_traces += 1  # Python side effect: runs only while tracing
        return -0.5 * jnp.sum(x**2)

    kernel = jax.jit(l2hmc_ppl.build_kernel(), static_argnums=2)
    state = l2hmc_ppl.init(jnp.zeros(2), lambda x: -0.5 * jnp.sum(x**2))
    first = L2HMCDynamics(2, key=jax.random.key(0))
    kernel(jax.random.key(0), state, logdensity_fn, first)
    traces_after_first_call = num_traces
    for seed in range(1, 4):
        other = randomize_heads(L2HMCDynamics(2, key=jax.random.key(seed)), jax.random.key(seed))
        other = other.with_step_size(0.05 * seed).with_step_size_jitter(0.1 * seed)
        kernel(jax.random.key(seed), state, logdensity_fn, other)
    assert traces_after_first_call > 0
    assert num_traces == traces_after_first_call
    assert kernel._cache_size() == 1


# ------------------------------------------------------------------------------------------------
# Invariance of the target, and the mutants that must fail it

NUM_DRAWS = 2**16
# The mutants are checked after 10 transitions (the bias of a non-involutive proposal accumulates;
# the wrong-mask mutant is only ~5 standard errors off after 5), so exactness is checked there too.
MUTANT_TRANSITIONS = 10


def random_dynamics(seed: int, jitter: float = 0.0) -> L2HMCDynamics:
    dynamics = L2HMCDynamics(
        2,
        num_leapfrog_steps=5,
        hidden_size=10,
        step_size=0.25,
        step_size_jitter=jitter,
        key=jax.random.key(seed),
    )
    return randomize_heads(dynamics, jax.random.key(seed + 100), scale=0.5)


def transitioned_draws(
    target: ExactTarget, dynamics, num_transitions: int, integrator=l2hmc_ppl.learned_leapfrog
):
    """Apply ``num_transitions`` kernel steps to 2¹⁶ exact draws; return the draws and mean acceptance."""
    kernel = l2hmc_ppl.build_kernel(integrator)

    @jax.jit
    def run(key):
        key_init, key_steps = jax.random.split(key)
        states = l2hmc_ppl.init_chains(target.sample(key_init, NUM_DRAWS), target.logdensity_fn)
        states, _, infos = l2hmc_ppl.run_chains(
            key_steps, target.logdensity_fn, dynamics, states, num_transitions, kernel=kernel
        )
        return states.position, infos.acceptance_rate.mean()

    return run(jax.random.key(0))


@pytest.mark.parametrize("num_transitions", [1, 5, MUTANT_TRANSITIONS])
@pytest.mark.parametrize("target_name", list(TARGETS))
def test_exact_draws_stay_exact(target_name, num_transitions):
    target = TARGETS[target_name]()
    draws, acceptance = transitioned_draws(target, random_dynamics(1), num_transitions)
    z = max_abs_z(draws, target.mean, target.variance)
    print(f"{target_name} after {num_transitions}: max |z| = {z:.2f}, acceptance {float(acceptance):.2f}")
    assert 0.05 < float(acceptance) < 0.99  # the proposals move and are sometimes rejected
    assert z < Z_THRESHOLD


@pytest.mark.parametrize("target_name", list(TARGETS))
def test_jittered_step_size_keeps_the_target(target_name):
    target = TARGETS[target_name]()
    draws, acceptance = transitioned_draws(target, random_dynamics(2, jitter=0.7), MUTANT_TRANSITIONS)
    assert 0.05 < float(acceptance) < 0.99
    assert max_abs_z(draws, target.mean, target.variance) < Z_THRESHOLD


@pytest.mark.parametrize("mutant", list(MUTANTS))
def test_broken_kernels_are_detected(mutant):
    worst = 0.0
    for target_name, make_target in TARGETS.items():
        target = make_target()
        draws, _ = transitioned_draws(
            target, random_dynamics(1), MUTANT_TRANSITIONS, integrator=MUTANTS[mutant]
        )
        z = max_abs_z(draws, target.mean, target.variance)
        print(f"mutant {mutant} on {target_name}: max |z| = {z:.2f}")
        worst = max(worst, z)
    assert worst > Z_THRESHOLD
