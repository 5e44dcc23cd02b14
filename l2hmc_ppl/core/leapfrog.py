r"""The learned leapfrog integrator of L2HMC, forward (d = +1) and its exact inverse (d = −1).

One forward step t (Levy et al. 2018, §3), with ζ the network inputs and ⊙ elementwise products:

1. $v' = v \odot e^{\frac{\varepsilon}{2} S_v(\zeta_1)} - \frac{\varepsilon}{2}\big(\nabla U(x) \odot
   e^{\varepsilon Q_v(\zeta_1)} + T_v(\zeta_1)\big)$, with $\zeta_1 = (x, \nabla U(x), \tau(t))$;
2. $x' = x \odot \bar m + m \odot \big[x \odot e^{\varepsilon S_x(\zeta_2)} + \varepsilon (v' \odot
   e^{\varepsilon Q_x(\zeta_2)} + T_x(\zeta_2))\big]$, with $\zeta_2 = (x \odot \bar m, v', \tau(t))$;
3. $x''$: the same with the masks swapped, $\zeta_3 = (x' \odot m, v', \tau(t))$;
4. $v''$: as 1. at $x''$, $\zeta_4 = (x'', \nabla U(x''), \tau(t))$;

with $\log|\det J| = \frac{\varepsilon}{2} \sum S_v(\zeta_1) + \varepsilon \sum m \odot S_x(\zeta_2) +
\varepsilon \sum \bar m \odot S_x(\zeta_3) + \frac{\varepsilon}{2} \sum S_v(\zeta_4)$.

The reverse direction undoes these sub-updates in the opposite order (steps t = M..1, sub-updates
4, 3, 2, 1). Every sub-update changes only coordinates the network that scales it does not see, so
its inverse evaluates the very same S, Q, T. Writing a for the log-scale and b for the shift, a
forward sub-update is $y = u e^{a} + b$ and its inverse is $u = (y - b) e^{-a}$; both are the one
formula $y = u e^{d a} + d\, b\, e^{(d-1) a / 2}$, so a single code path serves both directions
(under ``vmap`` the direction is data, and nothing is computed twice), and the log-determinant is d
times the forward one.

With S = Q = T = 0 each step is exactly velocity-Verlet leapfrog with identity mass: the two masked
halves together move every coordinate once by ε v'.

Non-finite values: a trajectory that reaches a point where the log density or its gradient is not
finite (outside the support, an overflow) stops there. Its last finite state is kept, the result is
flagged (``is_finite=False``, so the kernel rejects it), and no non-finite number reaches the
backward pass: the gradient of the target is evaluated through
[`finite_value_and_grad`][l2hmc_ppl.core.finite_value_and_grad], whose derivative is zero where its
value is not finite. One proposal that runs into a NaN region therefore cannot poison the training
gradient of the others.

References:
    D. Levy, M. D. Hoffman, J. Sohl-Dickstein. *Generalizing Hamiltonian Monte Carlo with Neural
    Networks*. ICLR 2018, arXiv:1711.09268, §3 and Appendix A.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float
from optax.tree_utils import tree_where

from l2hmc_ppl.dynamics.dynamics import L2HMCDynamics, time_encoding

__all__ = ["LeapfrogResult", "finite_value_and_grad", "hmc_leapfrog", "learned_leapfrog"]


class LeapfrogResult(NamedTuple):
    """End point of a learned-leapfrog trajectory and the log-determinant of its Jacobian.

    Attributes:
        position: x at the end (the last finite point if the trajectory stopped).
        momentum: v at the end.
        logdensity: log p(x).
        logdensity_grad: ∇ log p(x).
        log_det_jacobian: log|det J| of the map.
        is_finite: False if the trajectory met a non-finite value and stopped (a rejection).
    """

    position: Float[Array, " dim"]
    momentum: Float[Array, " dim"]
    logdensity: Float[Array, ""]
    logdensity_grad: Float[Array, " dim"]
    log_det_jacobian: Float[Array, ""]
    is_finite: Bool[Array, ""]


def _all_finite(*arrays) -> Bool[Array, ""]:
    return functools.reduce(jnp.logical_and, [jnp.all(jnp.isfinite(a)) for a in arrays])


def finite_value_and_grad(logdensity_fn: Callable, position: Float[Array, " dim"]):
    """``(log p(x), ∇ log p(x), ok)`` with non-finite values replaced by zeros, and ``ok`` the flag.

    Its derivative (with respect to ``position`` and to anything ``logdensity_fn`` closes over) is
    that of ``jax.value_and_grad(logdensity_fn)`` where ``ok`` and exactly zero elsewhere (a
    select, so no 0·NaN can appear), which keeps a divergent sample from putting NaN into the
    training gradient of the others. Only reverse-mode differentiation is defined.
    """
    # Everything logdensity_fn closes over (data, a temperature, values traced by jit, vmap or grad)
    # becomes an explicit argument, as a custom VJP requires.
    closed = jax.make_jaxpr(logdensity_fn)(position)

    def converted(position, *constants):
        return jax.core.eval_jaxpr(closed.jaxpr, constants, position)[0]

    return _finite_value_and_grad(converted, position, *closed.consts)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _finite_value_and_grad(logdensity_fn, position, *constants):
    return _finite_value_and_grad_forward(logdensity_fn, position, *constants)[0]


def _finite_value_and_grad_forward(logdensity_fn, position, *constants):
    value_and_grad = jax.value_and_grad(logdensity_fn)
    (value, grad), vjp = jax.vjp(value_and_grad, position, *constants)
    ok = _all_finite(value, grad)
    value = jnp.where(ok, value, 0.0).astype(position.dtype)
    grad = jnp.where(ok, grad, 0.0).astype(position.dtype)
    return (value, grad, ok), (vjp, ok)


def _finite_value_and_grad_backward(logdensity_fn, residuals, cotangents):
    vjp, ok = residuals
    value_cotangent, grad_cotangent, _ = cotangents

    def select(cotangent):  # integer inputs have symbolic-zero (float0) cotangents
        return cotangent if cotangent.dtype == jax.dtypes.float0 else jnp.where(ok, cotangent, 0.0)

    return tuple(select(c) for c in vjp((value_cotangent, grad_cotangent)))


_finite_value_and_grad.defvjp(_finite_value_and_grad_forward, _finite_value_and_grad_backward)


def _stop_at_nonfinite(ok, new, carry):
    """The next carry: ``new`` while everything stayed finite, else the last finite state, flagged."""
    ok = ok & _all_finite(*new)
    kept = tree_where(ok, new, carry[:-1])
    return (*kept, ok)


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
    logdensity: Float[Array, ""],
    logdensity_grad: Float[Array, " dim"],
    direction,
    aux: Float[Array, " aux"] | None = None,
    step_size: Float[Array, ""] | None = None,
) -> LeapfrogResult:
    """Run the M learned leapfrog steps in ``direction`` (+1 forward, −1 the exact inverse).

    Works in the coordinates it is given (the kernel passes whitened coordinates; see
    [`L2HMCDynamics`][l2hmc_ppl.L2HMCDynamics]). ``logdensity_grad`` is ∇ log p at ``position``
    (= −∇U), cached from the previous transition: the trajectory makes M new gradient evaluations.

    Args:
        dynamics: the learned dynamics.
        logdensity_fn: log p(x) up to a constant, on flat vectors.
        position: x, shape ``(dim,)``.
        momentum: v, shape ``(dim,)``.
        logdensity: log p(x) (kept if the first step already fails).
        logdensity_grad: ∇ log p(x).
        direction: +1 or −1 (a scalar, may be traced).
        aux: conditioning input for dynamics built with ``aux_size``.
        step_size: ε of this trajectory; default the dynamics' ε (the kernel passes a jittered one).

    Returns:
        The end point (position, momentum, log density and its gradient), log|det J| of the map
        and whether the trajectory stayed finite.
    """
    dtype = position.dtype
    step_size = (dynamics.step_size if step_size is None else step_size).astype(dtype)
    half_step = 0.5 * step_size
    direction = jnp.asarray(direction, dtype)
    is_forward = direction > 0
    num_steps = dynamics.num_leapfrog_steps

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
        x, v, logdensity, grad, log_det, ok = carry
        # Forward runs t = 1..M with sub-updates (m, m̄); the inverse runs t = M..1 with (m̄, m).
        t = jnp.where(is_forward, step_index, num_steps - 1 - step_index)
        tau = time_encoding(t, num_steps, dtype)
        first_mask = _first_update_mask(dynamics.masks, t, is_forward)
        new_v, log_det_v1 = momentum_update(x, v, grad, tau)
        new_x, log_det_x1 = position_update(x, new_v, first_mask, tau)
        new_x, log_det_x2 = position_update(new_x, new_v, ~first_mask, tau)
        new_logdensity, new_grad, target_ok = finite_value_and_grad(logdensity_fn, new_x)
        new_v, log_det_v2 = momentum_update(new_x, new_v, new_grad, tau)
        new_log_det = log_det + log_det_v1 + log_det_x1 + log_det_x2 + log_det_v2
        new = (new_x, new_v, new_logdensity, new_grad, new_log_det)
        return _stop_at_nonfinite(ok & target_ok, new, carry), None

    initial = _initial_carry(position, momentum, logdensity, logdensity_grad)
    (x, v, logdensity, grad, log_det, ok), _ = jax.lax.scan(one_step, initial, jnp.arange(num_steps))
    return LeapfrogResult(x, v, logdensity, grad, log_det, ok)


def _initial_carry(position, momentum, logdensity, logdensity_grad):
    """The scan carry of both integrators: (x, v, log p, ∇log p, log-det so far, still finite)."""
    dtype = position.dtype
    return (position, momentum, jnp.asarray(logdensity, dtype), logdensity_grad, jnp.zeros((), dtype),
            jnp.asarray(True))  # fmt: skip


def hmc_leapfrog(
    dynamics: L2HMCDynamics,
    logdensity_fn: Callable[[Float[Array, " dim"]], Float[Array, ""]],
    position: Float[Array, " dim"],
    momentum: Float[Array, " dim"],
    logdensity: Float[Array, ""],
    logdensity_grad: Float[Array, " dim"],
    direction,
    aux: Float[Array, " aux"] | None = None,
    step_size: Float[Array, ""] | None = None,
    num_steps: int | Array | None = None,
) -> LeapfrogResult:
    """The HMC limit of [`learned_leapfrog`][l2hmc_ppl.learned_leapfrog] without evaluating the networks.

    M velocity-Verlet steps of size d·ε (identity mass in the coordinates it is given): exactly
    what `learned_leapfrog` computes when S = Q = T = 0 (up to floating-point rounding), at a
    fraction of the cost. The warm start runs it; the networks and ``aux`` are ignored. Same
    signature and non-finite rule, plus ``num_steps``: M, which may be a traced integer (then the
    steps run in a loop of that many iterations, not differentiable; default the dynamics' M).
    """
    del aux
    dtype = position.dtype
    step_size = (dynamics.step_size if step_size is None else step_size).astype(dtype)
    half_step = 0.5 * step_size
    direction = jnp.asarray(direction, dtype)

    def one_step(carry, _):
        x, v, _, grad, log_det, ok = carry
        # the arithmetic of learned_leapfrog with S = Q = T = 0, operation for operation
        new_v = v + direction * (half_step * grad)
        new_x = x + direction * (step_size * new_v)
        new_logdensity, new_grad, target_ok = finite_value_and_grad(logdensity_fn, new_x)
        new_v = new_v + direction * (half_step * new_grad)
        new = (new_x, new_v, new_logdensity, new_grad, log_det)
        return _stop_at_nonfinite(ok & target_ok, new, carry), None

    initial = _initial_carry(position, momentum, logdensity, logdensity_grad)
    if num_steps is None:
        (x, v, logdensity, grad, log_det, ok), _ = jax.lax.scan(
            one_step, initial, None, length=dynamics.num_leapfrog_steps
        )
    else:
        x, v, logdensity, grad, log_det, ok = jax.lax.fori_loop(
            0, num_steps, lambda _, carry: one_step(carry, None)[0], initial
        )
    return LeapfrogResult(x, v, logdensity, grad, log_det, ok)
