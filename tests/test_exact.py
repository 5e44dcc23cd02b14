"""Exact (non-statistical) properties of the learned leapfrog and the kernel, in float64."""

import blackjax.mcmc.integrators as integrators
import blackjax.mcmc.metrics as metrics
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import l2hmc_ppl
from l2hmc_ppl import L2HMCDynamics, learned_leapfrog
from tests.helpers import randomize_heads, tree_max_abs_diff

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


@pytest.mark.parametrize("logdensity_fn", [gaussian_logdensity, anharmonic_logdensity])
@pytest.mark.parametrize("direction", [1.0, -1.0])
def test_reverse_undoes_forward(random_dynamics, logdensity_fn, direction):
    x, v = _phase_point(2)
    grad = jax.grad(logdensity_fn)(x)
    there = learned_leapfrog(random_dynamics, logdensity_fn, x, v, grad, direction)
    back = learned_leapfrog(
        random_dynamics, logdensity_fn, there.position, there.momentum, there.logdensity_grad, -direction
    )
    assert float(jnp.max(jnp.abs(there.position - x))) > 1e-2  # it moved
    assert float(jnp.abs(there.log_det_jacobian)) > 1e-2  # the heads matter
    assert float(jnp.max(jnp.abs(back.position - x))) < 1e-10
    assert float(jnp.max(jnp.abs(back.momentum - v))) < 1e-10
    assert abs(float(there.log_det_jacobian + back.log_det_jacobian)) < 1e-10


@pytest.mark.parametrize("direction", [1.0, -1.0])
def test_log_det_matches_autodiff_jacobian(random_dynamics, direction):
    logdensity_fn = anharmonic_logdensity

    def phase_map(xi):
        x, v = xi[:DIM], xi[DIM:]
        out = learned_leapfrog(random_dynamics, logdensity_fn, x, v, jax.grad(logdensity_fn)(x), direction)
        return jnp.concatenate([out.position, out.momentum])

    x, v = _phase_point(3)
    xi = jnp.concatenate([x, v])
    sign, autodiff_log_det = jnp.linalg.slogdet(jax.jacfwd(phase_map)(xi))
    result = learned_leapfrog(random_dynamics, logdensity_fn, x, v, jax.grad(logdensity_fn)(x), direction)
    assert float(sign) == 1.0
    assert abs(float(result.log_det_jacobian - autodiff_log_det)) < 1e-10
    assert abs(float(autodiff_log_det)) > 1e-2


@pytest.mark.parametrize("dim", [1, 2, 5])
def test_zero_heads_reproduce_blackjax_velocity_verlet(random_dynamics, dim):
    num_steps, step_size = 6, 0.15
    dynamics = L2HMCDynamics(dim, num_leapfrog_steps=num_steps, step_size=step_size, key=jax.random.key(4))
    dynamics = randomize_heads(dynamics, jax.random.key(5)).as_hmc_limit()
    logdensity_fn = lambda x: -0.25 * jnp.sum(x**4) - 0.5 * jnp.sum(x**2)  # noqa: E731
    x = jnp.linspace(-1.0, 1.2, dim)
    v = jnp.linspace(0.7, -0.4, dim)
    ours = learned_leapfrog(dynamics, logdensity_fn, x, v, jax.grad(logdensity_fn)(x), 1.0)

    step = integrators.velocity_verlet(
        logdensity_fn, metrics.gaussian_euclidean(jnp.ones(dim)).kinetic_energy
    )
    state = integrators.IntegratorState(x, v, *jax.value_and_grad(logdensity_fn)(x))
    for _ in range(num_steps):
        state = step(state, step_size)
    assert float(jnp.max(jnp.abs(ours.position - state.position))) < 1e-12
    assert float(jnp.max(jnp.abs(ours.momentum - state.momentum))) < 1e-12
    assert float(ours.log_det_jacobian) == 0.0


def _run_chain(kernel, dynamics, logdensity_fn, seed, num_steps=4):
    state = l2hmc_ppl.init(jnp.full(DIM, 0.3), logdensity_fn)
    infos = []
    for key in jax.random.split(jax.random.key(seed), num_steps):
        state, info = kernel(key, state, logdensity_fn, dynamics)
        infos.append(info)
    return state, infos


def test_same_key_same_draw_and_jit_equals_no_jit():
    dynamics = L2HMCDynamics(DIM, num_leapfrog_steps=3, step_size=0.2, key=jax.random.key(0))
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


def test_vmap_over_chains_equals_loop(random_dynamics):
    kernel = jax.jit(l2hmc_ppl.build_kernel(), static_argnums=2)
    positions = jax.random.normal(jax.random.key(9), (4, DIM))
    keys = jax.random.split(jax.random.key(10), 4)
    states = jax.vmap(l2hmc_ppl.init, (0, None))(positions, gaussian_logdensity)
    batched, batched_info = jax.vmap(kernel, (0, 0, None, None))(
        keys, states, gaussian_logdensity, random_dynamics
    )
    for i in range(4):
        single = l2hmc_ppl.init(positions[i], gaussian_logdensity)
        single, info = kernel(keys[i], single, gaussian_logdensity, random_dynamics)
        assert tree_max_abs_diff(single.position, batched.position[i]) < 1e-12
        assert bool(info.is_accepted) == bool(batched_info.is_accepted[i])


def test_pytree_positions_and_float32():
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
    for bad in (0.0, -0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="step_size"):
            L2HMCDynamics(2, step_size=bad, key=jax.random.key(0))
        with pytest.raises(ValueError, match="step_size"):
            dynamics.with_step_size(bad)
    with pytest.raises(ValueError, match="aux"):
        learned_leapfrog(
            dynamics, logdensity_fn, jnp.zeros(3), jnp.zeros(3), jnp.zeros(3), 1.0, aux=jnp.ones(4)
        )


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
        kernel(jax.random.key(seed), state, logdensity_fn, other.with_step_size(0.05 * seed))
    assert traces_after_first_call > 0
    assert num_traces == traces_after_first_call
    assert kernel._cache_size() == 1


def test_dense_preconditioner_keeps_exactness():
    dynamics = L2HMCDynamics(DIM, num_leapfrog_steps=3, key=jax.random.key(0))
    dynamics = randomize_heads(dynamics, jax.random.key(1))
    chol = jnp.linalg.cholesky(COVARIANCE)
    preconditioned = dynamics.with_preconditioner(jnp.arange(DIM) * 0.1, chol)
    x = jnp.linspace(-1, 1, DIM)
    np.testing.assert_allclose(preconditioned.from_whitened(preconditioned.to_whitened(x)), x, atol=1e-12)
    g = jnp.linspace(2, -1, DIM)
    np.testing.assert_allclose(
        preconditioned.unwhiten_gradient(preconditioned.whiten_gradient(g)), g, atol=1e-12
    )
    with pytest.raises(ValueError, match="positive diagonal"):
        dynamics.with_preconditioner(jnp.zeros(DIM), -jnp.ones(DIM))
    with pytest.raises(ValueError, match="shape"):
        dynamics.with_preconditioner(jnp.zeros(DIM + 1), jnp.ones(DIM))
