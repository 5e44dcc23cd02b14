"""BlackJAX adapter: L2HMC as a drop-in ``SamplingAlgorithm``, and training as an adaptation.

A pipeline written for NUTS switches to L2HMC by changing two lines, the adaptation and the
algorithm:

```python
import blackjax
from l2hmc_ppl.blackjax import l2hmc, l2hmc_adaptation

# warmup = blackjax.window_adaptation(blackjax.nuts, logdensity_fn)
warmup = l2hmc_adaptation(logdensity_fn)
(state, parameters), _ = warmup.run(warmup_key, initial_position, num_steps=1000)
# sampler = blackjax.nuts(logdensity_fn, **parameters)
sampler = l2hmc(logdensity_fn, **parameters)
state, history = blackjax.util.run_inference_algorithm(
    sample_key, sampler, num_samples, initial_state=state
)
```

The three layers mirror ``blackjax.hmc``:

- `l2hmc.init(position, logdensity_fn)` builds the chain state (`L2HMCState`: ``position``,
  ``logdensity``, ``logdensity_grad``);
- `l2hmc.build_kernel(divergence_threshold)` returns
  ``kernel(rng_key, state, logdensity_fn, dynamics) -> (L2HMCState, L2HMCInfo)``;
- `l2hmc(logdensity_fn, dynamics)` returns a ``blackjax.base.SamplingAlgorithm(init, step)``.

The step of every algorithm built by `l2hmc` calls one module-level compiled kernel with the
dynamics as an argument, so new weights of the same structure (e.g. after more training) reuse the
compiled code: the kernel is traced once per ``logdensity_fn``, dynamics structure and state shape.

`l2hmc_adaptation(logdensity_fn)` plays the role of ``blackjax.window_adaptation``: its ``run``
trains the dynamics with `l2hmc_ppl.train` and returns
``(AdaptationResults(state, {"dynamics": trained}), history)``.

References:
    D. Levy, M. D. Hoffman, J. Sohl-Dickstein. *Generalizing Hamiltonian Monte Carlo with Neural
    Networks*. ICLR 2018, arXiv:1711.09268.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import blackjax
import jax
import jax.numpy as jnp
from blackjax.adaptation.base import AdaptationResults
from blackjax.base import AdaptationAlgorithm, SamplingAlgorithm
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from l2hmc_ppl.core.kernel import L2HMCInfo, L2HMCState, build_kernel, init
from l2hmc_ppl.dynamics.dynamics import L2HMCDynamics, default_hidden_size
from l2hmc_ppl.training.train import _batch_size

__all__ = [
    "AdaptationResults",
    "L2HMCInfo",
    "L2HMCState",
    "as_top_level_api",
    "build_kernel",
    "default_hidden_size",
    "init",
    "l2hmc",
    "l2hmc_adaptation",
]

ArrayTree = Any
LogdensityFn = Callable[[ArrayTree], ArrayLike]


def _kernel_with_threshold(rng_key, state, logdensity_fn, dynamics, divergence_threshold, aux):
    return build_kernel(divergence_threshold)(rng_key, state, logdensity_fn, dynamics, aux)


# One compiled kernel for every algorithm built by `as_top_level_api`: the dynamics and the
# divergence threshold are traced arguments, only the log density is static. JAX caches the trace
# by (logdensity_fn, argument structure and shapes), so swapping in new weights never retraces.
_compiled_kernel = jax.jit(_kernel_with_threshold, static_argnums=2)


def _is_hashable(value) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def as_top_level_api(
    logdensity_fn: LogdensityFn,
    dynamics: L2HMCDynamics,
    *,
    divergence_threshold: float = 1000.0,
    aux: Float[Array, " aux"] | None = None,
) -> SamplingAlgorithm:
    """L2HMC with fixed (e.g. trained) dynamics as a BlackJAX ``SamplingAlgorithm``.

    Available as `l2hmc` (``l2hmc(logdensity_fn, dynamics)``), next to ``l2hmc.init`` and
    ``l2hmc.build_kernel``, as BlackJAX's own samplers are.

    Args:
        logdensity_fn: log p up to a constant (BlackJAX convention), taking one position (any
            pytree whose flattened size is ``dynamics.dim``).
        dynamics: the learned dynamics, e.g. ``parameters["dynamics"]`` from `l2hmc_adaptation`.
            An untrained `L2HMCDynamics` is almost exactly HMC (``dynamics.as_hmc_limit()`` is
            exactly HMC).
        divergence_threshold: a transition is flagged divergent when −log A exceeds this value.
        aux: optional conditioning input for dynamics built with ``aux_size``.

    Returns:
        ``SamplingAlgorithm(init, step)`` with ``init(position, rng_key=None) -> L2HMCState`` and
        ``step(rng_key, state) -> (L2HMCState, L2HMCInfo)``. ``step`` is pure; it works under
        ``jax.jit``, ``jax.vmap`` (over chains: keys and states batched) and
        ``blackjax.util.run_inference_algorithm``.

    Example:
        >>> sampler = l2hmc(logdensity_fn, dynamics)
        >>> state = sampler.init(position)
        >>> state, info = jax.jit(sampler.step)(rng_key, state)
    """
    if not isinstance(dynamics, L2HMCDynamics):
        raise TypeError(
            f"dynamics must be an L2HMCDynamics (e.g. parameters['dynamics'] from l2hmc_adaptation), "
            f"got {type(dynamics).__name__}"
        )
    if _is_hashable(logdensity_fn):
        kernel = _compiled_kernel
    else:  # an unhashable callable cannot be a static argument: trace it with the caller instead
        kernel = _kernel_with_threshold

    def init_fn(position: ArrayTree, rng_key: PRNGKeyArray | None = None) -> L2HMCState:
        del rng_key  # the L2HMC state is deterministic given the position
        return init(position, logdensity_fn)

    def step_fn(rng_key: PRNGKeyArray, state: L2HMCState) -> tuple[L2HMCState, L2HMCInfo]:
        return kernel(rng_key, state, logdensity_fn, dynamics, divergence_threshold, aux)

    return SamplingAlgorithm(init_fn, step_fn)


l2hmc = blackjax.GenerateSamplingAPI(as_top_level_api, init, build_kernel)
"""``l2hmc(logdensity_fn, dynamics)`` is `as_top_level_api`; ``l2hmc.init`` and ``l2hmc.build_kernel``
are the lower layers, as for ``blackjax.hmc``."""


def l2hmc_adaptation(
    logdensity_fn: LogdensityFn,
    dynamics: L2HMCDynamics | None = None,
    *,
    num_leapfrog_steps: int = 10,
    hidden_size: int | None = None,
    step_size: float = 0.1,
    num_particles: int = 64,
    jitter: float = 1e-2,
    start_from_hmc: bool = True,
    **train_kwargs,
) -> AdaptationAlgorithm:
    """Training as an adaptation, shaped like ``blackjax.window_adaptation``.

    ``run(rng_key, position, num_steps=1000)`` trains the L2HMC dynamics with `l2hmc_ppl.train`
    (Algorithm 1 of the paper, SPEC §5: persistent chains, one Adam step per iteration) and returns
    ``(AdaptationResults(state, parameters), history)`` with ``parameters = {"dynamics": trained}``,
    ready to be splatted into ``l2hmc(logdensity_fn, **parameters)``.

    Training needs a batch of chains, so ``run`` accepts either

    - **one position** (as ``window_adaptation.run`` does; a 1-d array or any pytree): it is
      replicated into ``num_particles`` training chains, each perturbed by ``jitter`` · N(0, I)
      so that the chains are not identical, and the returned ``state`` is that of the first
      training chain at the end (one `L2HMCState`, like window adaptation's); or
    - **a batch of positions** (a 2-d array ``(num_chains, dim)``, or any pytree with a leading
      chain axis and ``batched=True``): the chains are trained as given and the returned ``state``
      is batched, one per chain, ready for ``jax.vmap`` over chains.

    A 2-d array is read as a batch unless ``batched=False`` is passed to ``run``. Unlike window
    adaptation, ``run`` is a Python training loop: call it once, outside ``jax.vmap``/``jax.jit``
    (vmapping it over chains, as is done with window adaptation, is neither possible nor needed,
    since all chains share the trained dynamics).

    Args:
        logdensity_fn: log p up to a constant, taking one position.
        dynamics: the dynamics to start from; ``None`` builds fresh `L2HMCDynamics` of the
            position's dimension, with a key derived from ``run``'s ``rng_key``.
        num_leapfrog_steps: M, for dynamics built here.
        hidden_size: network width for dynamics built here; ``None`` uses `default_hidden_size`.
        step_size: initial ε for dynamics built here.
        start_from_hmc: zero the output heads of dynamics built here, so that training starts from
            exactly HMC with the warm start's ε and preconditioner (S = Q = T = 0). With ``False``
            the heads keep the paper's small random initialisation, which on a 25-d posterior
            already costs much of the warm-started HMC's acceptance (0.7 → 0.2 on German credit)
            before the first update.
        num_particles: number of training chains made from a single position.
        jitter: standard deviation of the perturbation that spreads a single position into
            ``num_particles`` chains.
        **train_kwargs: passed to `l2hmc_ppl.train` (``learning_rate``, ``loss_scale``,
            ``warm_start``, ``dense_mass``, ``optimizer``, ...); ``progress_bar`` defaults to
            ``False`` here.

    Returns:
        ``AdaptationAlgorithm(run)``; ``run(rng_key, position, num_steps=1000, *, batched=None)``
        returns ``(AdaptationResults(state, {"dynamics": trained}), history)`` where ``history``
        is the `TrainingHistory` of `l2hmc_ppl.train`.

    Example:
        >>> warmup = l2hmc_adaptation(logdensity_fn, num_leapfrog_steps=10)
        >>> (state, parameters), history = warmup.run(rng_key, position, num_steps=2000)
        >>> sampler = l2hmc(logdensity_fn, **parameters)
    """
    if not (isinstance(num_particles, int) and num_particles >= 1):
        raise ValueError(f"num_particles must be a positive integer, got {num_particles!r}")
    if dynamics is not None and not isinstance(dynamics, L2HMCDynamics):
        raise TypeError(f"dynamics must be an L2HMCDynamics or None, got {type(dynamics).__name__}")
    train_kwargs.setdefault("progress_bar", False)

    def run(
        rng_key: PRNGKeyArray,
        position: ArrayTree,
        num_steps: int = 1000,
        *,
        batched: bool | None = None,
    ) -> tuple[AdaptationResults, Any]:
        from l2hmc_ppl.training import train  # the training module imports heavier dependencies

        if any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(position)):
            raise TypeError(
                "l2hmc_adaptation(...).run is a Python training loop and cannot run under jax.vmap or "
                "jax.jit; call it once on a single position or on a batch of positions (all chains "
                "share the trained dynamics)"
            )
        position = jax.tree_util.tree_map(jnp.asarray, position)
        if batched is None:
            leaves = jax.tree_util.tree_leaves(position)
            batched = len(leaves) == 1 and isinstance(position, jax.Array) and position.ndim == 2
        key_dynamics, key_jitter, key_train = jax.random.split(rng_key, 3)
        if batched:
            single = jax.tree_util.tree_map(lambda leaf: leaf[0], position)
            _batch_size(position)  # a clear error for leaves without a common chain axis
            positions = position
        else:
            single = position
            flat, unravel = ravel_pytree(position)
            noise = jitter * jax.random.normal(key_jitter, (num_particles, flat.size), flat.dtype)
            positions = jax.vmap(unravel)(flat + noise)
        flat_single, _ = ravel_pytree(single)
        dim = flat_single.size
        if dynamics is None:
            start = L2HMCDynamics(
                dim,
                num_leapfrog_steps=num_leapfrog_steps,
                hidden_size=default_hidden_size(dim) if hidden_size is None else hidden_size,
                step_size=step_size,
                key=key_dynamics,
                dtype=flat_single.dtype,
            )
            if start_from_hmc:
                start = start.as_hmc_limit()
        else:
            start = dynamics
        if start.dim != dim:
            raise ValueError(
                f"the position has {dim} coordinates but the dynamics were built for {start.dim}"
            )
        trained, history = train(
            key_train, logdensity_fn, start, positions, num_steps=num_steps, **train_kwargs
        )
        final_state = history.final_state
        state = final_state if batched else jax.tree_util.tree_map(lambda leaf: leaf[0], final_state)
        return AdaptationResults(state, {"dynamics": trained}), history

    return AdaptationAlgorithm(run)
