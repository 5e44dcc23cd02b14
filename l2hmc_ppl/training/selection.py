r"""Selection: keep the trained sampler only if it mixes better than the one training started from.

Training maximises an estimate of the jump per transition; it can still end worse than its start
(a learning rate too high for the target, a collapse of ε, a local optimum). The selection step
compares the two samplers by the squared jump of their slowest coordinate and moment,

$$\text{score} = \min_i \min\big(\mathbb{E}[(z'_i - z_i)^2 A],\
  \tfrac12\mathbb{E}[(z'^2_i - z^2_i)^2 A]\big),$$

in the whitened coordinates z of the preconditioner (see
[`moment_jumps`][l2hmc_ppl.training.moment_jumps]): a sampler that moves z → −z scores zero on the
second moment, so a flip cannot win the selection however far it jumps. Both samplers have the same
M, so the score compares them per gradient. The estimates come for free from what training and the
warm start already computed on the chains: the trained sampler's from the proposals of the last
tenth of the training iterations, the starting sampler's from the final phase of the warm start
(or, without a warm start, from the first training iteration, whose proposals are exactly its).

The same score, per chunk of iterations, is what early stopping watches
([`TrainConfig`][l2hmc_ppl.TrainConfig]'s ``early_stopping_patience``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float
from optax.tree_utils import tree_where

from l2hmc_ppl._checks import is_traced
from l2hmc_ppl.dynamics.dynamics import L2HMCDynamics

__all__ = ["SelectionInfo", "min_moment_jump", "select_dynamics"]


class SelectionInfo(NamedTuple):
    """The two samplers' scores and which was kept.

    Attributes:
        trained_score: the trained dynamics' score (module docstring).
        initial_score: the same for the dynamics training started from.
        kept_initial: whether the starting dynamics were returned.
    """

    trained_score: Float[Array, ""]
    initial_score: Float[Array, ""]
    kept_initial: Bool[Array, ""]


def min_moment_jump(jumps: Float[Array, "2 dim"]) -> Float[Array, ""]:
    """The score of the module docstring from mean per-coordinate jumps of shape ``(2, dim)``.

    NumPy in, NumPy out (on the host, nothing to compile); JAX arrays and tracers stay in JAX.
    """
    if isinstance(jumps, np.ndarray):
        return np.min(np.nan_to_num(jumps, nan=0.0))
    return jnp.min(jnp.nan_to_num(jumps, nan=0.0))


def select_dynamics(
    trained: L2HMCDynamics,
    initial: L2HMCDynamics,
    trained_jumps: Float[Array, "2 dim"],
    initial_jumps: Float[Array, "2 dim"],
) -> tuple[L2HMCDynamics, SelectionInfo]:
    """Return ``trained`` or ``initial``, whichever has the higher score.

    With the jumps on the host (NumPy) the choice is made there; when training is traced
    (``vmap``/``pmap``) it is a ``where`` on the leaves.
    """
    trained_score, initial_score = min_moment_jump(trained_jumps), min_moment_jump(initial_jumps)
    kept_initial = initial_score > trained_score
    if is_traced(kept_initial):
        chosen = tree_where(kept_initial, initial, trained)
    else:
        chosen = initial if kept_initial else trained
    return chosen, SelectionInfo(trained_score, initial_score, kept_initial)
