"""`train`: the convenient entry point, a short loop over compiled chunks of Algorithm 1.

1. the chains are initialised and (by default) burned in and used to tune HMC
   ([`warm_start`][l2hmc_ppl.warm_start]);
2. [`run_chunk`][l2hmc_ppl.training.run_chunk] runs ``chunk_size`` iterations at a time, compiled
   once; between chunks the host updates the progress bar, applies the stop rules (too many
   failed updates; optionally, early stopping once the selection score stops improving) and writes
   checkpoints;
3. [`select_dynamics`][l2hmc_ppl.training.select_dynamics] keeps the trained sampler only if it mixes
   better than the one training started from.

Training can continue from a [`TrainState`][l2hmc_ppl.TrainState] (``history.train_state`` of an
earlier call, or a checkpoint with ``resume_from``), and Ctrl-C returns what has been trained so
far, with a warning.

References:
    D. Levy, M. D. Hoffman, J. Sohl-Dickstein. *Generalizing Hamiltonian Monte Carlo with Neural
    Networks*. ICLR 2018, arXiv:1711.09268, §4 and Algorithm 1.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, ArrayLike, Bool, Float, PRNGKeyArray

from l2hmc_ppl._checks import check_key, check_positive_float, check_positive_int, is_traced
from l2hmc_ppl.core.chains import init_chains, num_chains
from l2hmc_ppl.core.kernel import L2HMCState
from l2hmc_ppl.dynamics.dynamics import L2HMCDynamics
from l2hmc_ppl.training.checkpoint import load_train_state, read_checkpoint_header, save_train_state
from l2hmc_ppl.training.config import TrainConfig
from l2hmc_ppl.training.progress import progress_bar
from l2hmc_ppl.training.selection import SelectionInfo, min_moment_jump, select_dynamics
from l2hmc_ppl.training.step import StepOptions, TrainInfo, TrainState, init_train_state, run_chunk
from l2hmc_ppl.training.warm_start import WarmStartInfo
from l2hmc_ppl.training.warm_start import warm_start as run_warm_start

__all__ = ["TrainingHistory", "default_optimizer", "exponential_annealing", "train"]

ArrayTree = Any


class TrainingHistory(NamedTuple):
    """Per-iteration diagnostics of one [`train`][l2hmc_ppl.train] call and what it ended with.

    Attributes:
        loss: the training loss L(θ), one entry per iteration run by this call.
        acceptance_rate: mean acceptance probability of the chains' proposals.
        squared_jump_distance: mean δ·A over the chains (the expected squared jump distance).
        step_size: ε after the iteration's update.
        temperature: T used for the target $p^{1/T}$.
        skipped: whether the update was skipped (its gradient was not finite).
        num_nonfinite_samples: proposals that met a non-finite value.
        moment_jumps: per iteration, the proposals' mean accepted squared jumps per coordinate of
            the whitened position and of its square, shape ``(num_steps, 2, dim)``.
        final_state: the persistent chains after training (a batched
            [`L2HMCState`][l2hmc_ppl.L2HMCState]).
        warm_start: what the warm start measured ([`WarmStartInfo`][l2hmc_ppl.training.WarmStartInfo]),
            or ``None`` when it did not run.
        selection: the scores of the selection step
            ([`SelectionInfo`][l2hmc_ppl.training.SelectionInfo]), or ``None`` without ``keep_best``.
        train_state: the final [`TrainState`][l2hmc_ppl.TrainState] (the trained dynamics before
            selection): pass it to [`train`][l2hmc_ppl.train] to continue training.
        stop_reason: ``"completed"``, ``"converged"`` (the selection score stopped improving,
            see ``early_stopping_patience``), ``"interrupted"`` (Ctrl-C) or ``"failures"`` (too
            many skipped updates in a row).
    """

    loss: Float[Array, " num_steps"]
    acceptance_rate: Float[Array, " num_steps"]
    squared_jump_distance: Float[Array, " num_steps"]
    step_size: Float[Array, " num_steps"]
    temperature: Float[Array, " num_steps"]
    skipped: Bool[Array, " num_steps"]
    num_nonfinite_samples: Array
    moment_jumps: Float[Array, "num_steps 2 dim"]
    final_state: L2HMCState
    warm_start: WarmStartInfo | None
    selection: SelectionInfo | None
    train_state: TrainState
    stop_reason: str = "completed"

    @property
    def num_skipped(self) -> int:
        """Number of skipped updates."""
        return int(np.sum(self.skipped))

    @property
    def final_esjd(self) -> Float[Array, ""] | None:
        """The trained dynamics' selection score (``None`` without selection)."""
        return None if self.selection is None else self.selection.trained_score

    @property
    def initial_esjd(self) -> Float[Array, ""] | None:
        """The starting dynamics' selection score (``None`` without selection)."""
        return None if self.selection is None else self.selection.initial_score


