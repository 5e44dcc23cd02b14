r"""The L2HMC transition kernel, BlackJAX-style: ``init`` and ``build_kernel``.

One transition (Levy et al. 2018, §3): draw v ~ N(0, I) and a direction d uniform on {−1, +1}; run
the learned leapfrog in direction d (an invertible map L_θ with log|det J|); flip d, so that the
proposal F L_θ is an involution; accept with

$$A = \min\bigl(1,\ \exp(\log p(x') - \tfrac12 |v'|^2 - \log p(x) + \tfrac12 |v|^2 + \log|\det J|)\bigr),$$

treating a non-finite value as A = 0. v and d are resampled every transition, so the chain state is
the position with its cached log density and gradient.

This module is pure JAX (no numpyro or blackjax import); the adapters live in
[`l2hmc_ppl.numpyro`][l2hmc_ppl.numpyro] and [`l2hmc_ppl.blackjax`][l2hmc_ppl.blackjax].

References:
    D. Levy, M. D. Hoffman, J. Sohl-Dickstein. *Generalizing Hamiltonian Monte Carlo with Neural
    Networks*. ICLR 2018, arXiv:1711.09268, §3.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, ArrayLike, Bool, Float, PRNGKeyArray

from l2hmc_ppl._checks import check_dynamics, check_positive_float, is_traced
from l2hmc_ppl.core.leapfrog import LeapfrogResult, learned_leapfrog
from l2hmc_ppl.core.proposal import metropolis_accept
from l2hmc_ppl.dynamics.dynamics import L2HMCDynamics

__all__ = ["Integrator", "L2HMCInfo", "L2HMCProposal", "L2HMCState", "build_kernel", "init", "propose"]

ArrayTree = Any

Integrator = Callable[..., LeapfrogResult]
"""The signature of [`learned_leapfrog`][l2hmc_ppl.learned_leapfrog]: ``(dynamics, logdensity_fn,
position, momentum, logdensity, logdensity_grad, direction, aux, step_size) -> LeapfrogResult``."""


class L2HMCState(NamedTuple):
    """State of an L2HMC chain: the position and the log density and its gradient cached there."""

    position: ArrayTree
    logdensity: Float[Array, ""]
    logdensity_grad: ArrayTree


class L2HMCProposal(NamedTuple):
    """One proposal F L_θ ξ and everything the MH test and the training loss need.

    Attributes:
        state: the proposed state (position x', log p(x'), ∇ log p(x')).
        acceptance_probability: A = min(1, exp(log_accept_ratio)); 0 for a non-finite proposal.
        log_accept_ratio: log A before the min (−inf for a non-finite proposal).
        log_det_jacobian: log|det ∂L_θξ/∂ξ| of the map applied.
        direction: the sampled d ∈ {−1, +1}.
        energy: H(ξ') = −log p(x') + ½|v'|² of the proposal.
        energy_change: H(ξ') − H(ξ) (without the log-determinant).
        squared_jump_distance: δ = |x' − x|² (0 for a non-finite proposal).
        step_size: the ε of this proposal (the dynamics' ε times the jitter factor).
        initial_whitened: z = L⁻¹(x − loc) of the current position, flattened.
        proposed_whitened: z' of the proposal, flattened (the training objective measures jumps
            in these coordinates).
    """

    state: L2HMCState
    acceptance_probability: Float[Array, ""]
    log_accept_ratio: Float[Array, ""]
    log_det_jacobian: Float[Array, ""]
    direction: Float[Array, ""]
    energy: Float[Array, ""]
    energy_change: Float[Array, ""]
    squared_jump_distance: Float[Array, ""]
    step_size: Float[Array, ""]
    initial_whitened: Float[Array, " dim"]
    proposed_whitened: Float[Array, " dim"]


class L2HMCInfo(NamedTuple):
    """Diagnostics of one transition (field names follow BlackJAX's ``HMCInfo`` where shared).

    Attributes:
        acceptance_rate: the MH acceptance probability A of the proposal.
        is_accepted: whether the proposal was accepted.
        is_divergent: whether −log A exceeded the divergence threshold or was non-finite.
        energy: total energy H(ξ') of the proposal.
        energy_change: H(ξ') − H(ξ), not counting the log-determinant.
        log_det_jacobian: log|det J| of the learned map.
        direction: the direction d ∈ {−1, +1} of the proposal.
        squared_jump_distance: |x' − x|² of the proposal (whether or not accepted).
        num_integration_steps: M, the number of learned leapfrog steps.
        step_size: the ε of this transition (jittered when the dynamics have a step-size jitter).
    """

    acceptance_rate: Float[Array, ""]
    is_accepted: Bool[Array, ""]
    is_divergent: Bool[Array, ""]
    energy: Float[Array, ""]
    energy_change: Float[Array, ""]
    log_det_jacobian: Float[Array, ""]
    direction: Float[Array, ""]
    squared_jump_distance: Float[Array, ""]
    num_integration_steps: Array
    step_size: Float[Array, ""]


def init(position: ArrayTree, logdensity_fn: Callable[[ArrayTree], ArrayLike]) -> L2HMCState:
    """Create the chain state at ``position``, evaluating log p and ∇ log p there.

    Args:
        position: any pytree of floating arrays.
        logdensity_fn: log p up to a constant, taking a position of the same structure.

    Raises:
        TypeError: if a leaf of the position is not a floating-point array.
        ValueError (at run time, also under ``jit``): if log p or its gradient is not finite there.
    """
    leaves = jax.tree_util.tree_leaves(position)
    if not leaves or sum(jnp.size(leaf) for leaf in leaves) == 0:
        raise ValueError(f"the initial position is empty (no coordinates), got {position!r}")
    for leaf in leaves:
        if not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
            raise TypeError(
                f"positions must be floating-point arrays, got dtype {jnp.result_type(leaf)}; "
                "cast the initial position with jnp.asarray(x, float)"
            )
    check_scalar_logdensity(logdensity_fn, position)
    logdensity, logdensity_grad = jax.value_and_grad(logdensity_fn)(position)
    flat_grad, _ = ravel_pytree(logdensity_grad)
    logdensity = eqx.error_if(
        logdensity,
        ~jnp.isfinite(logdensity),
        "the log density is not finite at the initial position: choose a point inside the support",
    )
    flat_grad = eqx.error_if(
        flat_grad,
        ~jnp.all(jnp.isfinite(flat_grad)),
        "the gradient of the log density is not finite at the initial position",
    )
    return L2HMCState(position, logdensity, logdensity_grad)


def check_scalar_logdensity(logdensity_fn: Callable, position: ArrayTree) -> None:
    """Raise a clear error unless ``logdensity_fn(position)`` is one real number (shape-only check)."""
    if not callable(logdensity_fn):
        raise TypeError(f"logdensity_fn must be callable, got {type(logdensity_fn).__name__}")
    value = jax.eval_shape(logdensity_fn, position)
    if not (hasattr(value, "shape") and value.shape == () and jnp.issubdtype(value.dtype, jnp.floating)):
        shape = getattr(value, "shape", type(value).__name__)
        raise ValueError(
            f"logdensity_fn must return one real number (log p of one position), got {shape}; "
            "sum the terms of the log density, and give a batch of chains to init_chains or jax.vmap"
        )


def propose(
    rng_key: PRNGKeyArray,
    state: L2HMCState,
    logdensity_fn: Callable[[ArrayTree], ArrayLike],
    dynamics: L2HMCDynamics,
    aux: Float[Array, " aux"] | None = None,
    integrator: Integrator = learned_leapfrog,
) -> L2HMCProposal:
    """Draw (v, d, ε) and compute the proposal F L_θ ξ with its acceptance probability.

    Differentiable with respect to ``dynamics`` (the training loss uses it); the kernel applies the
    MH test on top. The integrator runs in the dynamics' whitened coordinates z = L⁻¹(x − loc);
    the two affine maps have reciprocal Jacobians, so log|det J| is unchanged. The step size is
    ε·u with u ~ U(1 − j, 1) for the dynamics' jitter j, drawn independently of the state, so each
    transition is an exact kernel and their mixture is too.
    """
    check_dynamics("dynamics", dynamics)
    flat_position, unravel = ravel_pytree(state.position)
    flat_grad, _ = ravel_pytree(state.logdensity_grad)
    if flat_position.ndim != 1 or flat_position.shape[0] != dynamics.dim:
        raise ValueError(
            f"the position has {flat_position.size} coordinates (flattened), but the dynamics were "
            f"built for dim={dynamics.dim}; a batch of chains needs jax.vmap over the kernel"
        )
    dtype = flat_position.dtype
    key_momentum, key_direction = jax.random.split(rng_key)
    momentum = jax.random.normal(key_momentum, flat_position.shape, dtype)
    direction = jnp.where(jax.random.bernoulli(key_direction), 1.0, -1.0).astype(dtype)
    jitter = jax.random.uniform(jax.random.fold_in(rng_key, 2), (), dtype)
    step_size = dynamics.step_size.astype(dtype) * (1.0 - dynamics.step_size_jitter.astype(dtype) * jitter)

    def whitened_logdensity(z):
        return logdensity_fn(unravel(dynamics.from_whitened(z).astype(dtype)))

    whitened = dynamics.to_whitened(flat_position).astype(dtype)
    end = integrator(
        dynamics,
        whitened_logdensity,
        whitened,
        momentum,
        jnp.asarray(state.logdensity, dtype),
        dynamics.whiten_gradient(flat_grad).astype(dtype),
        direction,
        aux,
        step_size,
    )
    new_position = dynamics.from_whitened(end.position).astype(dtype)
    new_grad = dynamics.unwhiten_gradient(end.logdensity_grad).astype(dtype)

    initial_energy = -state.logdensity + 0.5 * jnp.sum(momentum**2)
    energy = -end.logdensity + 0.5 * jnp.sum(end.momentum**2)
    energy_change = energy - initial_energy
    log_accept_ratio = -energy_change + end.log_det_jacobian
    is_finite = end.is_finite & jnp.isfinite(log_accept_ratio)
    # A non-finite proposal (overflow, NaN from the target) is a rejection: A = 0, δ = 0.
    log_accept_ratio = jnp.where(is_finite, log_accept_ratio, -jnp.inf)
    acceptance_probability = jnp.exp(jnp.minimum(log_accept_ratio, 0.0))
    squared_jump = jnp.where(is_finite, jnp.sum((new_position - flat_position) ** 2), 0.0)
    proposed = L2HMCState(unravel(new_position), end.logdensity.astype(dtype), unravel(new_grad))
    return L2HMCProposal(
        state=proposed,
        acceptance_probability=acceptance_probability,
        log_accept_ratio=log_accept_ratio,
        log_det_jacobian=end.log_det_jacobian,
        direction=direction,
        energy=energy,
        energy_change=energy_change,
        squared_jump_distance=squared_jump,
        step_size=step_size,
        initial_whitened=whitened,
        proposed_whitened=jnp.where(is_finite, end.position, whitened),
    )


def build_kernel(integrator: Integrator = learned_leapfrog, divergence_threshold: float = 1000.0):
    """Build the L2HMC transition kernel.

    Args:
        integrator: the map L_θ; [`learned_leapfrog`][l2hmc_ppl.learned_leapfrog] (a function with
            its signature can be passed in instead, as BlackJAX's kernels take their integrator).
        divergence_threshold: a transition is flagged divergent when −log A exceeds this value (or
            is not finite), as in BlackJAX's HMC.

    Returns:
        ``kernel(rng_key, state, logdensity_fn, dynamics, aux=None) -> (L2HMCState, L2HMCInfo)``.
        The dynamics are an argument, not a closure: jit the kernel once (``logdensity_fn`` static)
        and new weights of the same structure reuse the compiled code.

    Example:
        >>> kernel = jax.jit(build_kernel(), static_argnums=2)
        >>> state, info = kernel(rng_key, state, logdensity_fn, dynamics)
    """
    if not callable(integrator):
        raise TypeError(f"integrator must be callable (e.g. learned_leapfrog), got {integrator!r}")
    if not is_traced(divergence_threshold):  # the BlackJAX adapter passes it as a traced argument
        divergence_threshold = check_positive_float("divergence_threshold", divergence_threshold)

    def kernel(
        rng_key: PRNGKeyArray,
        state: L2HMCState,
        logdensity_fn: Callable[[ArrayTree], ArrayLike],
        dynamics: L2HMCDynamics,
        aux: Float[Array, " aux"] | None = None,
    ) -> tuple[L2HMCState, L2HMCInfo]:
        key_proposal, key_accept = jax.random.split(rng_key)
        proposal = propose(key_proposal, state, logdensity_fn, dynamics, aux, integrator)
        new_state, is_accepted = metropolis_accept(
            key_accept, proposal.log_accept_ratio, proposal.state, state
        )
        is_divergent = ~(-proposal.log_accept_ratio <= divergence_threshold)
        info = L2HMCInfo(
            acceptance_rate=proposal.acceptance_probability,
            is_accepted=is_accepted,
            is_divergent=is_divergent,
            energy=proposal.energy,
            energy_change=proposal.energy_change,
            log_det_jacobian=proposal.log_det_jacobian,
            direction=proposal.direction,
            squared_jump_distance=proposal.squared_jump_distance,
            num_integration_steps=jnp.asarray(dynamics.num_leapfrog_steps, jnp.int32),
            step_size=proposal.step_size,
        )
        return new_state, info

    return kernel
