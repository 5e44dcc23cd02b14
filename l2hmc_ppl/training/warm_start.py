"""Warm start: burn the chains in and tune HMC's step size and preconditioner before training.

Beyond the paper. L2HMC with zero heads is plain HMC, so training can start from a *tuned* HMC
instead of an arbitrary one. The warm start runs the HMC limit of the dynamics on all chains at
once, in the way Stan's warmup does for one chain (Stan Reference Manual, "HMC algorithm
parameters"), with BlackJAX's building blocks:

1. **burn-in** (3/16 of the steps): every chain adapts its *own* step size by dual averaging
   (`blackjax.adaptation.step_size.dual_averaging_adaptation`), so a chain that starts in a region of
   high curvature takes small steps without slowing the others;
2. **windows** of 1, 2, 4 and 4 sixteenths: the chains' positions, pooled over chains and
   transitions, feed BlackJAX's Welford mass-matrix adaptation
   (`blackjax.adaptation.mass_matrix.mass_matrix_adaptation`, regularised towards 10⁻³·I as in
   Stan); at the end of each window the preconditioner x = μ + L z is set from it (L = diag(σ),
   or the Cholesky factor of the covariance) and dual averaging restarts;
3. **final** (2/16): step-size adaptation only, with the last preconditioner.

Before each window, chains that have not reached the bulk of the target (log density more than
10 + 5·√(d/2) below the upper quartile of the chains', a gap that typical draws of a d-dimensional
posterior almost never show: their log density has a standard deviation near √(d/2)) are moved
to the positions of randomly chosen chains that have; their number is reported.

At the end, two checks that the chains have arrived, each with a warning: the step size must
have settled (mean acceptance of the final phase at least half the target), and the chains must
not still be climbing. Climbing chains' log density rises over the final phase; the chains are
independent, so the mean over chains of that rise, Δ = (mean of the last quarter − mean of the
first quarter of the phase), has a standard error from the spread across chains whatever the
autocorrelation within one, and the warm start warns when Δ exceeds 4.5 standard errors.

The returned dynamics are the HMC limit (zero heads) with the median of the chains' adapted step
sizes and the preconditioner, so training starts from exactly that tuned HMC. Each phase runs the
same compiled block of transitions (one compilation per metric kind, diagonal or dense).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float, Int, PRNGKeyArray

from l2hmc_ppl.core.chains import num_chains
from l2hmc_ppl.core.kernel import L2HMCState, build_kernel
from l2hmc_ppl.core.leapfrog import hmc_leapfrog
from l2hmc_ppl.dynamics.dynamics import L2HMCDynamics
from l2hmc_ppl.training.progress import progress_bar as make_progress_bar

__all__ = ["WarmStartInfo", "warm_start"]

#: (phase, length in sixteenths of the warm start). A "window" collects the positions and ends
#: with a new preconditioner.
SCHEDULE = (("burn_in", 3), ("window", 1), ("window", 2), ("window", 4), ("window", 4), ("final", 2))
_NUM_BLOCKS = sum(length for _, length in SCHEDULE)

#: z-score of the chains' mean rise in log density over the last window above which the warm start
#: warns that they are still climbing towards the posterior.
ARRIVAL_Z = 4.5


class WarmStartInfo(NamedTuple):
    """What the warm start measured.

    Attributes:
        step_size: the adapted ε (median over chains).
        mean: estimated target mean (flattened): the preconditioner's loc.
        covariance: the regularised covariance (or its diagonal) that set the preconditioner.
        acceptance_rate: mean acceptance over the chains, per transition.
        num_restarted: chains moved to another chain's position because they had not reached
            the bulk of the target, over the whole warm start.
        logdensity_rise_z: the mean rise in log density over the last window in units of its
            standard error (module docstring); large when the chains have not arrived.
    """

    step_size: Float[Array, ""]
    mean: Float[Array, " dim"]
    covariance: Array
    acceptance_rate: Float[Array, " num_steps"]
    num_restarted: Int[Array, ""]
    logdensity_rise_z: Float[Array, ""]


def _adaptation(target_acceptance_rate, dense_mass):
    from blackjax.adaptation.mass_matrix import mass_matrix_adaptation
    from blackjax.adaptation.step_size import dual_averaging_adaptation

    return dual_averaging_adaptation(target_acceptance_rate), mass_matrix_adaptation(not dense_mass)


class _AdaptationState(NamedTuple):
    """What the warm start carries between its compiled blocks."""

    chains: L2HMCState
    dynamics: L2HMCDynamics  # the HMC limit with the current preconditioner
    da_state: Any  # per-chain dual averaging (leaves with a chain axis)
    mm_state: Any  # BlackJAX's mass-matrix adaptation (pooled Welford)
    covariance: Array  # the regularised covariance behind the current preconditioner
    num_restarted: Int[Array, ""]


def _as_dtype(tree, dtype):
    """BlackJAX's states mix Python scalars and default-dtype arrays: one dtype, so blocks share a compile."""
    return jax.tree_util.tree_map(
        lambda x: (
            jnp.asarray(x, dtype) if jnp.issubdtype(jnp.result_type(x), jnp.floating) else jnp.asarray(x)
        ),
        tree,
    )