def default_optimizer(learning_rate: float = 1e-3, decay_steps: int = 1000, decay_rate: float = 0.96):
    """Adam with staircase exponential decay (×0.96 every 1000 steps), the paper's setting."""
    import optax

    schedule = optax.exponential_decay(learning_rate, decay_steps, decay_rate, staircase=True)
    return optax.adam(schedule)


def exponential_annealing(
    initial: float = 5.0, final: float = 1.0, decay_rate: float = 0.98, decay_steps: int = 100
) -> Callable[[Array], Array]:
    """Temperature schedule T(step) = max(final, initial · decay_rate^⌊step / decay_steps⌋).

    Used for multimodal targets (Levy et al. 2018, §5): training sees $p^{1/T}$, which starts flat
    enough for the chains to cross between modes; evaluation is at T = 1. Equal arguments return
    an equal schedule, so the compiled training step is reused.
    """
    final = check_positive_float("final", final)
    initial = check_positive_float("initial", initial)
    decay_steps = check_positive_int("decay_steps", decay_steps)
    if initial < final:
        raise ValueError(f"initial must be at least final (the schedule cools down), got {initial} < {final}")
    if not 0 < check_positive_float("decay_rate", decay_rate) <= 1:
        raise ValueError(f"decay_rate must be in (0, 1], got {decay_rate!r}")
    return _ExponentialAnnealing(initial, final, float(decay_rate), decay_steps)


class _ExponentialAnnealing(NamedTuple):
    initial: float
    final: float
    decay_rate: float
    decay_steps: int

    def __call__(self, step):
        return jnp.maximum(self.final, self.initial * self.decay_rate ** jnp.floor(step / self.decay_steps))


def _check_positions(dynamics: L2HMCDynamics, initial_positions) -> None:
    num_chains(initial_positions, "initial_positions")
    example = jax.tree_util.tree_map(lambda leaf: leaf[0], initial_positions)
    flat = ravel_pytree(example)[0]
    if flat.shape[0] != dynamics.dim:
        raise ValueError(
            f"initial_positions have {flat.shape[0]} coordinates per chain (flattened), but the dynamics "
            f"were built for dim={dynamics.dim}"
        )
    dtype = dynamics.log_step_size.dtype
    if jnp.issubdtype(flat.dtype, jnp.floating) and flat.dtype != dtype:
        raise ValueError(
            f"initial_positions are {flat.dtype} but the dynamics are {dtype}: build the dynamics with "
            f"dtype={flat.dtype} or cast the positions with jnp.asarray(positions, {dtype})"
        )


def _loss_scale(config: TrainConfig, dynamics: L2HMCDynamics) -> Array:
    loss_scale = jnp.asarray(config.resolved_loss_scale, dynamics.log_step_size.dtype)
    if loss_scale.ndim == 1 and loss_scale.shape != (dynamics.dim,):
        raise ValueError(
            f"loss_scale must be a scalar or have shape ({dynamics.dim},), got {loss_scale.shape}"
        )
    return loss_scale


def _shard(chains: L2HMCState, mesh) -> L2HMCState:
    if len(mesh.axis_names) != 1:
        raise ValueError("mesh must be 1-d (one axis over which the chains are sharded)")
    size = num_chains(chains.position, "initial_positions")
    if size % mesh.size:
        raise ValueError(f"{size} chains cannot be split evenly over {mesh.size} devices")
    # Shard the chains and let XLA propagate the layout (auto mode), whatever the mesh's axis type:
    # the computation is written per chain and vmapped, so no collective is spelled out.
    auto_mesh = jax.sharding.Mesh(mesh.devices, mesh.axis_names, axis_types=(jax.sharding.AxisType.Auto,))
    sharding = jax.sharding.NamedSharding(auto_mesh, jax.sharding.PartitionSpec(mesh.axis_names[0]))
    return jax.device_put(chains, sharding)


