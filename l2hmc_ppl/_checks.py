"""Argument checks shared by every entry point: one sentence that names the argument, its value and
what is expected, raised at the boundary instead of an error from deep inside JAX.

Values traced under ``jit`` cannot be checked here; the callers that accept traced values check
them at run time with ``equinox.error_if``.
"""

from __future__ import annotations

import math
import numbers

import jax
import jax.numpy as jnp

__all__ = [
    "check_dynamics",
    "check_key",
    "check_nonnegative_float",
    "check_nonnegative_int",
    "check_positive_float",
    "check_positive_int",
    "is_traced",
]


def is_traced(tree) -> bool:
    """Whether any leaf of ``tree`` is a JAX tracer (its value is unknown until run time)."""
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(tree))


def _is_int(value) -> bool:
    # Python and NumPy integers; bool is an int in Python but never a count.
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_finite_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def check_positive_int(name: str, value) -> int:
    """``value`` as a Python int, if it is an integer ≥ 1 (NumPy integers accepted)."""
    if not (_is_int(value) and value >= 1):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_nonnegative_int(name: str, value) -> int:
    """``value`` as a Python int, if it is an integer ≥ 0 (NumPy integers accepted)."""
    if not (_is_int(value) and value >= 0):
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def check_positive_float(name: str, value) -> float:
    """``value`` as a Python float, if it is a finite number > 0."""
    if not (_is_finite_number(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def check_nonnegative_float(name: str, value) -> float:
    """``value`` as a Python float, if it is a finite number ≥ 0."""
    if not (_is_finite_number(value) and value >= 0):
        raise ValueError(f"{name} must be a non-negative finite number, got {value!r}")
    return float(value)


def check_key(name: str, value) -> None:
    """A JAX PRNG key: a typed key (``jax.random.key``) or a raw ``uint32[2]`` one; tracers pass."""
    if isinstance(value, jax.core.Tracer):
        return
    is_key = isinstance(value, jax.Array) and (
        jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key)
        or (value.dtype == jnp.uint32 and value.shape == (2,))
    )
    if not is_key:
        raise TypeError(f"{name} must be a JAX PRNG key (jax.random.key(seed)), got {value!r}")


def check_dynamics(name: str, value, *, optional: bool = False) -> None:
    """An [`L2HMCDynamics`][l2hmc_ppl.L2HMCDynamics] (or a subclass); also None if ``optional``."""
    from l2hmc_ppl.dynamics import L2HMCDynamics  # the dynamics import this module

    if optional and value is None:
        return
    if not isinstance(value, L2HMCDynamics):
        expected = "an L2HMCDynamics or None" if optional else "an L2HMCDynamics"
        raise TypeError(
            f"{name} must be {expected} (e.g. l2hmc_ppl.default_dynamics(dim, key=...)), "
            f"got {type(value).__name__}"
        )