def _restart_dual_averaging(log_step_sizes, target_acceptance_rate, dtype):
    (da_init, _, _), _ = _adaptation(target_acceptance_rate, False)
    return _as_dtype(jax.vmap(da_init)(jnp.exp(log_step_sizes)), dtype)


@eqx.filter_jit
def _init(dynamics, chains, dense_mass, target_acceptance_rate) -> _AdaptationState:
    _, (mm_init, _, _) = _adaptation(target_acceptance_rate, dense_mass)
    dtype = dynamics.log_step_size.dtype
    hmc = dynamics.as_hmc_limit()
    scale = hmc.preconditioner_scale
    if dense_mass and scale.ndim == 1:  # one metric structure throughout: one compilation
        hmc = hmc.with_preconditioner(hmc.preconditioner_loc, jnp.diag(scale))
    scale = hmc.preconditioner_scale
    size = num_chains(chains.position, "chains")
    return _AdaptationState(
        chains=chains,
        dynamics=hmc,
        da_state=_restart_dual_averaging(jnp.full((size,), hmc.log_step_size), target_acceptance_rate, dtype),
        mm_state=_as_dtype(mm_init(dynamics.dim), dtype),
        covariance=scale @ scale.T if dense_mass else scale**2,
        num_restarted=jnp.zeros((), jnp.int32),
    )


@eqx.filter_jit
def _adapt_block(
    rng_key, index, state: _AdaptationState, collect, logdensity_fn, num_steps, target_acceptance_rate
):
    """``num_steps`` transitions of every chain with its own step size; Welford on the positions.

    Block ``index`` uses the key ``fold_in(rng_key, index)``. Returns the new state and per
    transition the chains' mean acceptance and log densities.
    """
    rng_key = jax.random.fold_in(rng_key, index)
    dynamics = state.dynamics
    (_, da_update, _), (_, mm_update, _) = _adaptation(target_acceptance_rate, dynamics.dense_preconditioner)
    kernel = build_kernel(hmc_leapfrog)  # the HMC limit, without evaluating the networks
    size = num_chains(state.chains.position, "chains")

    def transition(key, chain, log_step_size):
        return kernel(key, chain, logdensity_fn, dynamics.with_step_size(jnp.exp(log_step_size)))

    def one_step(carry, key):
        chains, da_state, mm_state = carry
        keys = jax.random.split(key, size)
        chains, info = jax.vmap(transition)(keys, chains, da_state.log_step_size)
        da_state = jax.vmap(da_update)(da_state, info.acceptance_rate)
        flat_positions = jax.vmap(lambda p: ravel_pytree(p)[0])(chains.position)
        updated = jax.lax.scan(lambda s, x: (mm_update(s, x), None), mm_state, flat_positions)[0]
        mm_state = jax.tree_util.tree_map(lambda new, old: jnp.where(collect, new, old), updated, mm_state)
        return (chains, da_state, mm_state), (info.acceptance_rate.mean(), chains.logdensity)

    (chains, da_state, mm_state), (acceptance, logdensity) = jax.lax.scan(
        one_step, (state.chains, state.da_state, state.mm_state), jax.random.split(rng_key, num_steps)
    )
    dtype = dynamics.log_step_size.dtype
    new_state = state._replace(
        chains=chains, da_state=_as_dtype(da_state, dtype), mm_state=_as_dtype(mm_state, dtype)
    )
    return new_state, acceptance, logdensity


