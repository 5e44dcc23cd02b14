"""The one mutants module: weights far from the HMC limit, and deliberately broken integrators.

Exactness must hold for any weights, so exactness tests use `randomize_heads` (order-one S, Q, T).
Every statistical test of exactness must also *fail* on a broken kernel; the mutants below break it
in one way each and are passed to the kernel as its integrator (``build_kernel(integrator=...)``,
``L2HMCKernel(..., integrator=...)``, ``l2hmc(..., integrator=...)``), never monkeypatched in.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from l2hmc_ppl import L2HMCDynamics, learned_leapfrog


def randomize_heads(dynamics: L2HMCDynamics, rng_key, scale: float = 1.0) -> L2HMCDynamics:
    """Replace every head weight, bias and log-coefficient by random values of order ``scale``.

    Freshly built dynamics start near the HMC limit; exactness must hold for any weights, so the
    exact and invariance tests use heads that make S, Q, T of order one.
    """

    def heads(d):
        out = []
        for net in (d.position_net, d.momentum_net):
            for head in (net.scale_head, net.transformation_head, net.translation_head):
                out += [head.weight, head.bias]
            out += [net.scale_log_coeff, net.transformation_log_coeff]
        return out

    leaves = heads(dynamics)
    keys = jax.random.split(rng_key, len(leaves))
    new = [
        scale
        * jax.random.normal(key, leaf.shape, leaf.dtype)
        / np.sqrt(leaf.shape[-1] if leaf.ndim == 2 else 1)
        for key, leaf in zip(keys, leaves, strict=True)
    ]
    return eqx.tree_at(heads, dynamics, new)


def dropped_log_det(*args, **kwargs):
    """The learned leapfrog without its log-determinant: MH then targets the wrong density."""
    return learned_leapfrog(*args, **kwargs)._replace(log_det_jacobian=jnp.zeros(()))


def no_direction_flip(
    dynamics, logdensity_fn, position, momentum, logdensity, grad, direction, *args, **kwargs
):
    """Always integrating forward: the proposal L_θ ξ alone is not an involution."""
    return learned_leapfrog(
        dynamics, logdensity_fn, position, momentum, logdensity, grad, 1.0, *args, **kwargs
    )


def wrong_backward_mask(
    dynamics, logdensity_fn, position, momentum, logdensity, grad, direction, *args, **kwargs
):
    """The reverse pass undoes the position halves in the forward order: not the inverse map."""
    masks = jnp.where(jnp.asarray(direction) > 0, dynamics.masks, ~dynamics.masks)
    swapped = eqx.tree_at(lambda d: d.masks, dynamics, masks)
    return learned_leapfrog(
        swapped, logdensity_fn, position, momentum, logdensity, grad, direction, *args, **kwargs
    )


#: The broken integrators, by name.
MUTANTS = {
    "dropped_log_det": dropped_log_det,
    "no_direction_flip": no_direction_flip,
    "wrong_backward_mask": wrong_backward_mask,
}
