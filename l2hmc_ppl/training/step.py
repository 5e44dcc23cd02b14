"""One iteration of Algorithm 1 as a pure function of a typed state, and its compiled chunk.

Each iteration, with N persistent chains ξ ~ p (the batch) and fresh draws ξ ~ q (the burn-in
term):

1. resample momenta, directions (and jittered step sizes) and compute the proposals F L_θ ξ with
   their acceptance A;
2. L(θ) = mean ℓ over the chains + λ_b · mean ℓ over the q-draws, with gradients through the
   whole trajectory (including ∇U, hence second derivatives of U) and through A;
3. one optimiser step on θ (networks and log ε);
4. move the persistent chains by MH with the proposals of step 1 (pre-update parameters).

Robustness is composed from two pieces rather than written into the step. A proposal that meets
a non-finite value is a rejection whose gradient is exactly zero (see
[`finite_value_and_grad`][l2hmc_ppl.core.finite_value_and_grad]), so one bad chain never
stops the others from training, in a single gradient pass. And the optimizer is wrapped in
``optax.apply_if_finite``, which skips (and counts) any update that is still not finite, such as
an iteration in which no proposal was usable.

[`run_chunk`][l2hmc_ppl.training.run_chunk] scans ``chunk_size`` iterations. It is compiled
once per target, dynamics structure, options and shapes: the number of iterations is a traced
argument (iterations past it are skipped), so training with another ``num_steps``, or a second
training of the same target, reuses the compiled code.

References:
    D. Levy, M. D. Hoffman, J. Sohl-Dickstein. *Generalizing Hamiltonian Monte Carlo with Neural
    Networks*. ICLR 2018, arXiv:1711.09268, §4 and Algorithm 1.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray
from optax.tree_utils import tree_where

from l2hmc_ppl.core.chains import num_chains, tempered, untempered
from l2hmc_ppl.core.kernel import L2HMCProposal, L2HMCState, propose
from l2hmc_ppl.core.proposal import metropolis_accept
from l2hmc_ppl.dynamics.dynamics import L2HMCDynamics
from l2hmc_ppl.training.config import TrainConfig, build_optimizer
from l2hmc_ppl.training.loss import esjd_loss, moment_jumps, moments_loss

__all__ = ["StepOptions", "TrainInfo", "TrainState", "init_train_state", "run_chunk", "step"]

ArrayTree = Any


class TrainState(NamedTuple):
    """Everything training carries from one iteration to the next.

    Attributes:
        dynamics: the dynamics being trained (networks and ε are updated; the masks, the jitter and
            the preconditioner are fixed).
        opt_state: the optimizer's state (``optax.apply_if_finite`` around the optimizer).
        chains: the persistent chains (a batched [`L2HMCState`][l2hmc_ppl.L2HMCState]).
        step: iterations done so far (the schedules' clock).
        rng_key: the key of the next iteration.
    """

    dynamics: L2HMCDynamics
    opt_state: optax.OptState
    chains: L2HMCState
    step: Int[Array, ""]
    rng_key: PRNGKeyArray

    @property
    def num_consecutive_failures(self) -> Int[Array, ""]:
        """Updates skipped in a row because their gradient was not finite."""
        return self.opt_state.notfinite_count


class TrainInfo(NamedTuple):
    """What one iteration measured (stacked over iterations by [`run_chunk`][l2hmc_ppl.training.run_chunk]).

    Attributes:
        loss: the training loss L(θ).
        acceptance_rate: mean acceptance probability of the chains' proposals.
        squared_jump_distance: mean δ·A over the chains (the expected squared jump, raw units).
        step_size: ε after the update.
        temperature: T of the target $p^{1/T}$.
        skipped: whether the update was skipped (its gradient was not finite).
        num_nonfinite_samples: proposals that met a non-finite value (rejections).
        moment_jumps: the proposals' mean accepted squared jumps per coordinate, of the whitened
            position and of its square, shape ``(2, dim)`` (what the selection step scores).
    """

    loss: Float[Array, ""]
    acceptance_rate: Float[Array, ""]
    squared_jump_distance: Float[Array, ""]
    step_size: Float[Array, ""]
    temperature: Float[Array, ""]
    skipped: Bool[Array, ""]
    num_nonfinite_samples: Int[Array, ""]
    moment_jumps: Float[Array, "2 dim"]


class StepOptions(NamedTuple):
    """The hashable part of a [`TrainConfig`][l2hmc_ppl.TrainConfig] that shapes the compiled step."""

    objective: str
    burn_in_weight: float
    initial_distribution: Callable | None
    temperature_schedule: Callable | None
    optimizer: optax.GradientTransformation

    @classmethod
    def from_config(cls, config: TrainConfig) -> StepOptions:
        return cls(
            objective=config.objective,
            burn_in_weight=config.burn_in_weight,
            initial_distribution=config.initial_distribution,
            temperature_schedule=config.temperature_schedule,
            optimizer=build_optimizer(config),
        )


def init_train_state(
    rng_key: PRNGKeyArray,
    dynamics: L2HMCDynamics,
    chains: L2HMCState,
    optimizer: optax.GradientTransformation,
) -> TrainState:
    """The state before the first iteration."""
    params, _ = eqx.partition(dynamics, dynamics.trainable_filter())
    return TrainState(dynamics, optimizer.init(params), chains, jnp.zeros((), jnp.int32), rng_key)


def _all_finite(tree) -> Bool[Array, ""]:
    leaves = [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree_util.tree_leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def _temperature(options: StepOptions, step_index, dtype) -> Float[Array, ""]:
    if options.temperature_schedule is None:
        return jnp.ones((), dtype)
    return jnp.asarray(options.temperature_schedule(step_index), dtype)


def _flatten_batch(tree):
    return jax.vmap(lambda t: ravel_pytree(t)[0])(tree)


def _sample_losses(
    key, chains: L2HMCState, logdensity_fn, dynamics, options: StepOptions, loss_scale, aux
) -> tuple[Float[Array, " num_chains"], L2HMCProposal]:
    """Per-chain losses of one set of proposals from ``chains`` (already tempered)."""
    keys = jax.random.split(key, num_chains(chains.position, "chains"))
    proposals = jax.vmap(propose, (0, 0, None, None, None))(keys, chains, logdensity_fn, dynamics, aux)
    if options.objective == "paper":
        losses = esjd_loss(
            _flatten_batch(chains.position),
            _flatten_batch(proposals.state.position),
            proposals.acceptance_probability,
            loss_scale,
        )
    else:
        losses = moments_loss(
            proposals.initial_whitened,
            proposals.proposed_whitened,
            proposals.acceptance_probability,
            loss_scale,
        )
    return losses, proposals


def _batch_loss(params, static, key, chains, logdensity_fn, options, temperature, loss_scale, aux):
    """L(θ) and the chains' proposals; the q-term on fresh draws when λ_b > 0."""
    dynamics = eqx.combine(params, static)
    size = num_chains(chains.position, "chains")

    def tempered_logdensity(position):
        return logdensity_fn(position) / temperature

    key_chains, key_draws, key_fresh = jax.random.split(key, 3)
    losses, proposals = _sample_losses(
        key_chains, tempered(chains, temperature), tempered_logdensity, dynamics, options, loss_scale, aux
    )
    if options.burn_in_weight:
        if options.initial_distribution is None:
            _, unravel = ravel_pytree(jax.tree_util.tree_map(lambda leaf: leaf[0], chains.position))
            flat = jax.random.normal(key_draws, (size, dynamics.dim), temperature.dtype)
            fresh_positions = jax.vmap(unravel)(flat)
        else:
            fresh_positions = options.initial_distribution(key_draws, size)
        logdensity, grad = jax.vmap(jax.value_and_grad(tempered_logdensity))(fresh_positions)
        fresh_losses, _ = _sample_losses(
            key_fresh, L2HMCState(fresh_positions, logdensity, grad), tempered_logdensity, dynamics, options,
            loss_scale, aux,
        )  # fmt: skip
        losses = losses + options.burn_in_weight * fresh_losses
    return jnp.mean(losses), proposals


def step(
    state: TrainState,
    logdensity_fn: Callable[[ArrayTree], Array],
    options: StepOptions,
    loss_scale: Float[Array, "..."],
    aux: Float[Array, " aux"] | None = None,
) -> tuple[TrainState, TrainInfo]:
    """One iteration of Algorithm 1 (see the module docstring).

    Args:
        state: the training state.
        logdensity_fn: log p on one position.
        options: the compiled-in options (``StepOptions.from_config(config)``, see
            [`StepOptions`][l2hmc_ppl.training.StepOptions]).
        loss_scale: λ² (an array: traced, so changing it does not recompile).
        aux: conditioning input for dynamics built with ``aux_size``.

    Returns:
        ``(new_state, info)``.
    """
    dtype = state.dynamics.log_step_size.dtype
    key, key_loss, key_accept = jax.random.split(state.rng_key, 3)
    temperature = _temperature(options, state.step, dtype)
    params, static = eqx.partition(state.dynamics, state.dynamics.trainable_filter())
    (loss, proposals), grads = eqx.filter_value_and_grad(_batch_loss, has_aux=True)(
        params, static, key_loss, state.chains, logdensity_fn, options, temperature, loss_scale, aux
    )
    usable = jnp.isfinite(proposals.log_accept_ratio)
    # An iteration with no usable proposal has nothing to learn from: mark its gradient non-finite
    # so that apply_if_finite skips (and counts) it.
    grads = jax.tree_util.tree_map(lambda g: jnp.where(jnp.any(usable), g, jnp.nan), grads)
    updates, opt_state = options.optimizer.update(grads, state.opt_state, params)
    new_params = eqx.apply_updates(params, updates)
    # apply_if_finite checks the gradient; an optimizer that still produces non-finite weights
    # (a custom one with a NaN learning rate) has its update undone and counted as skipped too.
    applied = opt_state.last_finite & _all_finite(new_params)
    params, opt_state = tree_where(applied, (new_params, opt_state), (params, state.opt_state))
    opt_state = opt_state._replace(
        notfinite_count=jnp.where(applied, 0, state.opt_state.notfinite_count + 1).astype(
            state.opt_state.notfinite_count.dtype
        )
    )
    dynamics = eqx.combine(params, static)

    # Move the persistent chains by MH with the pre-update proposals (stored untempered).
    chains, _ = metropolis_accept(
        key_accept, proposals.log_accept_ratio, untempered(proposals.state, temperature), state.chains
    )
    info = TrainInfo(
        loss=loss.astype(dtype),
        acceptance_rate=proposals.acceptance_probability.mean().astype(dtype),
        squared_jump_distance=(proposals.squared_jump_distance * proposals.acceptance_probability)
        .mean()
        .astype(dtype),
        step_size=dynamics.step_size,
        temperature=temperature,
        skipped=~applied,
        num_nonfinite_samples=jnp.sum(~usable).astype(jnp.int32),
        moment_jumps=_accepted_moment_jumps(proposals).astype(dtype),
    )
    return TrainState(dynamics, opt_state, chains, state.step + 1, key), info


def _accepted_moment_jumps(proposals: L2HMCProposal) -> Float[Array, "2 dim"]:
    """Mean over the chains of the per-coordinate squared jumps, each weighted by its acceptance."""
    first, second = moment_jumps(proposals.initial_whitened, proposals.proposed_whitened, per_coordinate=True)
    accept = proposals.acceptance_probability[:, None]
    return jnp.stack([jnp.mean(first * accept, axis=0), jnp.mean(second * accept, axis=0)])


def _skipped_info(state: TrainState) -> TrainInfo:
    """The record of an iteration past ``num_steps`` (the tail of the last chunk)."""
    dtype = state.dynamics.log_step_size.dtype
    zero = jnp.zeros((), dtype)
    no_jumps = jnp.full((2, state.dynamics.dim), jnp.nan, dtype)
    skipped = jnp.asarray(False)
    return TrainInfo(
        zero, zero, zero, state.dynamics.step_size, zero, skipped, jnp.zeros((), jnp.int32), no_jumps
    )


@eqx.filter_jit
def run_chunk(
    state: TrainState,
    logdensity_fn: Callable[[ArrayTree], Array],
    options: StepOptions,
    loss_scale: Float[Array, "..."],
    aux: Float[Array, " aux"] | None,
    num_steps: Int[Array, ""],
    chunk_size: int,
) -> tuple[TrainState, TrainInfo]:
    """``chunk_size`` iterations of [`step`][l2hmc_ppl.training.step.step] in a ``lax.scan``.

    Iterations at or past ``num_steps`` (a traced integer) leave the state unchanged, so one
    compiled chunk serves any number of iterations. Returns the new state and the stacked infos.
    """

    def one_iteration(state, _):
        return jax.lax.cond(
            state.step < num_steps,
            lambda s: step(s, logdensity_fn, options, loss_scale, aux),
            lambda s: (s, _skipped_info(s)),
            state,
        )

    return jax.lax.scan(one_iteration, state, None, length=chunk_size)
