r"""The Metropolis–Hastings accept step, in one place for the kernel, the warm start and training.

L2HMC's proposal F L_θ ξ is an involution with a known Jacobian, so plain MH applies: accept with
probability $A = \min(1, e^{\log r})$, where $\log r$ is the log acceptance ratio of the proposal
(−∞ for a proposal that met a non-finite value, which is therefore never accepted).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, PRNGKeyArray

__all__ = ["metropolis_accept"]

ArrayTree = Any


def metropolis_accept(
    rng_key: PRNGKeyArray,
    log_accept_ratio: Float[Array, "..."],
    proposed: ArrayTree,
    current: ArrayTree,
) -> tuple[ArrayTree, Bool[Array, "..."]]:
    """Accept ``proposed`` with probability min(1, exp(log_accept_ratio)), else keep ``current``.

    Works for one chain (scalar ratio) or a batch (ratio of shape ``(num_chains,)`` and a leading
    chain axis on every leaf of the states).

    Returns:
        ``(state, is_accepted)``.
    """
    log_uniform = jnp.log(jax.random.uniform(rng_key, jnp.shape(log_accept_ratio), log_accept_ratio.dtype))
    is_accepted = log_uniform < log_accept_ratio

    def select(new, old):
        mask = is_accepted.reshape(is_accepted.shape + (1,) * (jnp.ndim(new) - is_accepted.ndim))
        return jnp.where(mask, new, old)

    return jax.tree_util.tree_map(select, proposed, current), is_accepted
