"""The learned dynamics: construction, the copies with parts replaced, the preconditioner, defaults."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import l2hmc_ppl
from l2hmc_ppl import L2HMCDynamics, default_dynamics
from l2hmc_ppl.dynamics import DEFAULT_NUM_LEAPFROG_STEPS, DEFAULT_STEP_SIZE_JITTER, default_hidden_size
from tests.mutants import randomize_heads

DIM = 5
COVARIANCE = jnp.array([[1.0 + i if i == j else 0.5 for j in range(DIM)] for i in range(DIM)])


def test_masks_have_half_the_coordinates_and_dim_one_updates_in_the_second_half():
    dynamics = L2HMCDynamics(5, num_leapfrog_steps=7, key=jax.random.key(0))
    assert dynamics.masks.shape == (7, 5) and dynamics.masks.dtype == bool
    assert np.all(np.asarray(dynamics.masks).sum(axis=1) == 2)
    assert not np.asarray(L2HMCDynamics(1, key=jax.random.key(0)).masks).any()


def test_hmc_limit_has_zero_heads_and_keeps_the_rest():
    dynamics = randomize_heads(
        L2HMCDynamics(3, step_size_jitter=0.3, key=jax.random.key(0)), jax.random.key(1)
    )
    hmc = dynamics.as_hmc_limit()
    scale, transformation, translation = hmc.position_net(jnp.ones(3), jnp.ones(3), jnp.ones(2))
    assert all(bool(jnp.all(out == 0)) for out in (scale, transformation, translation))
    assert float(hmc.step_size_jitter) == pytest.approx(0.3) and bool(jnp.all(hmc.masks == dynamics.masks))


def test_jitter_and_preconditioner_are_not_trained():
    dynamics = L2HMCDynamics(3, step_size_jitter=0.5, key=jax.random.key(0))
    trainable = dynamics.trainable_filter()
    assert trainable.log_step_size is True
    assert (trainable.masks, trainable.step_size_jitter, trainable.preconditioner_scale) == (
        False,
        False,
        False,
    )


def test_dense_preconditioner_round_trips():
    dynamics = randomize_heads(
        L2HMCDynamics(DIM, num_leapfrog_steps=3, key=jax.random.key(0)), jax.random.key(1)
    )
    preconditioned = dynamics.with_preconditioner(jnp.arange(DIM) * 0.1, jnp.linalg.cholesky(COVARIANCE))
    x = jnp.linspace(-1, 1, DIM)
    np.testing.assert_allclose(preconditioned.from_whitened(preconditioned.to_whitened(x)), x, atol=1e-12)
    g = jnp.linspace(2, -1, DIM)
    np.testing.assert_allclose(
        preconditioned.unwhiten_gradient(preconditioned.whiten_gradient(g)), g, atol=1e-12
    )


def test_fresh_dynamics_are_close_to_hmc_at_any_dimension():
    """A fresh sampler's acceptance, proposal by proposal (same keys), is no farther from its HMC
    limit's at d = 1000 than at the paper's d = 2 (the paper's head initialisation, unscaled, gave
    0.10 against 0.97 at d = 1000)."""
    logdensity_fn = lambda x: -0.5 * jnp.sum(x**2)  # noqa: E731
    kernel = jax.jit(jax.vmap(l2hmc_ppl.build_kernel(), (0, 0, None, None)), static_argnums=2)
    distance = {}
    for dim in (2, 1000):
        dynamics = L2HMCDynamics(dim, key=jax.random.key(0))
        states = l2hmc_ppl.init_chains(jax.random.normal(jax.random.key(1), (64, dim)), logdensity_fn)
        keys = jax.random.split(jax.random.key(2), 64)
        fresh = kernel(keys, states, logdensity_fn, dynamics)[1].acceptance_rate
        hmc = kernel(keys, states, logdensity_fn, dynamics.as_hmc_limit())[1].acceptance_rate
        distance[dim] = float(jnp.mean(jnp.abs(fresh - hmc)))
    assert distance[1000] <= distance[2], distance


def test_default_dynamics():
    dynamics = default_dynamics(7, key=jax.random.key(0))
    assert dynamics.num_leapfrog_steps == DEFAULT_NUM_LEAPFROG_STEPS
    assert dynamics.hidden_size == default_hidden_size(7)
    assert float(dynamics.step_size_jitter) == pytest.approx(DEFAULT_STEP_SIZE_JITTER)
    scale, _, translation = dynamics.momentum_net(jnp.ones(7), jnp.ones(7), jnp.ones(2))
    assert bool(jnp.all(scale == 0)) and bool(jnp.all(translation == 0))  # exactly HMC until trained
    assert (
        default_dynamics(
            7, key=jax.random.key(0), num_leapfrog_steps=3, step_size_jitter=0.0
        ).num_leapfrog_steps
        == 3
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(dim=0), "dim must be a positive integer, got 0"),
        (dict(dim=2.0), "dim must be a positive integer"),
        (dict(num_leapfrog_steps=0), "num_leapfrog_steps must be a positive integer"),
        (dict(num_leapfrog_steps=True), "num_leapfrog_steps must be a positive integer, got True"),
        (dict(hidden_size=-3), "hidden_size must be a positive integer"),
        (dict(num_hidden_layers=-1), "num_hidden_layers must be a non-negative integer"),
        (dict(aux_size=0), "aux_size must be None or a positive integer"),
        (dict(step_size=0.0), "step_size must be a positive finite number"),
        (dict(step_size=float("nan")), "step_size must be a positive finite number"),
        (dict(step_size_jitter=1.0), r"step_size_jitter must be in \[0, 1\)"),
        (dict(key=42), "key must be a JAX PRNG key"),
        (dict(dtype=jnp.int32), "dtype must be a floating-point dtype"),
    ],
)
def test_bad_construction_is_refused(kwargs, match):
    arguments = dict(dim=2, key=jax.random.key(0)) | kwargs
    dim = arguments.pop("dim")
    with pytest.raises((ValueError, TypeError), match=match):
        L2HMCDynamics(dim, **arguments)


def test_bad_replacements_are_refused_also_under_jit():
    dynamics = L2HMCDynamics(3, key=jax.random.key(0))
    for bad in (0.0, -0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="step_size"):
            dynamics.with_step_size(bad)
    with pytest.raises(Exception, match="step_size must be a positive finite number"):
        jax.block_until_ready(jax.jit(lambda d, e: d.with_step_size(e).log_step_size)(dynamics, 0.0))
    with pytest.raises(ValueError, match="positive diagonal"):
        dynamics.with_preconditioner(jnp.zeros(3), -jnp.ones(3))
    with pytest.raises(ValueError, match="shape"):
        dynamics.with_preconditioner(jnp.zeros(4), jnp.ones(3))
    with pytest.raises(ValueError, match="loc must be finite"):
        dynamics.with_preconditioner(jnp.array([0.0, jnp.nan, 0.0]), jnp.ones(3))
    with pytest.raises(ValueError, match="step_size_jitter"):
        dynamics.with_step_size_jitter(-0.1)
