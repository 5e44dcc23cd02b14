r"""Selection: keep the trained sampler only if it mixes better than the one training started from.

Training maximises an estimate of the jump per transition; it can still end worse than its
start (a learning rate too high for the target, a collapse of ε, a local optimum). The selection
step scores both samplers on the same chains with the same fresh randomness (momenta, directions,
step-size jitter) and returns the better. The score is the smaller of the two moments' expected
jumps (see [`moment_jumps`][l2hmc_ppl.training.loss.moment_jumps]),

$$\text{score} = \min\big(\mathbb{E}[\delta_1 A],\ \mathbb{E}[\delta_2 A]\big),$$

in the whitened coordinates of the preconditioner: a sampler that moves x → −x scores zero on the
second moment, so a flip cannot win the selection however far it jumps. Both samplers make the
same number of gradient evaluations per transition, so the score compares them per gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, PRNGKeyArray

from l2hmc_ppl.core.chains import num_chains, tempered
from l2hmc_ppl.core.kernel import L2HMCState, propose
from l2hmc_ppl.dynamics.dynamics import L2HMCDynamics
from l2hmc_ppl.training.loss import moment_jumps

__all__ = ["SelectionInfo", "moment_jump_score", "select_dynamics"]


class SelectionInfo(NamedTuple):
    """The two samplers' scores and which was kept.

    Attributes:
        trained_score: min(E[δ₁A], E[δ₂A]) of the trained dynamics.
        initial_score: the same for the dynamics training started from.
        kept_initial: whether the starting dynamics were returned.
    """

    trained_score: Float[Array, ""]
    initial_score: Float[Array, ""]
    kept_initial: Bool[Array, ""]


@eqx.filter_jit
def moment_jump_score(
    rng_key: PRNGKeyArray,
    logdensity_fn: Callable[[Any], Array],
    dynamics: L2HMCDynamics,
    chains: L2HMCState,
    aux=None,
    temperature=1.0,
    num_rounds: int = 8,
) -> Float[Array, ""]:
    """min(E[δ₁A], E[δ₂A]) over ``num_rounds`` proposals from every chain (module docstring)."""
    size = num_chains(chains.position, "chains")

    def tempered_logdensity(position):
        return logdensity_fn(position) / temperature

    def one_round(key):
        keys = jax.random.split(key, size)
        proposals = jax.vmap(propose, (0, 0, None, None, None))(
            keys, tempered(chains, temperature), tempered_logdensity, dynamics, aux
        )
        first, second = moment_jumps(proposals.initial_whitened, proposals.proposed_whitened)
        accept = proposals.acceptance_probability
        return jnp.stack([jnp.mean(first * accept), jnp.mean(second * accept)])

    jumps = jnp.mean(jax.lax.map(one_round, jax.random.split(rng_key, num_rounds)), axis=0)
    return jnp.min(jumps)


def select_dynamics(
    rng_key: PRNGKeyArray,
    logdensity_fn: Callable[[Any], Array],
    trained: L2HMCDynamics,
    initial: L2HMCDynamics,
    chains: L2HMCState,
    *,
    aux=None,
    temperature=1.0,
    num_rounds: int = 8,
) -> tuple[L2HMCDynamics, SelectionInfo]:
    """Return ``trained`` or ``initial``, whichever has the higher moment-jump score.

    The same key scores both, so they see the same momenta, directions and jitter. The choice is
    a ``where`` on the leaves, so the step also works when training is traced (``vmap``/``pmap``).
    """

    def score(dynamics):
        return moment_jump_score(rng_key, logdensity_fn, dynamics, chains, aux, temperature, num_rounds)

    trained_score, initial_score = score(trained), score(initial)
    return _choose(trained, initial, trained_score, initial_score)


@eqx.filter_jit
def _choose(trained, initial, trained_score, initial_score):
    kept_initial = initial_score > trained_score
    chosen = jax.tree_util.tree_map(lambda new, old: jnp.where(kept_initial, old, new), trained, initial)
    return chosen, SelectionInfo(trained_score, initial_score, kept_initial)