def _initial_state(rng_key, logdensity_fn, dynamics, initial_positions, config, options, mesh):
    """Chains (sharded), warm start, optimizer state: the TrainState before the first iteration."""
    if not isinstance(dynamics, L2HMCDynamics):
        raise TypeError(
            "dynamics must be an L2HMCDynamics or a TrainState (to continue training), "
            f"got {type(dynamics).__name__}"
        )
    if initial_positions is None:
        raise ValueError("initial_positions (the persistent chains, with a leading chain axis) are required")
    _check_positions(dynamics, initial_positions)
    key_warm, key_train = jax.random.split(rng_key)
    chains = init_chains(initial_positions, logdensity_fn)
    if mesh is not None:
        chains = _shard(chains, mesh)
    warm_info = None
    if config.warm_start:
        dynamics, chains, warm_info = run_warm_start(
            key_warm,
            logdensity_fn,
            dynamics,
            chains,
            num_steps=config.num_warm_start_steps,
            dense_mass=config.uses_dense_mass(dynamics.dim),
            target_acceptance_rate=config.target_acceptance_rate,
            adapt_num_leapfrog_steps=config.adapt_num_leapfrog_steps,
            progress_bar=config.progress_bar and not is_traced(chains),
        )
    return init_train_state(key_train, dynamics, chains, options.optimizer), warm_info


def _resumed_state(path, rng_key, dynamics, initial_positions, logdensity_fn, config, options) -> TrainState:
    """The checkpoint at ``path``, read into the structure this training would have."""
    header = read_checkpoint_header(path)
    template_dynamics = dynamics.as_hmc_limit() if config.warm_start else dynamics
    if header.get("dense_preconditioner") and not template_dynamics.dense_preconditioner:
        template_dynamics = template_dynamics.with_preconditioner(
            jnp.zeros(dynamics.dim), jnp.eye(dynamics.dim)
        )
    steps = header.get("num_leapfrog_steps")
    if isinstance(steps, int) and steps >= 1 and steps != template_dynamics.num_leapfrog_steps:
        template_dynamics = template_dynamics.with_num_leapfrog_steps(steps, key=jax.random.key(0))
    _check_positions(dynamics, initial_positions)
    chains = jax.eval_shape(lambda p: init_chains(p, logdensity_fn), initial_positions)
    like = jax.eval_shape(
        lambda c: init_train_state(rng_key, template_dynamics, c, options.optimizer), chains
    )
    like = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), like)
    return load_train_state(path, like._replace(rng_key=rng_key))