@eqx.filter_jit
def _restart_stragglers(rng_key, index, state: _AdaptationState) -> _AdaptationState:
    """Move chains far below the upper quartile of the log density to the states of random others."""
    rng_key = jax.random.fold_in(rng_key, index)
    threshold = 10.0 + 5.0 * math.sqrt(state.dynamics.dim / 2.0)
    logdensity = state.chains.logdensity
    # measured from the upper quartile, so that up to three quarters of the chains can be stuck
    arrived = logdensity >= jnp.percentile(logdensity, 75) - threshold
    # a random arrived chain for each chain (arrived chains are their own donors)
    scores = jnp.where(
        arrived[None, :], jax.random.uniform(rng_key, (logdensity.size, logdensity.size)), -1.0
    )
    donors = jnp.where(arrived, jnp.arange(logdensity.size), jnp.argmax(scores, axis=1))

    def take(tree):
        return jax.tree_util.tree_map(lambda leaf: leaf[donors], tree)

    return state._replace(
        chains=take(state.chains),
        da_state=take(state.da_state),
        num_restarted=state.num_restarted + jnp.sum(~arrived).astype(jnp.int32),
    )


@eqx.filter_jit
def _end_window(state: _AdaptationState, target_acceptance_rate) -> _AdaptationState:
    """Set the preconditioner from the window's Welford estimate and restart dual averaging."""
    dense = state.dynamics.dense_preconditioner
    _, (_, _, mm_final) = _adaptation(target_acceptance_rate, dense)
    dtype = state.dynamics.log_step_size.dtype
    mean = state.mm_state.wc_state.mean
    mm_state = _as_dtype(mm_final(state.mm_state), dtype)
    covariance = mm_state.inverse_mass_matrix
    scale = jnp.linalg.cholesky(covariance) if dense else jnp.sqrt(covariance)
    return state._replace(
        dynamics=state.dynamics.with_preconditioner(mean, scale),
        da_state=_restart_dual_averaging(state.da_state.log_step_size, target_acceptance_rate, dtype),
        mm_state=mm_state,
        covariance=covariance,
    )


