"""Batches of chains: initialisation, tempering, spreading and perturbing positions, and the vmapped run.

The pieces that every multi-chain procedure of the library needs (the warm start, training, the
adapters, the benchmarks), written once. A batch of chains is an [`L2HMCState`][l2hmc_ppl.L2HMCState]
whose leaves carry a leading chain axis.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from l2hmc_ppl._checks import check_positive_int, is_traced
from l2hmc_ppl.core.kernel import L2HMCInfo, L2HMCState, build_kernel, check_scalar_logdensity, init

__all__ = [
    "init_chains",
    "num_chains",
    "perturb_chains",
    "run_chains",
    "spread_position",
    "tempered",
    "untempered",
]

ArrayTree = Any


def num_chains(positions: ArrayTree, name: str = "initial_positions") -> int:
    """The size of the leading chain axis shared by every leaf of ``positions``.

    Raises:
        ValueError: naming ``name``, if a leaf has no leading axis, the leaves disagree, or there
            are no chains.
    """
    leaves = jax.tree_util.tree_leaves(positions)
    if not leaves or any(jnp.ndim(leaf) == 0 for leaf in leaves):
        raise ValueError(f"{name} needs a leading chain axis on every leaf (shape (num_chains, ...))")
    sizes = {jnp.shape(leaf)[0] for leaf in leaves}
    if len(sizes) != 1:
        raise ValueError(f"all leaves of {name} need the same number of chains, got {sorted(sizes)}")
    size = sizes.pop()
    if size < 1:
        raise ValueError(f"{name} holds no chains (leading axis of size 0); give at least one")
    return size


def init_chains(
    positions: ArrayTree, logdensity_fn: Callable[[ArrayTree], ArrayLike], name: str = "initial_positions"
) -> L2HMCState:
    """[`init`][l2hmc_ppl.init] for every chain of a batch (leading chain axis).

    Outside ``jit`` a chain whose position is not finite, or whose log density or gradient is not,
    is named in the error (under ``jit`` the check of [`init`][l2hmc_ppl.init] applies).
    """
    num_chains(positions, name)
    for leaf in jax.tree_util.tree_leaves(positions):
        if not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
            raise TypeError(
                f"{name} must be floating-point arrays, got dtype {jnp.result_type(leaf)}; "
                "cast them with jnp.asarray(x, float)"
            )
    check_scalar_logdensity(logdensity_fn, jax.tree_util.tree_map(lambda leaf: leaf[0], positions))
    if is_traced(positions):
        return jax.vmap(init, (0, None))(positions, logdensity_fn)  # checked at run time
    logdensity, grad, finite = _values_and_gradients(logdensity_fn, positions)
    finite = np.asarray(finite)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        listed = ", ".join(map(str, bad[:10])) + (", ..." if bad.size > 10 else "")
        raise ValueError(
            f"{name}: the position, the log density or its gradient is not finite at chain(s) "
            f"{listed} ({bad.size} of {finite.size}); start every chain inside the target's support"
        )
    return L2HMCState(positions, logdensity, grad)


@functools.partial(jax.jit, static_argnums=0)
def _values_and_gradients(logdensity_fn, positions):
    """log p and ∇ log p of every chain, and whether position, value and gradient are all finite."""
    logdensity, grad = jax.vmap(jax.value_and_grad(logdensity_fn))(positions)
    flat = jax.vmap(lambda p, g: jnp.concatenate([ravel_pytree(p)[0], ravel_pytree(g)[0]]))(positions, grad)
    return logdensity, grad, jnp.isfinite(logdensity) & jnp.all(jnp.isfinite(flat), axis=1)


def tempered(state: L2HMCState, temperature) -> L2HMCState:
    """The state of the same position under the tempered target $p^{1/T}$."""
    return L2HMCState(
        state.position,
        state.logdensity / temperature,
        jax.tree_util.tree_map(lambda g: g / temperature, state.logdensity_grad),
    )


def untempered(state: L2HMCState, temperature) -> L2HMCState:
    """The inverse of [`tempered`][l2hmc_ppl.core.tempered]."""
    return tempered(state, 1.0 / temperature)


def spread_position(
    rng_key: PRNGKeyArray, position: ArrayTree, num: int, scale: float | Float[Array, ""] = 1e-2
) -> ArrayTree:
    """``num`` copies of one position, each perturbed by ``scale`` · N(0, I) (a leading chain axis).

    Training needs a batch of chains; this makes one from a single starting point, as BlackJAX's
    window adaptation is given one.
    """
    copies = jax.tree_util.tree_map(lambda leaf: jnp.broadcast_to(leaf, (num, *jnp.shape(leaf))), position)
    return perturb_chains(rng_key, copies, scale)


def perturb_chains(rng_key: PRNGKeyArray, positions: ArrayTree, scale: float | Float[Array, ""]) -> ArrayTree:
    """Every chain of a batch (leading chain axis) moved by its own ``scale`` · N(0, I)."""
    flat = jax.vmap(lambda position: ravel_pytree(position)[0])(positions)
    _, unravel = ravel_pytree(jax.tree_util.tree_map(lambda leaf: leaf[0], positions))
    noise = scale * jax.random.normal(rng_key, flat.shape, flat.dtype)
    return jax.vmap(unravel)(flat + noise)


def run_chains(
    rng_key: PRNGKeyArray,
    logdensity_fn: Callable[[ArrayTree], ArrayLike],
    dynamics,
    states: L2HMCState,
    num_steps: int,
    *,
    kernel: Callable | None = None,
) -> tuple[L2HMCState, ArrayTree, L2HMCInfo]:
    """Run a batch of chains for ``num_steps`` transitions (a ``lax.scan`` over a ``vmap``-ed kernel).

    Args:
        rng_key: PRNG key.
        logdensity_fn: log p on one position.
        dynamics: the dynamics every chain uses.
        states: the batch of chain states (leading chain axis).
        num_steps: transitions.
        kernel: the transition kernel; default ``build_kernel()`` ([`build_kernel`][l2hmc_ppl.build_kernel]).

    Returns:
        ``(final_states, positions, infos)`` with positions and infos of shape
        ``(num_steps, num_chains, ...)``. Jit the call (``logdensity_fn`` and ``num_steps`` static)
        to compile it.
    """
    kernel = build_kernel() if kernel is None else kernel
    if not is_traced(num_steps):
        num_steps = check_positive_int("num_steps", num_steps)
    # Any kernel's state with a position and its log density (L2HMCState, BlackJAX's HMCState).
    if not (hasattr(states, "position") and hasattr(states, "logdensity")):
        raise TypeError(
            "states must be a batch of chain states with a position and a logdensity "
            f"(e.g. init_chains(positions, f)), got {type(states).__name__}"
        )
    size = num_chains(states.position, "states")
    if jnp.ndim(states.logdensity) != 1:
        raise ValueError(
            "states must be a batch of chains (a leading chain axis): build them with init_chains, "
            f"not init; got a log density of shape {jnp.shape(states.logdensity)}"
        )

    def one_step(states, key):
        keys = jax.random.split(key, size)
        states, info = jax.vmap(kernel, (0, 0, None, None))(keys, states, logdensity_fn, dynamics)
        return states, (states.position, info)

    states, (positions, infos) = jax.lax.scan(one_step, states, jax.random.split(rng_key, num_steps))
    return states, positions, infos
