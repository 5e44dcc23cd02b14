"""One-step invariance: exact draws of the target stay exact draws after L2HMC transitions.

MH with the learned proposal must leave the target invariant for *any* network weights, so this is
checked with random, untrained heads of order one. Each coordinate's mean and variance after 1, 5
and 10 transitions must be within 5 standard errors (computed from the 2¹⁶ draws) of the truth. The same
checks are run on deliberately broken kernels (mutants) and must fail there, which shows that they
have the power to catch log-det, direction and mask bugs.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import l2hmc_ppl
import l2hmc_ppl.core.kernel as kernel_module
import l2hmc_ppl.core.leapfrog as leapfrog_module
from l2hmc_ppl import L2HMCDynamics
from tests.helpers import Z_THRESHOLD, max_abs_z, randomize_heads

NUM_DRAWS = 2**16
# The mutants are checked after 10 transitions (the bias of a non-involutive proposal accumulates;
# the wrong-mask mutant is only ~5 standard errors off after 5), so exactness is checked there too.
MUTANT_TRANSITIONS = 10


class ExactTarget(NamedTuple):
    logdensity_fn: callable
    sample: callable
    mean: np.ndarray
    variance: np.ndarray


def correlated_gaussian() -> ExactTarget:
    covariance = jnp.array([[1.0, 1.8], [1.8, 4.0]])  # correlation 0.9
    precision = jnp.linalg.inv(covariance)
    chol = jnp.linalg.cholesky(covariance)
    return ExactTarget(
        lambda x: -0.5 * x @ precision @ x,
        lambda key, n: jax.random.normal(key, (n, 2)) @ chol.T,
        np.zeros(2),
        np.diag(np.asarray(covariance)),
    )


def banana() -> ExactTarget:
    """x0 ~ N(0, 1), x1 | x0 ~ N(x0²/2, 0.5²): skewed in x1, curved."""

    def logdensity_fn(x):
        return -0.5 * x[0] ** 2 - 0.5 * ((x[1] - 0.5 * x[0] ** 2) / 0.5) ** 2

    def sample(key, n):
        key_a, key_b = jax.random.split(key)
        x0 = jax.random.normal(key_a, (n,))
        return jnp.stack([x0, 0.5 * x0**2 + 0.5 * jax.random.normal(key_b, (n,))], axis=1)

    # E[x1] = 1/2, Var[x1] = Var(x0²)/4 + 1/4 = 3/4.
    return ExactTarget(logdensity_fn, sample, np.array([0.0, 0.5]), np.array([1.0, 0.75]))


def two_mode_mixture() -> ExactTarget:
    """0.3 N((−1.5, 0), 0.5² I) + 0.7 N((1.5, 0), 0.5² I): unequal weights, so not symmetric."""
    weights = jnp.array([0.3, 0.7])
    centres = jnp.array([[-1.5, 0.0], [1.5, 0.0]])
    sd = 0.5

    def logdensity_fn(x):
        log_components = -0.5 * jnp.sum(((x - centres) / sd) ** 2, axis=1)
        return jax.nn.logsumexp(log_components + jnp.log(weights))

    def sample(key, n):
        key_c, key_n = jax.random.split(key)
        component = jax.random.choice(key_c, 2, (n,), p=weights)
        return centres[component] + sd * jax.random.normal(key_n, (n, 2))

    mean_x0 = float(weights @ centres[:, 0])
    var_x0 = sd**2 + float(weights @ centres[:, 0] ** 2) - mean_x0**2
    return ExactTarget(logdensity_fn, sample, np.array([mean_x0, 0.0]), np.array([var_x0, sd**2]))


TARGETS = {"correlated_gaussian": correlated_gaussian, "banana": banana, "mixture": two_mode_mixture}


def random_dynamics(seed: int) -> L2HMCDynamics:
    dynamics = L2HMCDynamics(
        2, num_leapfrog_steps=5, hidden_size=10, step_size=0.25, key=jax.random.key(seed)
    )
    return randomize_heads(dynamics, jax.random.key(seed + 100), scale=0.5)


def transitioned_draws(target: ExactTarget, dynamics, num_transitions: int, seed: int = 0):
    """Apply ``num_transitions`` kernel steps to 2¹⁶ exact draws; return the draws and mean acceptance."""
    kernel = l2hmc_ppl.build_kernel()  # built afresh, so a monkeypatched mutant is traced anew

    @jax.jit
    def run(key):
        key_init, key_steps = jax.random.split(key)
        positions = target.sample(key_init, NUM_DRAWS)
        states = jax.vmap(l2hmc_ppl.init, (0, None))(positions, target.logdensity_fn)

        def one_transition(states, key):
            keys = jax.random.split(key, NUM_DRAWS)
            states, info = jax.vmap(kernel, (0, 0, None, None))(keys, states, target.logdensity_fn, dynamics)
            return states, info.acceptance_rate.mean()

        states, acceptance = jax.lax.scan(
            one_transition, states, jax.random.split(key_steps, num_transitions)
        )
        return states.position, acceptance.mean()

    return run(jax.random.key(seed))


@pytest.mark.parametrize("num_transitions", [1, 5, MUTANT_TRANSITIONS])
@pytest.mark.parametrize("target_name", list(TARGETS))
def test_exact_draws_stay_exact(target_name, num_transitions):
    target = TARGETS[target_name]()
    draws, acceptance = transitioned_draws(target, random_dynamics(1), num_transitions)
    z = max_abs_z(draws, target.mean, target.variance)
    print(f"{target_name} after {num_transitions}: max |z| = {z:.2f}, acceptance {float(acceptance):.2f}")
    assert 0.05 < float(acceptance) < 0.99  # the proposals move and are sometimes rejected
    assert z < Z_THRESHOLD


# ------------------------------------------------------------------------------------------------
# Mutants: each breaks exactness in one way and must be caught by the same check.


def _mutant_dropped_log_det(monkeypatch):
    original = kernel_module.learned_leapfrog

    def without_log_det(*args, **kwargs):
        return original(*args, **kwargs)._replace(log_det_jacobian=jnp.zeros(()))

    monkeypatch.setattr(kernel_module, "learned_leapfrog", without_log_det)


def _mutant_no_direction_flip(monkeypatch):
    # Always integrating forward: the proposal L_θ ξ alone is not an involution.
    original = kernel_module.learned_leapfrog

    def forward_only(dynamics, logdensity_fn, position, momentum, grad, direction, aux=None):
        return original(dynamics, logdensity_fn, position, momentum, grad, 1.0, aux)

    monkeypatch.setattr(kernel_module, "learned_leapfrog", forward_only)


def _mutant_wrong_backward_mask(monkeypatch):
    # The reverse pass undoes the position halves in the forward order: not the inverse map.
    monkeypatch.setattr(leapfrog_module, "_first_update_mask", lambda masks, t, is_forward: masks[t])


MUTANTS = {
    "dropped_log_det": _mutant_dropped_log_det,
    "no_direction_flip": _mutant_no_direction_flip,
    "wrong_backward_mask": _mutant_wrong_backward_mask,
}


@pytest.mark.parametrize("mutant", list(MUTANTS))
def test_broken_kernels_are_detected(mutant, monkeypatch):
    MUTANTS[mutant](monkeypatch)
    worst = 0.0
    for target_name, make_target in TARGETS.items():
        target = make_target()
        draws, _ = transitioned_draws(target, random_dynamics(1), num_transitions=MUTANT_TRANSITIONS)
        z = max_abs_z(draws, target.mean, target.variance)
        print(f"mutant {mutant} on {target_name}: max |z| = {z:.2f}")
        worst = max(worst, z)
    assert worst > Z_THRESHOLD