def _rise_z_score(logdensity: Float[Array, "num_steps num_chains"]) -> Float[Array, ""]:
    """Mean over chains of the rise in log density over a window, over its standard error."""
    quarter = max(1, logdensity.shape[0] // 4)
    rise = logdensity[-quarter:].mean(axis=0) - logdensity[:quarter].mean(axis=0)
    standard_error = jnp.std(rise, ddof=1) / jnp.sqrt(rise.size)
    return jnp.where(standard_error > 0, rise.mean() / standard_error, 0.0)


@eqx.filter_jit
def _finish(state: _AdaptationState, acceptances, final_logdensity):
    # Each chain's dual-averaged ε; the dynamics take the median (robust to a few odd chains).
    step_size = jnp.median(jnp.exp(state.da_state.log_step_size_avg))
    info = WarmStartInfo(
        step_size=step_size,
        mean=state.dynamics.preconditioner_loc,
        covariance=state.covariance,
        acceptance_rate=jnp.concatenate(acceptances),
        num_restarted=state.num_restarted,
        logdensity_rise_z=_rise_z_score(jnp.concatenate(final_logdensity)),
    )
    return state.dynamics.with_step_size(step_size), info


def warm_start(
    rng_key: PRNGKeyArray,
    logdensity_fn: Callable[[Any], Array],
    dynamics: L2HMCDynamics,
    chains: L2HMCState,
    *,
    num_steps: int = 400,
    dense_mass: bool = False,
    target_acceptance_rate: float = 0.75,
    progress_bar: bool = False,
) -> tuple[L2HMCDynamics, L2HMCState, WarmStartInfo]:
    """Burn in and adapt ε and the preconditioner of ``dynamics`` on a batch of chains.

    See the module docstring for the schedule.

    Args:
        rng_key: PRNG key.
        logdensity_fn: log p on one (unbatched) position.
        dynamics: the dynamics to adapt. The result has their trunks, masks and jitter, zero heads
            (so it is exactly the tuned HMC), the adapted ε and the preconditioner.
        chains: batched chain states (leading chain axis), e.g. from
            [`init_chains`][l2hmc_ppl.core.chains.init_chains].
        num_steps: transitions of all chains (at least 16; rounded down to a multiple of 16).
        dense_mass: estimate a dense covariance (Cholesky preconditioner) instead of a diagonal.
        target_acceptance_rate: the acceptance rate the step size aims for.
        progress_bar: show a progress bar (updated between compiled blocks).

    Returns:
        ``(dynamics, chains, info)``: the HMC-limit dynamics with the adapted ε and
        preconditioner, the burned-in chains, and what was measured.
    """
    if not (isinstance(num_steps, int) and num_steps >= _NUM_BLOCKS):
        raise ValueError(f"the warm start needs at least {_NUM_BLOCKS} steps, got num_steps={num_steps!r}")
    block_length = num_steps // _NUM_BLOCKS
    state = _init(dynamics, chains, dense_mass, target_acceptance_rate)
    # Keys are folded in inside the compiled blocks (block b: b; the restart before window w: −w − 1).
    block_index = 0
    acceptances, phase_logdensity = [], []
    progress = make_progress_bar(_NUM_BLOCKS * block_length, "L2HMC warm start", enabled=progress_bar)
    try:
        for phase_index, (phase, length) in enumerate(SCHEDULE):
            collect = phase == "window"
            if collect:
                state = _restart_stragglers(rng_key, np.int32(-phase_index - 1), state)
            phase_logdensity = []  # the log density of every transition of this phase
            for _ in range(length):  # one compiled block, called `length` times
                state, acceptance, logdensity = _adapt_block(
                    rng_key,
                    np.int32(block_index),  # arrays are traced: one compilation for every block
                    state,
                    np.bool_(collect),
                    logdensity_fn,
                    block_length,
                    target_acceptance_rate,
                )
                block_index = block_index + 1
                acceptances.append(acceptance)
                phase_logdensity.append(logdensity)
                progress.update(block_length)
            if collect:
                state = _end_window(state, target_acceptance_rate)
    finally:
        progress.close()
    adapted, info = _finish(state, acceptances, phase_logdensity)
    _warn_if_not_arrived(info, target_acceptance_rate, SCHEDULE[-1][1] * block_length)
    return adapted, state.chains, info


def _warn_if_not_arrived(info: WarmStartInfo, target_acceptance_rate: float, final_steps: int) -> None:
    if isinstance(info.logdensity_rise_z, jax.core.Tracer):
        return  # traced (vmap/pmap over training runs): no host-side warning
    z = float(info.logdensity_rise_z)
    acceptance = float(jnp.mean(info.acceptance_rate[-final_steps:]))
    if acceptance < 0.5 * target_acceptance_rate:
        warnings.warn(
            f"L2HMC warm start: the step size did not settle (mean acceptance {acceptance:.2f} in the last "
            f"phase, target {target_acceptance_rate}), so the chains may be stuck away from the posterior. "
            "Give more warm-start steps (num_warm_start_steps, or num_warmup in NumPyro) or initial "
            "positions closer to the posterior.",
            stacklevel=3,
        )
    elif z > ARRIVAL_Z:
        warnings.warn(
            f"L2HMC warm start: the chains' log density was still rising at the end of the warm start "
            f"({z:.1f} standard errors over its last window), so they have probably not reached the "
            "posterior yet. Give more warm-start steps (num_warm_start_steps, or num_warmup in NumPyro) "
            "or initial positions closer to the posterior.",
            stacklevel=3,
        )
