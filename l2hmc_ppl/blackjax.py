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

- ``l2hmc.init(position, logdensity_fn)`` ([`init`][l2hmc_ppl.init]) builds the chain state
  ([`L2HMCState`][l2hmc_ppl.L2HMCState]: ``position``, ``logdensity``, ``logdensity_grad``);
- ``l2hmc.build_kernel(integrator, divergence_threshold)`` ([`build_kernel`][l2hmc_ppl.build_kernel])
  returns ``kernel(rng_key, state, logdensity_fn, dynamics) -> (L2HMCState, L2HMCInfo)``;
- ``l2hmc(logdensity_fn, dynamics)`` ([`as_top_level_api`][l2hmc_ppl.blackjax.as_top_level_api])
  returns a ``blackjax.base.SamplingAlgorithm(init, step)``.

The step of every algorithm built by [`l2hmc`][l2hmc_ppl.blackjax.l2hmc] calls one module-level
compiled kernel with the dynamics as an argument, so new weights of the same structure (e.g. after
more training) reuse the compiled code: the kernel is traced once per ``logdensity_fn``, dynamics
structure and state shape.

[`l2hmc_adaptation(logdensity_fn)`][l2hmc_ppl.blackjax.l2hmc_adaptation] plays the role of
``blackjax.window_adaptation``: its ``run`` trains the dynamics with [`train`][l2hmc_ppl.train] and
returns ``(AdaptationResults(state, {"dynamics": trained}), history)``.

References:
    D. Levy, M. D. Hoffman, J. Sohl-Dickstein. *Generalizing Hamiltonian Monte Carlo with Neural
    Networks*. ICLR 2018, arXiv:1711.09268.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

try:
    import blackjax
except ImportError as error:  # pragma: no cover - exercised in a subprocess
    raise ImportError("l2hmc_ppl.blackjax needs BlackJAX: pip install l2hmc_ppl[blackjax]") from error
import jax
import jax.numpy as jnp
from blackjax.adaptation.base import AdaptationResults
from blackjax.base import AdaptationAlgorithm, SamplingAlgorithm
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from l2hmc_ppl._checks import (
    check_dynamics,
    check_key,
    check_nonnegative_float,
    check_positive_float,
    check_positive_int,
)
from l2hmc_ppl.core.chains import init_chains, num_chains, perturb_chains, spread_position
from l2hmc_ppl.core.kernel import Integrator, L2HMCInfo, L2HMCState, build_kernel, init
from l2hmc_ppl.core.leapfrog import learned_leapfrog
from l2hmc_ppl.dynamics.dynamics import (
    L2HMCDynamics,
    check_dynamics_options,
    default_dynamics,
    default_hidden_size,
)
from l2hmc_ppl.training.config import TrainConfig
from l2hmc_ppl.training.train import train

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


def _kernel_with_threshold(rng_key, state, logdensity_fn, dynamics, divergence_threshold, aux, integrator):
    return build_kernel(integrator, divergence_threshold)(rng_key, state, logdensity_fn, dynamics, aux)


