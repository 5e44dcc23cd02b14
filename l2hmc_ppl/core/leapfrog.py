"""The learned leapfrog integrator of L2HMC, forward (d = +1) and its exact inverse (d = −1).

One forward step t (SPEC §2), with ζ the network inputs and ⊙ elementwise products:

1. v' = v ⊙ exp(ε/2 S_v(ζ₁)) − ε/2 (∇U(x) ⊙ exp(ε Q_v(ζ₁)) + T_v(ζ₁)),   ζ₁ = (x, ∇U(x), τ(t))
2. x' = x ⊙ m̄ + m ⊙ [x ⊙ exp(ε S_x(ζ₂)) + ε (v' ⊙ exp(ε Q_x(ζ₂)) + T_x(ζ₂))],   ζ₂ = (x ⊙ m̄, v', τ(t))
3. x'' = x' ⊙ m + m̄ ⊙ [x' ⊙ exp(ε S_x(ζ₃)) + ε (v' ⊙ exp(ε Q_x(ζ₃)) + T_x(ζ₃))],  ζ₃ = (x' ⊙ m, v', τ(t))
4. v'' = v' ⊙ exp(ε/2 S_v(ζ₄)) − ε/2 (∇U(x'') ⊙ exp(ε Q_v(ζ₄)) + T_v(ζ₄)),   ζ₄ = (x'', ∇U(x''), τ(t))

with log|det J| = ε/2 ΣS_v(ζ₁) + ε Σ m ⊙ S_x(ζ₂) + ε Σ m̄ ⊙ S_x(ζ₃) + ε/2 ΣS_v(ζ₄).

The reverse direction undoes these sub-updates in the opposite order (steps t = M..1, sub-updates
4, 3, 2, 1). Every sub-update changes only coordinates the network that scales it does not see, so
its inverse evaluates the very same S, Q, T. Writing a = log-scale and b = shift, a forward sub-update
is y = u e^{a} + b and its inverse is u = (y − b) e^{−a}; both are the one formula

    y = u · e^{d·a} + d · b · e^{(d−1)/2 · a},

so a single code path serves both directions (under ``vmap`` the direction is data, and nothing is
computed twice), and the log-determinant is d times the forward one.

With S = Q = T = 0 each step is exactly velocity-Verlet leapfrog with identity mass: the two masked
halves together move every coordinate once by ε v'.

References:
    D. Levy, M. D. Hoffman, J. Sohl-Dickstein. *Generalizing Hamiltonian Monte Carlo with Neural
    Networks*. ICLR 2018, arXiv:1711.09268, §3 and Appendix.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from l2hmc_ppl.dynamics.dynamics import L2HMCDynamics, time_encoding

__all__ = ["LeapfrogResult", "learned_leapfrog"]


class LeapfrogResult(NamedTuple):
    """End point of a learned-leapfrog trajectory and the log-determinant of its Jacobian."""

    position: Float[Array, " dim"]
    momentum: Float[Array, " dim"]
    logdensity: Float[Array, ""]
    logdensity_grad: Float[Array, " dim"]
    log_det_jacobian: Float[Array, ""]


def _affine_update(value, log_scale, shift, direction):
    """y = value·e^{d·a} + d·b·e^{(d−1)/2·a}: the forward map for d = +1, its inverse for d = −1."""
    return value * jnp.exp(direction * log_scale) + direction * shift * jnp.exp(
        0.5 * (direction - 1.0) * log_scale
    )


def _first_update_mask(masks, step_index, is_forward):
    """Coordinates changed by the first position sub-update: mᵗ forward, m̄ᵗ when undoing."""
    return jnp.where(is_forward, masks[step_index], ~masks[step_index])


def learned_leapfrog(
    dynamics: L2HMCDynamics,
    logdensity_fn: Callable[[Float[Array, " dim"]], Float[Array, ""]],
    position: Float[Array, " dim"],
    momentum: Float[Array, " dim"],
    logdensity_grad: Float[Array, " dim"],
    direction,
    aux: Float[Array, " aux"] | None = None,
) -> LeapfrogResult:
    """Run the M learned leapfrog steps in ``direction`` (+1 forward, −1 the exact inverse).

    Works in the coordinates it is given (the kernel passes whitened coordinates; see
    :class:`~l2hmc_ppl.L2HMCDynamics`). ``logdensity_grad`` is ∇ log p at ``position`` (= −∇U), cached
    from the previous transition: the trajectory makes M new gradient evaluations.

    Args:
        dynamics: the learned dynamics.
        logdensity_fn: log p(x) up to a constant, on flat vectors.
        position: x, shape ``(dim,)``.
        momentum: v, shape ``(dim,)``.
        logdensity_grad: ∇ log p(x).
        direction: +1 or −1 (a scalar, may be traced).
        aux: conditioning input for dynamics built with ``aux_size``.

    Returns:
        The end point (position, momentum, log density and its gradient) and log|det J| of the map.
    """
    dtype = position.dtype
    step_size = dynamics.step_size.astype(dtype)
    half_step = 0.5 * step_size
    direction = jnp.asarray(direction, dtype)
    is_forward = direction > 0
    num_steps = dynamics.num_leapfrog_steps
    value_and_grad = jax.value_and_grad(logdensity_fn)

    def networks(net, first, second, tau):
        return tuple(out.astype(dtype) for out in net(first, second, tau, aux))

    def momentum_update(x, v, grad, tau):
        potential_grad = -grad
        scale, transformation, translation = networks(dynamics.momentum_net, x, potential_grad, tau)
        log_scale = half_step * scale
        shift = -half_step * (potential_grad * jnp.exp(step_size * transformation) + translation)
        return _affine_update(v, log_scale, shift, direction), direction * jnp.sum(log_scale)

    def position_update(x, v, update_mask, tau):
        kept = jnp.where(update_mask, 0.0, x).astype(dtype)
        scale, transformation, translation = networks(dynamics.position_net, kept, v, tau)
        log_scale = step_size * scale
        shift = step_size * (v * jnp.exp(step_size * transformation) + translation)
        moved = _affine_update(x, log_scale, shift, direction)
        log_det = direction * jnp.sum(jnp.where(update_mask, log_scale, 0.0))
        return jnp.where(update_mask, moved, x), log_det

    def one_step(carry, step_index):
        x, v, _, grad, log_det = carry
        # Forward runs t = 1..M with sub-updates (m, m̄); the inverse runs t = M..1 with (m̄, m).
        t = jnp.where(is_forward, step_index, num_steps - 1 - step_index)
        tau = time_encoding(t, num_steps, dtype)
        first_mask = _first_update_mask(dynamics.masks, t, is_forward)
        v, log_det_v1 = momentum_update(x, v, grad, tau)
        x, log_det_x1 = position_update(x, v, first_mask, tau)
        x, log_det_x2 = position_update(x, v, ~first_mask, tau)
        logdensity, grad = value_and_grad(x)
        logdensity, grad = logdensity.astype(dtype), grad.astype(dtype)
        v, log_det_v2 = momentum_update(x, v, grad, tau)
        log_det = log_det + log_det_v1 + log_det_x1 + log_det_x2 + log_det_v2
        return (x, v, logdensity, grad, log_det), None

    initial = (
        position,
        momentum,
        jnp.zeros((), dtype),  # overwritten by the first step (M ≥ 1)
        logdensity_grad,
        jnp.zeros((), dtype),
    )
    (x, v, logdensity, grad, log_det), _ = jax.lax.scan(one_step, initial, jnp.arange(num_steps))
    return LeapfrogResult(x, v, logdensity, grad, log_det)
