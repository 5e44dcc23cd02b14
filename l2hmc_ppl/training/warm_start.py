"""Warm start: tune HMC's step size and mass matrix on the chain batch before training.

Beyond the paper. L2HMC with zero heads is plain HMC, so training can start from a *tuned* HMC
instead of an arbitrary one: a short multi-chain run of the HMC limit adapts the step size (dual
averaging, Hoffman & Gelman 2014, BlackJAX's implementation) and estimates the target's mean and
covariance from the chains. The dynamics then carry the affine preconditioner x = μ + L z
(L = diag(σ) or the Cholesky factor of the covariance), so that the learned leapfrog runs in roughly
whitened coordinates; with zero heads this is exactly HMC with inverse mass matrix L Lᵀ.

Schedule over ``num_steps`` transitions of all chains at once, in four equal phases: step-size
adaptation with the identity preconditioner; more adaptation; more adaptation while collecting the
chains' positions; then the preconditioner is set from the pooled positions and the last phase
re-adapts the step size. The
covariance estimate is regularised towards a small multiple of the identity, as in Stan.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from blackjax.adaptation.step_size import dual_averaging_adaptation
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float, PRNGKeyArray

from l2hmc_ppl.core.kernel import L2HMCState, build_kernel
from l2hmc_ppl.dynamics.dynamics import L2HMCDynamics

__all__ = ["WarmStartInfo", "warm_start"]


class WarmStartInfo(NamedTuple):
    """What the warm start measured.

    Attributes:
        step_size: the adapted ε.
        mean: estimated target mean (flattened).
        covariance: estimated covariance (or its diagonal) that set the preconditioner.
        acceptance_rate: mean acceptance over the chains, per warm-start transition.
    """

    step_size: Float[Array, ""]
    mean: Float[Array, " dim"]
    covariance: Array
    acceptance_rate: Float[Array, " num_steps"]


@eqx.filter_jit
def _adapt_step_size(rng_key, states, logdensity_fn, dynamics, da_state, num_steps, target_acceptance_rate):
    """Dual averaging on the chain-averaged acceptance, continuing from ``da_state``.

    Compiled once per dynamics structure and number of steps: the warm start calls it for four
    phases of equal length, so the kernel is compiled once (twice with a dense preconditioner).
    Returns the states, the dual-averaging state, the chains' positions and the acceptances.
    """
    kernel = build_kernel()
    _, da_update, _ = dual_averaging_adaptation(target_acceptance_rate)
    num_chains = jax.tree_util.tree_leaves(states.position)[0].shape[0]

    def one_step(carry, key):
        states, da_state = carry
        current = dynamics.with_step_size(jnp.exp(da_state.log_step_size))
        keys = jax.random.split(key, num_chains)
        states, info = jax.vmap(kernel, (0, 0, None, None))(keys, states, logdensity_fn, current)
        acceptance = info.acceptance_rate.mean()
        flat_positions = jax.vmap(lambda p: ravel_pytree(p)[0])(states.position)
        return (states, da_update(da_state, acceptance)), (flat_positions, acceptance)

    (states, da_state), (positions, acceptance) = jax.lax.scan(
        one_step, (states, da_state), jax.random.split(rng_key, num_steps)
    )
    return states, da_state, positions, acceptance


def warm_start(
    rng_key: PRNGKeyArray,
    logdensity_fn: Callable,
    dynamics: L2HMCDynamics,
    states: L2HMCState,
    *,
    num_steps: int = 400,
    dense_mass: bool = False,
    target_acceptance_rate: float = 0.75,
) -> tuple[L2HMCDynamics, L2HMCState, WarmStartInfo]:
    """Adapt ε and the preconditioner of ``dynamics`` on a batch of chains (see the module docstring).

    Args:
        rng_key: PRNG key.
        logdensity_fn: log p on one (unbatched) position.
        dynamics: the dynamics to adapt. The result has their trunks and masks, zero heads (so it
            is exactly the tuned HMC), the adapted ε and the preconditioner. To continue training
            already trained dynamics, skip the warm start.
        states: batched chain states (leading chain axis), e.g. ``jax.vmap(init, (0, None))``.
        num_steps: transitions of all chains (at least 8; rounded down to a multiple of 4).
        dense_mass: estimate a dense covariance (Cholesky preconditioner) instead of a diagonal.
        target_acceptance_rate: the acceptance rate the step size aims for.

    Returns:
        ``(dynamics, states, info)``: the HMC-limit dynamics with the adapted ε and preconditioner,
        the burned-in chain states, and what was measured.
    """
    if num_steps < 8:
        raise ValueError(f"the warm start needs at least 8 steps, got num_steps={num_steps}")
    phase_length = num_steps // 4
    key_first, key_collect_a, key_collect_b, key_last = jax.random.split(rng_key, 4)
    da_init, _, da_final = dual_averaging_adaptation(target_acceptance_rate)
    hmc = dynamics.as_hmc_limit()
    adapt = functools.partial(
        _adapt_step_size,
        logdensity_fn=logdensity_fn,
        num_steps=phase_length,
        target_acceptance_rate=target_acceptance_rate,
    )

    # Phase 1: step size only, identity metric. Phases 2-3: keep adapting and pool the positions
    # of the last of them over all chains.
    dtype = hmc.log_step_size.dtype

    def dual_averaging_start(step_size):
        # Arrays of one dtype throughout (BlackJAX returns some Python scalars), so that the four
        # phases share one compiled `_adapt_step_size`.
        return jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype), da_init(jnp.asarray(step_size, dtype)))

    da_state = dual_averaging_start(hmc.step_size)
    states, da_state, _, acceptance_first = adapt(key_first, states, dynamics=hmc, da_state=da_state)
    states, da_state, _, acceptance_a = adapt(key_collect_a, states, dynamics=hmc, da_state=da_state)
    states, da_state, pooled, acceptance_b = adapt(key_collect_b, states, dynamics=hmc, da_state=da_state)
    pooled = pooled.reshape(-1, dynamics.dim)
    num_pooled = pooled.shape[0]
    mean = pooled.mean(axis=0)
    shrink = num_pooled / (num_pooled + 5.0)  # Stan's regularisation towards 1e-3 · I
    if dense_mass:
        covariance = jnp.cov(pooled, rowvar=False).reshape(dynamics.dim, dynamics.dim)
        covariance = shrink * covariance + 1e-3 * (1.0 - shrink) * jnp.eye(dynamics.dim)
        scale = jnp.linalg.cholesky(covariance)
    else:
        covariance = shrink * pooled.var(axis=0) + 1e-3 * (1.0 - shrink)
        scale = jnp.sqrt(covariance)
    # Phase 4: the step size was tuned for the old metric; restart dual averaging from ε = 1.
    hmc = hmc.with_preconditioner(mean, scale)
    restart = dual_averaging_start(1.0)
    states, da_state, _, acceptance_last = adapt(key_last, states, dynamics=hmc, da_state=restart)
    step_size = da_final(da_state)
    # Start training exactly at the tuned HMC: the heads' small random initialisation is not small
    # once ε and the metric are tuned (on a 25-d posterior it can cost half the acceptance rate).
    adapted = hmc.with_step_size(step_size)
    info = WarmStartInfo(
        step_size=step_size,
        mean=mean,
        covariance=covariance,
        acceptance_rate=jnp.concatenate([acceptance_first, acceptance_a, acceptance_b, acceptance_last]),
    )
    return adapted, states, info