def train(
    rng_key: PRNGKeyArray,
    logdensity_fn: Callable[[ArrayTree], ArrayLike],
    dynamics: L2HMCDynamics | TrainState,
    initial_positions: ArrayTree | None = None,
    config: TrainConfig | None = None,
    *,
    aux: Float[Array, " aux"] | None = None,
    mesh: jax.sharding.Mesh | None = None,
    resume_from: str | os.PathLike | None = None,
    **options: Any,
) -> tuple[L2HMCDynamics, TrainingHistory]:
    """Train L2HMC dynamics on ``logdensity_fn`` (warm start, Algorithm 1, selection).

    Args:
        rng_key: PRNG key.
        logdensity_fn: log p up to a constant, on one position (a pytree of float arrays). Pass the
            same function object to later calls to reuse the compiled training.
        dynamics: the dynamics to train (e.g. freshly built), or a
            [`TrainState`][l2hmc_ppl.TrainState] to continue training (``history.train_state``;
            then ``initial_positions`` is not given and there is no warm start).
        initial_positions: the persistent chains, with a leading chain axis (the paper uses 200).
        config: the options ([`TrainConfig`][l2hmc_ppl.TrainConfig]); default ``TrainConfig()``.
        aux: conditioning input for dynamics built with ``aux_size`` (fixed during training).
        mesh: a 1-d ``jax.sharding.Mesh``; the chains are sharded over its devices.
        resume_from: a checkpoint written by a training with ``checkpoint_path`` on the same
            inputs: training continues from it (no warm start).
        **options: any [`TrainConfig`][l2hmc_ppl.TrainConfig] field, overriding ``config``
            (``train(key, f, dynamics, positions, num_steps=2000)``).

    Returns:
        ``(dynamics, history)``: the trained dynamics (or the ones training started from, when
        those mix better; see ``keep_best``) and a [`TrainingHistory`][l2hmc_ppl.TrainingHistory].

    Example:
        >>> dynamics = L2HMCDynamics(2, key=jax.random.key(0))
        >>> positions = jax.random.normal(jax.random.key(1), (200, 2))
        >>> trained, history = train(jax.random.key(2), logdensity_fn, dynamics, positions, num_steps=2000)
    """
    if not callable(logdensity_fn):
        raise TypeError(f"logdensity_fn must be callable, got {type(logdensity_fn).__name__}")
    check_key("rng_key", rng_key)
    if config is not None and not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig (or None), got {type(config).__name__}")
    config = (config or TrainConfig()).replace(**options) if options else (config or TrainConfig())
    step_options = StepOptions.from_config(config)
    warm_info = None
    if isinstance(dynamics, TrainState):
        if initial_positions is not None or resume_from is not None:
            raise ValueError("continuing from a TrainState takes neither initial_positions nor resume_from")
        if is_traced(dynamics.step):
            raise TypeError("continuing training from a TrainState cannot run under jax.jit/vmap/pmap")
        state = dynamics
    elif resume_from is not None:
        state = _resumed_state(
            resume_from, rng_key, dynamics, initial_positions, logdensity_fn, config, step_options
        )
    else:
        state, warm_info = _initial_state(
            rng_key, logdensity_fn, dynamics, initial_positions, config, step_options, mesh
        )
    loss_scale = _loss_scale(config, state.dynamics)
    initial_dynamics = state.dynamics
    traced = is_traced(state)
    start = 0 if traced and not isinstance(dynamics, TrainState) else int(state.step)
    state, infos, stop_reason = _run(
        state, logdensity_fn, step_options, loss_scale, aux, config, start, traced
    )

    concatenate = jnp.concatenate if traced else np.concatenate
    per_iteration = [concatenate(values) for values in zip(*infos, strict=True)] if infos else None
    trained, selection = state.dynamics, None
    if config.keep_best and per_iteration is not None:
        jumps = per_iteration[TrainInfo._fields.index("moment_jumps")]
        # the last tenth of the iterations, at least a chunk (an early stop leaves few iterations)
        window = min(jumps.shape[0], max(1, jumps.shape[0] // 10, config.chunk_size))
        # the starting dynamics: the warm start's tuned HMC, else this call's first proposals
        initial_jumps = warm_info.moment_jumps if warm_info is not None else jumps[0]
        if traced:
            trained_jumps = jnp.mean(jumps[-window:], axis=0)
        else:  # NumPy on the host: nothing compiles afresh for another window length (num_steps)
            trained_jumps, initial_jumps = np.mean(jumps[-window:], axis=0), np.asarray(initial_jumps)
        trained, selection = select_dynamics(trained, initial_dynamics, trained_jumps, initial_jumps)
    history = TrainingHistory(
        *(per_iteration or [np.zeros((0,))] * len(TrainInfo._fields)),
        final_state=state.chains,
        warm_start=warm_info,
        selection=selection,
        train_state=state,
        stop_reason=stop_reason,
    )
    if not traced:
        _report(history, config, start)
    return trained, history


def _run(state, logdensity_fn, options, loss_scale, aux, config, start, traced):
    """The loop over compiled chunks; returns the state, the chunks' infos and why it stopped."""
    num_steps_array = jnp.asarray(config.num_steps, jnp.int32)
    num_left = max(0, config.num_steps - start)
    num_chunks = math.ceil(num_left / config.chunk_size)
    infos, stop_reason = [], "completed"
    stopping = EarlyStopping(config.early_stopping_patience, config.early_stopping_min_gain)
    progress = progress_bar(num_left, "L2HMC training", enabled=config.progress_bar and not traced)
    try:
        for index in range(num_chunks):
            state, info = run_chunk(
                state, logdensity_fn, options, loss_scale, aux, num_steps_array, config.chunk_size
            )
            done = min(config.chunk_size, num_left - index * config.chunk_size)
            if traced:  # train is being traced (vmap/pmap): no host-side reporting or stop rule
                infos.append(jax.tree_util.tree_map(lambda x, done=done: x[:done], info))
                continue
            record = jax.tree_util.tree_map(lambda x, done=done: x[:done], jax.device_get(info))
            infos.append(record)  # NumPy on the host: no new compilation for another num_steps
            progress.update(done)
            progress.set_postfix(
                loss=f"{record.loss[done - 1]:.3g}",
                accept=f"{record.acceptance_rate[done - 1]:.2f}",
                step_size=f"{record.step_size[done - 1]:.3g}",
                refresh=False,
            )
            if config.checkpoint_path and (
                (index + 1) % config.checkpoint_every == 0 or index + 1 == num_chunks
            ):
                save_train_state(config.checkpoint_path, state)
            if int(state.num_consecutive_failures) > config.max_consecutive_failures:
                stop_reason = "failures"
                break
            if done == config.chunk_size and stopping.update(np.mean(record.moment_jumps, axis=0)):
                stop_reason = "converged"
                if config.checkpoint_path:
                    save_train_state(config.checkpoint_path, state)
                progress.total = progress.n  # a finished bar, not an interrupted one
                break
    except KeyboardInterrupt:
        # The state of the last finished chunk is complete and consistent: keep it.
        stop_reason = "interrupted"
        if config.checkpoint_path:
            save_train_state(config.checkpoint_path, state)
    finally:
        progress.close()
    return state, infos, stop_reason


class EarlyStopping:
    """The stop rule of ``early_stopping_patience``: stop once ``patience`` chunks in a row have not
    raised the selection score by ``min_gain`` (relative) over the best earlier chunk.

    The score is [`min_moment_jump`][l2hmc_ppl.training.min_moment_jump] of the chunk's mean
    per-coordinate jumps: the slowest coordinate and moment, which a flip cannot game.
    """

    def __init__(self, patience: int | None, min_gain: float):
        self.patience, self.min_gain = patience, min_gain
        self.best, self.num_stalled = -math.inf, 0

    def update(self, chunk_jumps: np.ndarray) -> bool:
        """Record one chunk's mean jumps ``(2, dim)``; return whether training should stop."""
        if self.patience is None:
            return False
        score = float(min_moment_jump(np.asarray(chunk_jumps)))
        if self.best == -math.inf or score > self.best + self.min_gain * abs(self.best):
            self.best, self.num_stalled = score, 0
        else:
            self.num_stalled += 1
        return self.num_stalled >= self.patience


def _report(history: TrainingHistory, config: TrainConfig, start: int) -> None:
    """Warnings a user must see: an interrupted, stalled or useless training, and the fallback."""
    done = int(history.loss.shape[0])
    if history.stop_reason == "interrupted":
        warnings.warn(
            f"L2HMC training interrupted after {start + done} of {config.num_steps} iterations; returning "
            "the dynamics trained so far (continue with train(key, logdensity_fn, history.train_state)).",
            stacklevel=3,
        )
    elif history.stop_reason == "failures":
        warnings.warn(
            f"L2HMC training stopped after {start + done} of {config.num_steps} iterations: more than "
            f"{config.max_consecutive_failures} consecutive updates had no finite gradient. Try a lower "
            "learning rate, gradient clipping (max_grad_norm) or initial positions inside the target's "
            "support.",
            stacklevel=3,
        )
    elif done:
        # Both can hold at once (a target that overflows): each says something the other does not.
        final_acceptance = float(np.mean(history.acceptance_rate[-max(1, done // 10) :]))
        if final_acceptance < 0.01:
            warnings.warn(
                "L2HMC training: the chains' proposals were almost never accepted (mean acceptance "
                f"{final_acceptance:.2g} over the last tenth of the iterations), so the sampler cannot "
                "have learned to move. Check the target (its scale, its support) and use the warm start, "
                "which tunes the step size first.",
                stacklevel=3,
            )
        if history.num_skipped * 2 > done:
            warnings.warn(
                f"L2HMC training skipped {history.num_skipped} of {done} updates because their gradient "
                "was not finite, so it learned little. Try a lower learning rate, gradient clipping "
                "(max_grad_norm) or a larger loss_scale.",
                stacklevel=3,
            )
    if history.selection is not None and bool(history.selection.kept_initial):
        warnings.warn(
            "the trained L2HMC sampler mixes worse than the tuned HMC it started from (smaller of the "
            f"two moments' expected jumps {float(history.selection.trained_score):.3g} against "
            f"{float(history.selection.initial_score):.3g}); returning the starting dynamics. Train "
            "longer or with a lower learning rate.",
            stacklevel=3,
        )
