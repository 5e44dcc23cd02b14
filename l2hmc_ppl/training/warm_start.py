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
3. **trajectory length** (optional, on by default): M, the number of leapfrog steps, is chosen by
   the *ESS per gradient* of the slowest coordinate and moment. Its squared jump
   J = min over coordinates i of min(E[(z'ᵢ − zᵢ)²], ½E[(z'ᵢ² − zᵢ²)²]) in the whitened
   coordinates z (accepted moves only) is 2(1 − ρ) for a lag-1 autocorrelation ρ of a quantity of
   unit variance, so a = J/2 estimates 1 − ρ and the score is the AR(1) ESS per draw,
   a/(2 − a), divided by M (a capped at 1: antithetic moves earn nothing). It is measured over
   one block of transitions per candidate M with ε re-adapted for it. Dividing the plain jump by M
   instead overrates short, diffusive trajectories: on eight schools it picked M = 1, whose ESS per
   gradient was half that of M = 2. Candidates within 20% of the best score count as tied
   (one block each makes the scores noisy), and the longest of them is kept. After each window
   but the last, M moves to the best of its half, itself and its double, so that chains still far
   from the posterior (a metric still poor, ε small against the posterior's extent) travel with
   long trajectories; after the last window every
   candidate of `TRAJECTORY_CANDIDATES` is compared. A jump of the position rewards trajectories
   that travel, the jump of the squares punishes those that come back to −z (half a period), and
   the division by M charges every gradient. This plays the part of NUTS's tree building and of
   ChEES's adapted trajectory length, once, before training;
4. **final** (2/16): step-size adaptation only, with the last preconditioner and the chosen M.

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

import functools
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
from optax.tree_utils import tree_where

from l2hmc_ppl.core.chains import num_chains
from l2hmc_ppl.core.kernel import L2HMCState, build_kernel
from l2hmc_ppl.core.leapfrog import hmc_leapfrog
from l2hmc_ppl.dynamics.dynamics import L2HMCDynamics
from l2hmc_ppl.training.config import DENSE_MASS_MAX_DIM
from l2hmc_ppl.training.loss import moment_jumps
from l2hmc_ppl.training.progress import progress_bar as make_progress_bar

__all__ = ["WarmStartInfo", "warm_start"]

#: (phase, length in sixteenths of the warm start). A "window" collects the positions and ends
#: with a new preconditioner.
SCHEDULE = (("burn_in", 3), ("window", 1), ("window", 2), ("window", 4), ("window", 4), ("final", 2))
_NUM_BLOCKS = sum(length for _, length in SCHEDULE)

#: The numbers of leapfrog steps the trajectory-length phase compares.
TRAJECTORY_CANDIDATES = (1, 2, 4, 8, 16, 32, 64)
#: Transitions per block below which M is not chosen: a comparison on fewer is noise, and dual
#: averaging, restarted for every candidate, has no time to bring ε back after its first step.
MIN_TRAJECTORY_BLOCK_LENGTH = 4
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
        num_leapfrog_steps: the M of the returned dynamics (chosen, or the given one).
        trajectory_scores: the ESS-per-gradient score of each candidate M
            (`TRAJECTORY_CANDIDATES`), or ``None`` when M was not chosen.
        moment_jumps: the tuned HMC's mean squared jumps per transition in the final phase, per
            coordinate, of the whitened position and of its square (shape ``(2, dim)``; see
            [`moment_jumps`][l2hmc_ppl.training.moment_jumps]): the score the selection step
            compares the trained sampler with.
    """

    step_size: Float[Array, ""]
    mean: Float[Array, " dim"]
    covariance: Array
    acceptance_rate: Float[Array, " num_steps"]
    num_restarted: Int[Array, ""]
    logdensity_rise_z: Float[Array, ""]
    num_leapfrog_steps: int | Array = 0
    trajectory_scores: Array | None = None
    moment_jumps: Array | None = None


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
    num_leapfrog_steps: Int[Array, ""]  # M of the HMC transitions (traced: one compilation for any M)


def as_dtype(tree, dtype):
    """BlackJAX's states mix Python scalars and default-dtype arrays: one dtype, so blocks share a compile."""
    return jax.tree_util.tree_map(
        lambda x: (
            jnp.asarray(x, dtype) if jnp.issubdtype(jnp.result_type(x), jnp.floating) else jnp.asarray(x)
        ),
        tree,
    )


def _restart_dual_averaging(log_step_sizes, target_acceptance_rate, dtype):
    (da_init, _, _), _ = _adaptation(target_acceptance_rate, False)
    return as_dtype(jax.vmap(da_init)(jnp.exp(log_step_sizes)), dtype)


@eqx.filter_jit
def _init(dynamics, chains, dense_mass, target_acceptance_rate) -> _AdaptationState:
    _, (mm_init, _, _) = _adaptation(target_acceptance_rate, dense_mass)
    dtype = dynamics.log_step_size.dtype
    # The warm start's transitions take M as a traced number and ignore the masks, so it runs one
    # canonical structure (M = 1, one metric kind): one compilation for dynamics of any M.
    hmc = dynamics.as_hmc_limit()
    hmc = eqx.tree_at(lambda d: d.masks, hmc, hmc.masks[:1])
    object.__setattr__(hmc, "num_leapfrog_steps", 1)
    scale = hmc.preconditioner_scale
    if dense_mass and scale.ndim == 1:  # one metric structure throughout: one compilation
        hmc = hmc.with_preconditioner(hmc.preconditioner_loc, jnp.diag(scale))
    scale = hmc.preconditioner_scale
    size = num_chains(chains.position, "chains")
    return _AdaptationState(
        chains=chains,
        dynamics=hmc,
        da_state=_restart_dual_averaging(jnp.full((size,), hmc.log_step_size), target_acceptance_rate, dtype),
        mm_state=as_dtype(mm_init(dynamics.dim), dtype),
        covariance=scale @ scale.T if dense_mass else scale**2,
        num_restarted=jnp.zeros((), jnp.int32),
        num_leapfrog_steps=jnp.asarray(dynamics.num_leapfrog_steps, jnp.int32),  # the given M
    )


@eqx.filter_jit
def _adapt_block(
    rng_key,
    index,
    state: _AdaptationState,
    collect,
    starts_window,
    ends_window,
    logdensity_fn,
    num_steps,
    target_acceptance_rate,
):
    """``num_steps`` transitions of every chain with its own step size; Welford on the positions.

    Block ``index`` uses the key ``fold_in(rng_key, index)``. The first block of a window
    (``starts_window``) first restarts the stragglers; the last (``ends_window``) then sets the
    preconditioner: both are traced flags, so every block of the warm start is one compiled
    program. Returns the new state, per transition the chains' mean acceptance and log densities,
    and the moves' per-coordinate squared jumps in the whitened coordinates, of the position and
    of its square (`moment_jumps`), averaged over chains and transitions: shape ``(2, dim)``.
    """
    rng_key, key_restart = jax.random.split(jax.random.fold_in(rng_key, index))
    state = tree_where(starts_window, _restart_stragglers(key_restart, state), state)
    dynamics = state.dynamics
    (_, da_update, _), (_, mm_update, _) = _adaptation(target_acceptance_rate, dynamics.dense_preconditioner)
    # the HMC limit, without evaluating the networks, with a traced M
    kernel = build_kernel(functools.partial(hmc_leapfrog, num_steps=state.num_leapfrog_steps))
    size = num_chains(state.chains.position, "chains")

    def transition(key, chain, log_step_size):
        return kernel(key, chain, logdensity_fn, dynamics.with_step_size(jnp.exp(log_step_size)))

    def whitened(chains):
        return jax.vmap(lambda p: dynamics.to_whitened(ravel_pytree(p)[0]))(chains.position)

    def one_step(carry, key):
        chains, da_state, mm_state = carry
        keys = jax.random.split(key, size)
        before = whitened(chains)
        chains, info = jax.vmap(transition)(keys, chains, da_state.log_step_size)
        da_state = jax.vmap(da_update)(da_state, info.acceptance_rate)
        flat_positions = jax.vmap(lambda p: ravel_pytree(p)[0])(chains.position)
        updated = jax.lax.scan(lambda s, x: (mm_update(s, x), None), mm_state, flat_positions)[0]
        mm_state = tree_where(collect, updated, mm_state)
        jumps = jnp.mean(jnp.stack(moment_jumps(before, whitened(chains), per_coordinate=True)), axis=1)
        return (chains, da_state, mm_state), (info.acceptance_rate.mean(), chains.logdensity, jumps)

    (chains, da_state, mm_state), (acceptance, logdensity, jumps) = jax.lax.scan(
        one_step, (state.chains, state.da_state, state.mm_state), jax.random.split(rng_key, num_steps)
    )
    dtype = dynamics.log_step_size.dtype
    new_state = state._replace(
        chains=chains, da_state=as_dtype(da_state, dtype), mm_state=as_dtype(mm_state, dtype)
    )
    new_state = tree_where(ends_window, _end_window(new_state, target_acceptance_rate), new_state)
    return new_state, acceptance, logdensity, jnp.mean(jumps, axis=0)


def _restart_stragglers(rng_key, state: _AdaptationState) -> _AdaptationState:
    """Move chains far below the upper quartile of the log density to the states of random others."""
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


def _end_window(state: _AdaptationState, target_acceptance_rate) -> _AdaptationState:
    """Set the preconditioner from the window's Welford estimate and restart dual averaging."""
    dense = state.dynamics.dense_preconditioner
    _, (_, _, mm_final) = _adaptation(target_acceptance_rate, dense)
    dtype = state.dynamics.log_step_size.dtype
    mean = state.mm_state.wc_state.mean
    mm_state = as_dtype(mm_final(state.mm_state), dtype)
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
def _finish(state: _AdaptationState, acceptances, final_logdensity, final_jumps):
    # Each chain's dual-averaged ε; the dynamics take the median (robust to a few odd chains).
    step_size = jnp.median(jnp.exp(state.da_state.log_step_size_avg))
    info = WarmStartInfo(
        step_size=step_size,
        mean=state.dynamics.preconditioner_loc,
        covariance=state.covariance,
        acceptance_rate=jnp.concatenate(acceptances),
        num_restarted=state.num_restarted,
        logdensity_rise_z=_rise_z_score(jnp.concatenate(final_logdensity)),
        num_leapfrog_steps=state.num_leapfrog_steps,
        moment_jumps=jnp.mean(jnp.stack(final_jumps), axis=0),
    )
    return state.dynamics.with_step_size(step_size), info


def warm_start(
    rng_key: PRNGKeyArray,
    logdensity_fn: Callable[[Any], Array],
    dynamics: L2HMCDynamics,
    chains: L2HMCState,
    *,
    num_steps: int = 400,
    dense_mass: bool | str = False,
    target_acceptance_rate: float = 0.75,
    adapt_num_leapfrog_steps: bool = True,
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
            [`init_chains`][l2hmc_ppl.init_chains].
        num_steps: transitions of all chains in the adaptation schedule (at least 16; rounded
            down to a multiple of 16). Choosing M adds as many again: 16 blocks of
            ``num_steps // 16`` transitions that compare trajectory lengths.
        dense_mass: estimate a dense covariance (Cholesky preconditioner) instead of a diagonal;
            ``"auto"``: dense up to `DENSE_MASS_MAX_DIM` coordinates.
        target_acceptance_rate: the acceptance rate the step size aims for.
        adapt_num_leapfrog_steps: choose M (the trajectory-length phase); the returned dynamics
            then have the chosen M and new masks. M stays when the warm start is traced (e.g.
            ``vmap``-ed over NumPyro's vectorized chains: M is static) and when it is shorter than
            ``16 * MIN_TRAJECTORY_BLOCK_LENGTH`` = 64 steps (too few transitions to compare).
        progress_bar: show a progress bar (updated between compiled blocks).

    Returns:
        ``(dynamics, chains, info)``: the HMC-limit dynamics with the adapted ε and
        preconditioner, the burned-in chains, and what was measured.
    """
    if not (isinstance(num_steps, int) and num_steps >= _NUM_BLOCKS):
        raise ValueError(f"the warm start needs at least {_NUM_BLOCKS} steps, got num_steps={num_steps!r}")
    if not isinstance(dynamics, L2HMCDynamics):
        raise TypeError(f"dynamics must be an L2HMCDynamics, got {type(dynamics).__name__}")
    if not isinstance(chains, L2HMCState):
        raise TypeError(
            f"chains must be a batch of chain states (l2hmc_ppl.init_chains(positions, logdensity_fn)), "
            f"got {type(chains).__name__}"
        )
    size = num_chains(chains.position, "chains")
    flat = ravel_pytree(jax.tree_util.tree_map(lambda leaf: leaf[0], chains.position))[0]
    if flat.size != dynamics.dim:
        raise ValueError(
            f"the chains have {flat.size} coordinates (flattened), the dynamics were built for "
            f"dim={dynamics.dim}"
        )
    if not (isinstance(target_acceptance_rate, (int, float)) and 0 < target_acceptance_rate < 1):
        raise ValueError(f"target_acceptance_rate must be in (0, 1), got {target_acceptance_rate!r}")
    if dense_mass == "auto":
        dense_mass = dynamics.dim <= DENSE_MASS_MAX_DIM
    if not isinstance(dense_mass, bool):
        raise ValueError(f"dense_mass must be True, False or 'auto', got {dense_mass!r}")
    del size
    block_length = num_steps // _NUM_BLOCKS
    state = _init(dynamics, chains, dense_mass, target_acceptance_rate)
    choose_length = (
        adapt_num_leapfrog_steps
        and block_length >= MIN_TRAJECTORY_BLOCK_LENGTH
        and not isinstance(state.num_leapfrog_steps, jax.core.Tracer)
    )
    num_windows = sum(phase == "window" for phase, _ in SCHEDULE)
    num_blocks = _NUM_BLOCKS + (len(TRAJECTORY_CANDIDATES) + 3 * (num_windows - 1) if choose_length else 0)
    progress = make_progress_bar(num_blocks * block_length, "L2HMC warm start", enabled=progress_bar)
    # Keys are folded in inside the compiled blocks: block b uses b.
    blocks = iter(range(num_blocks))
    acceptances, logdensities, jumps, scores = [], [], [], None

    def run_block(state, collect, starts_window=False, ends_window=False):
        state, acceptance, logdensity, block_jumps = _adapt_block(
            rng_key,
            np.int32(next(blocks)),  # arrays are traced: one compilation for every block
            state,
            np.bool_(collect),
            np.bool_(starts_window),
            np.bool_(ends_window),
            logdensity_fn,
            block_length,
            target_acceptance_rate,
        )
        acceptances.append(acceptance)
        logdensities.append(logdensity)
        jumps.append(block_jumps)
        progress.update(block_length)
        return state, block_jumps

    try:
        for phase_index, (phase, length) in enumerate(SCHEDULE):
            del logdensities[:], jumps[:]  # keep only the current phase's
            window = phase == "window"
            for block in range(length):  # one compiled block, called `length` times
                starts, ends = window and block == 0, window and block == length - 1
                state, _ = run_block(state, window, starts_window=starts, ends_window=ends)
            if window and choose_length:
                # after each new metric, M moves towards the best per-gradient length (a doubling
                # or halving), so that chains still far from the posterior travel; after the last
                # one every candidate is compared
                last = phase_index == _LAST_WINDOW
                current = int(state.num_leapfrog_steps)
                candidates = TRAJECTORY_CANDIDATES if last else _local_candidates(current)
                state, window_scores = _choose_trajectory_length(
                    state, run_block, target_acceptance_rate, candidates
                )
                scores = window_scores if last else scores
    finally:
        progress.close()
    adapted, info = _finish(state, acceptances, logdensities, jumps)
    # back to the structure of the given dynamics (their masks), or to the chosen M (new masks)
    adapted = eqx.tree_at(lambda d: d.masks, adapted, dynamics.masks)
    object.__setattr__(adapted, "num_leapfrog_steps", dynamics.num_leapfrog_steps)
    if scores is not None:
        chosen = int(state.num_leapfrog_steps)
        if chosen != dynamics.num_leapfrog_steps:
            adapted = adapted.with_num_leapfrog_steps(chosen, key=jax.random.fold_in(rng_key, chosen))
        info = info._replace(num_leapfrog_steps=chosen, trajectory_scores=scores)
    _warn_if_not_arrived(info, target_acceptance_rate, SCHEDULE[-1][1] * block_length)
    return adapted, state.chains, info


_LAST_WINDOW = max(i for i, (phase, _) in enumerate(SCHEDULE) if phase == "window")


def _local_candidates(current: int) -> tuple[int, ...]:
    """M halved, kept and doubled, within the candidates' range."""
    low, high = TRAJECTORY_CANDIDATES[0], TRAJECTORY_CANDIDATES[-1]
    return tuple(sorted({max(low, current // 2), current, min(high, 2 * current)}))


def _ess_per_gradient(jump: float, num_leapfrog_steps: int) -> float:
    """ESS per gradient of an AR(1) chain whose normalised squared jump is ``jump`` (module docstring).

    For a unit-variance quantity with lag-1 autocorrelation ρ the squared jump is 2(1 − ρ), so
    a = jump/2 = 1 − ρ and the AR(1) ESS per draw is (1 − ρ)/(1 + ρ) = a/(2 − a). Jumps beyond
    independence (a > 1, antithetic moves) earn nothing more.
    """
    a = min(max(jump / 2.0, 0.0), 1.0) if math.isfinite(jump) else 0.0
    return a / (2.0 - a) / num_leapfrog_steps


#: A candidate M scoring at least this fraction of the best score counts as tied with it.
TRAJECTORY_TIE_FRACTION = 0.8


def _longest_near_best(candidates, scores) -> int:
    """The longest M whose score is within the tie fraction of the best.

    One short block per candidate makes the scores noisy, and a short trajectory that the noise
    favours costs more than a long one: fewer independent moves per transition (a worse R̂ for the
    same draws) for a per-gradient saving within the noise.
    """
    scores = np.nan_to_num(np.asarray(scores, float), nan=-1.0)
    tied = [
        m
        for m, score in zip(candidates, scores, strict=True)
        if score >= TRAJECTORY_TIE_FRACTION * scores.max()
    ]
    return max(tied)


def _choose_trajectory_length(state: _AdaptationState, run_block, target_acceptance_rate, candidates):
    """One block per candidate M, ε re-adapted for it; keep the best per gradient (module docstring)."""
    dtype = state.dynamics.log_step_size.dtype
    scores = []
    for candidate in candidates:
        state = state._replace(
            num_leapfrog_steps=jnp.asarray(candidate, jnp.int32),
            da_state=_restart_dual_averaging(state.da_state.log_step_size, target_acceptance_rate, dtype),
        )
        state, jumps = run_block(state, collect=False)
        scores.append(_ess_per_gradient(float(jnp.min(jumps)), candidate))
    best = _longest_near_best(candidates, scores)
    # the next phase re-adapts ε for the chosen M
    state = state._replace(
        num_leapfrog_steps=jnp.asarray(best, jnp.int32),
        da_state=_restart_dual_averaging(state.da_state.log_step_size, target_acceptance_rate, dtype),
    )
    return state, np.asarray(scores)


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