# One compiled kernel for every algorithm built by `as_top_level_api`: the dynamics and the
# divergence threshold are traced arguments, only the log density (and the integrator) are static.
# JAX caches the trace by (logdensity_fn, argument structure and shapes), so swapping in new
# weights never retraces.
_compiled_kernel = jax.jit(_kernel_with_threshold, static_argnums=(2, 6))


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
    integrator: Integrator = learned_leapfrog,
) -> SamplingAlgorithm:
    """L2HMC with fixed (e.g. trained) dynamics as a BlackJAX ``SamplingAlgorithm``.

    Available as [`l2hmc`][l2hmc_ppl.blackjax.l2hmc] (``l2hmc(logdensity_fn, dynamics)``), next to
    ``l2hmc.init`` and ``l2hmc.build_kernel``, as BlackJAX's own samplers are.

    Args:
        logdensity_fn: log p up to a constant (BlackJAX convention), taking one position (any
            pytree whose flattened size is ``dynamics.dim``).
        dynamics: the learned dynamics, e.g. ``parameters["dynamics"]`` from
            [`l2hmc_adaptation`][l2hmc_ppl.blackjax.l2hmc_adaptation]. An untrained
            [`L2HMCDynamics`][l2hmc_ppl.L2HMCDynamics] is almost exactly HMC
            (``dynamics.as_hmc_limit()`` is exactly HMC).
        divergence_threshold: a transition is flagged divergent when −log A exceeds this value.
        aux: optional conditioning input for dynamics built with ``aux_size``.
        integrator: the map L_θ (default [`learned_leapfrog`][l2hmc_ppl.learned_leapfrog]), as
            ``blackjax.hmc`` takes its integrator.

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
    divergence_threshold = check_positive_float("divergence_threshold", divergence_threshold)
    if not callable(integrator):
        raise TypeError(f"integrator must be callable (e.g. learned_leapfrog), got {integrator!r}")
    if _is_hashable(logdensity_fn):
        kernel = _compiled_kernel
    else:  # an unhashable callable cannot be a static argument: trace it with the caller instead
        kernel = _kernel_with_threshold

    def init_fn(position: ArrayTree, rng_key: PRNGKeyArray | None = None) -> L2HMCState:
        del rng_key  # the L2HMC state is deterministic given the position
        size = ravel_pytree(position)[0].size
        if size != dynamics.dim:
            raise ValueError(
                f"the position has {size} coordinates (flattened) but the dynamics were built for "
                f"dim={dynamics.dim}; one chain per init (jax.vmap(sampler.init) for a batch)"
            )
        return init(position, logdensity_fn)

    def step_fn(rng_key: PRNGKeyArray, state: L2HMCState) -> tuple[L2HMCState, L2HMCInfo]:
        return kernel(rng_key, state, logdensity_fn, dynamics, divergence_threshold, aux, integrator)

    return SamplingAlgorithm(init_fn, step_fn)


l2hmc = blackjax.GenerateSamplingAPI(as_top_level_api, init, build_kernel)
"""``l2hmc(logdensity_fn, dynamics)`` is [`as_top_level_api`][l2hmc_ppl.blackjax.as_top_level_api];
``l2hmc.init`` ([`init`][l2hmc_ppl.init]) and ``l2hmc.build_kernel``
([`build_kernel`][l2hmc_ppl.build_kernel]) are the lower layers, as for ``blackjax.hmc``."""


def l2hmc_adaptation(
    logdensity_fn: LogdensityFn,
    dynamics: L2HMCDynamics | None = None,
    *,
    config: TrainConfig | None = None,
    num_particles: int = 64,
    particle_spread: float = 1e-2,
    num_leapfrog_steps: int | None = None,
    hidden_size: int | None = None,
    step_size: float = 0.1,
    step_size_jitter: float | None = None,
    **train_options: Any,
) -> AdaptationAlgorithm:
    """Training as an adaptation, shaped like ``blackjax.window_adaptation``.

    ``run(rng_key, position, num_steps=1000)`` trains the L2HMC dynamics with
    [`train`][l2hmc_ppl.train] (burn-in and HMC tuning, Algorithm 1 of the paper, selection) and
    returns ``(AdaptationResults(state, parameters), history)`` with
    ``parameters = {"dynamics": trained}``, ready to be splatted into
    ``l2hmc(logdensity_fn, **parameters)``.

    Training needs a batch of chains, so ``run`` accepts either

    - **one position** (as ``window_adaptation.run`` does; a scalar, a 1-d array or any pytree): it
      is spread into ``num_particles`` training chains, each perturbed by
      ``particle_spread`` · N(0, I), and the returned ``state`` is that of the first training chain
      at the end (one [`L2HMCState`][l2hmc_ppl.L2HMCState], like window adaptation's); or
    - **a batch of positions** (a 2-d array ``(num_chains, dim)``, or any pytree with a leading
      chain axis and ``batched=True``): training runs on these chains and, when they are fewer than
      ``num_particles``, on copies of them (taken in turn, each perturbed by ``particle_spread`` ·
      N(0, I)) up to ``num_particles`` chains in all, since a few chains are too few to estimate
      the training gradient and the warm start's preconditioner; the returned ``state`` is batched,
      one per given chain, ready for ``jax.vmap`` over chains.

    A 2-d array is read as a batch unless ``batched=False`` is passed to ``run``. Unlike window
    adaptation, ``run`` is a Python loop over compiled chunks: call it once, outside
    ``jax.vmap``/``jax.jit`` (vmapping it over chains, as is done with window adaptation, is
    neither possible nor needed, since all chains share the trained dynamics).

    Args:
        logdensity_fn: log p up to a constant, taking one position.
        dynamics: the dynamics to start from; ``None`` builds
            [`default_dynamics`][l2hmc_ppl.default_dynamics] of the position's dimension (zero heads:
            training starts from exactly the tuned HMC), with a key derived from ``run``'s key.
        config: the training options ([`TrainConfig`][l2hmc_ppl.TrainConfig]); ``run``'s
            ``num_steps`` replaces its ``num_steps``.
        num_particles: number of training chains made from a single position, and the least number
            made from a batch of positions.
        particle_spread: standard deviation of the perturbation that spreads a single position into
            ``num_particles`` chains.
        num_leapfrog_steps: M, for dynamics built here.
        hidden_size: network width for dynamics built here.
        step_size: initial ε for dynamics built here.
        step_size_jitter: step-size jitter for dynamics built here.
        **train_options: any [`TrainConfig`][l2hmc_ppl.TrainConfig] field (``learning_rate``,
            ``dense_mass``, ``progress_bar``, ...), overriding ``config``.

    Returns:
        ``AdaptationAlgorithm(run)``; ``run(rng_key, position, num_steps=1000, *, batched=None)``
        returns ``(AdaptationResults(state, {"dynamics": trained}), history)`` where ``history``
        is the [`TrainingHistory`][l2hmc_ppl.TrainingHistory] of the training.

    Example:
        >>> warmup = l2hmc_adaptation(logdensity_fn)
        >>> (state, parameters), history = warmup.run(rng_key, position, num_steps=1000)
        >>> sampler = l2hmc(logdensity_fn, **parameters)
    """
    if not callable(logdensity_fn):
        raise TypeError(f"logdensity_fn must be callable, got {type(logdensity_fn).__name__}")
    num_particles = check_positive_int("num_particles", num_particles)
    check_dynamics("dynamics", dynamics, optional=True)
    if config is not None and not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    particle_spread = check_nonnegative_float("particle_spread", particle_spread)
    base_config = (config or TrainConfig()).replace(**train_options)
    dynamics_options = dict(
        num_leapfrog_steps=num_leapfrog_steps,
        hidden_size=hidden_size,
        step_size=step_size,
        step_size_jitter=step_size_jitter,
    )
    check_dynamics_options(**dynamics_options)  # fail now, not when run builds them

    def run(
        rng_key: PRNGKeyArray,
        position: ArrayTree,
        num_steps: int = 1000,
        *,
        batched: bool | None = None,
    ) -> tuple[AdaptationResults, Any]:
        if any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(position)):
            raise TypeError(
                "l2hmc_adaptation(...).run is a Python training loop and cannot run under jax.vmap or "
                "jax.jit; call it once on a single position or on a batch of positions (all chains "
                "share the trained dynamics)"
            )
        check_key("rng_key", rng_key)
        config = base_config.replace(num_steps=check_positive_int("num_steps", num_steps))
        position = jax.tree_util.tree_map(_as_float_array, position)
        if batched is None:
            leaves = jax.tree_util.tree_leaves(position)
            batched = len(leaves) == 1 and isinstance(position, jax.Array) and position.ndim == 2
        key_dynamics, key_spread, key_train = jax.random.split(rng_key, 3)
        if batched:
            num_given = num_chains(position, "position")  # a clear error for leaves without a common axis
            single = jax.tree_util.tree_map(lambda leaf: leaf[0], position)
            if num_given < num_particles:  # name a bad chain among the given ones, not among the copies
                init_chains(position, logdensity_fn, name="position")
            positions = _with_extra_particles(key_spread, position, num_given, num_particles, particle_spread)
        else:
            single = position
            if ravel_pytree(single)[0].size:  # checked before it is spread into chains that share it
                try:
                    init_chains(jax.tree_util.tree_map(lambda leaf: leaf[None], single), logdensity_fn)
                except ValueError:
                    raise ValueError(
                        "position: the log density or its gradient is not finite at the initial position; "
                        "start inside the target's support"
                    ) from None
            positions = spread_position(key_spread, position, num_particles, particle_spread)
        flat_single, _ = ravel_pytree(single)
        dim = flat_single.size
        if dim == 0:
            raise ValueError(f"position has no coordinates to sample, got {position!r}")
        if dynamics is None:
            start = default_dynamics(dim, key=key_dynamics, dtype=flat_single.dtype, **dynamics_options)
        else:
            start = dynamics
        if start.dim != dim:
            raise ValueError(
                f"the position has {dim} coordinates but the dynamics were built for {start.dim}"
            )
        trained, history = train(key_train, logdensity_fn, start, positions, config)
        final_state = history.final_state
        if batched:  # the given chains, without the extra particles
            state = jax.tree_util.tree_map(lambda leaf: leaf[:num_given], final_state)
        else:
            state = jax.tree_util.tree_map(lambda leaf: leaf[0], final_state)
        return AdaptationResults(state, {"dynamics": trained}), history

    return AdaptationAlgorithm(run)


def _with_extra_particles(rng_key, positions, num_given: int, num_particles: int, spread: float):
    """The given chains, then copies of them in turn, each perturbed by ``spread`` · N(0, I), up to
    ``num_particles`` training chains in all (none added when there are that many already).

    Training estimates its gradient and the warm start its preconditioner from the batch: the few
    chains a user samples with (4, say) are too few for either."""
    num_extra = num_particles - num_given
    if num_extra <= 0:
        return positions
    copies = jax.tree_util.tree_map(lambda leaf: leaf[jnp.arange(num_extra) % num_given], positions)
    extra = perturb_chains(rng_key, copies, spread)
    return jax.tree_util.tree_map(lambda given, more: jnp.concatenate([given, more]), positions, extra)


def _as_float_array(leaf) -> Array:
    """A position leaf as a float array: integers and booleans become the default float."""
    array = jnp.asarray(leaf)
    if jnp.issubdtype(array.dtype, jnp.floating):
        return array
    if not (jnp.issubdtype(array.dtype, jnp.integer) or array.dtype == jnp.bool_):
        raise TypeError(f"position must hold real numbers, got an array of dtype {array.dtype}")
    return array.astype(jnp.result_type(float))
