"""Training L2HMC: Algorithm 1 of the paper, compiled end to end.

Each iteration, with N persistent chains ξ ~ p (the batch) and fresh draws ξ ~ q (the burn-in term):

1. resample momenta and directions and compute the proposals F L_θ ξ with their acceptance A;
2. L(θ) = mean ℓ_λ(ξ, F L_θ ξ, A) over the chains + λ_b · mean ℓ_λ over the q-draws, with gradients
   through the whole trajectory (including ∇U, hence second derivatives of U) and through A;
3. one optimiser step on θ (networks and log ε);
4. move the persistent chains by MH with the proposals of step 1 (pre-update parameters).

Iterations run inside ``lax.scan`` in chunks; the host is contacted once per chunk (progress bar and
the stop rule), never per iteration. A step whose loss or gradient is not finite is recomputed with
the offending samples' gradient paths cut (their proposals are rejections anyway); if no sample is
usable the update is skipped. Weights never become NaN.

References:
    D. Levy, M. D. Hoffman, J. Sohl-Dickstein. *Generalizing Hamiltonian Monte Carlo with Neural
    Networks*. ICLR 2018, arXiv:1711.09268, §4 and Algorithm 1.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, ArrayLike, Bool, Float, PRNGKeyArray
from tqdm.auto import tqdm

from l2hmc_ppl.core.kernel import L2HMCState, init, propose
from l2hmc_ppl.dynamics.dynamics import L2HMCDynamics
from l2hmc_ppl.training.loss import esjd_loss
from l2hmc_ppl.training.warm_start import WarmStartInfo
from l2hmc_ppl.training.warm_start import warm_start as run_warm_start

__all__ = ["TrainingHistory", "default_optimizer", "exponential_annealing", "train"]

ArrayTree = Any


class TrainingHistory(NamedTuple):
    """Per-iteration training diagnostics (arrays of length ``num_steps``) and the final chains.

    Attributes:
        loss: the training loss L(θ).
        acceptance_rate: mean acceptance probability of the chains' proposals.
        squared_jump_distance: mean δ·A over the chains (the expected squared jump distance).
        step_size: ε after the iteration's update.
        temperature: T used for the target p^{1/T}.
        skipped: whether the update was skipped (no sample had a finite loss and gradient).
        num_nonfinite_samples: samples whose proposal or gradient was not finite.
        final_state: the persistent chains after training (batched ``L2HMCState``).
        warm_start: what the warm start measured, or ``None`` when it was off.
        final_esjd: expected squared jump of the trained dynamics on the final chains (with
            ``keep_best``; else ``None``).
        initial_esjd: the same for the dynamics training started from; when it is larger,
            ``train`` returned those.
    """

    loss: Float[Array, " num_steps"]
    acceptance_rate: Float[Array, " num_steps"]
    squared_jump_distance: Float[Array, " num_steps"]
    step_size: Float[Array, " num_steps"]
    temperature: Float[Array, " num_steps"]
    skipped: Bool[Array, " num_steps"]
    num_nonfinite_samples: Array
    final_state: L2HMCState
    warm_start: WarmStartInfo | None
    final_esjd: Float[Array, ""] | None = None
    initial_esjd: Float[Array, ""] | None = None

    @property
    def num_skipped(self) -> int:
        """Number of skipped updates."""
        return int(jnp.sum(self.skipped))


def default_optimizer(
    learning_rate: float = 1e-3, decay_steps: int = 1000, decay_rate: float = 0.96
) -> optax.GradientTransformation:
    """Adam with staircase exponential decay (×0.96 every 1000 steps), the paper's setting."""
    schedule = optax.exponential_decay(learning_rate, decay_steps, decay_rate, staircase=True)
    return optax.adam(schedule)


def exponential_annealing(
    initial: float = 5.0, final: float = 1.0, decay_rate: float = 0.98, decay_steps: int = 100
) -> Callable[[Array], Array]:
    """Temperature schedule T(step) = max(final, initial · decay_rate^⌊step / decay_steps⌋).

    Used for multimodal targets (SPEC §5): training sees p^{1/T}, which starts flat enough for the
    chains to cross between modes; evaluation is at T = 1.
    """
    if not (initial >= final > 0 and 0 < decay_rate <= 1 and decay_steps >= 1):
        raise ValueError("need initial >= final > 0, 0 < decay_rate <= 1 and decay_steps >= 1")

    def schedule(step):
        return jnp.maximum(final, initial * decay_rate ** jnp.floor(step / decay_steps))

    return schedule


def _batch_size(positions: ArrayTree) -> int:
    leaves = jax.tree_util.tree_leaves(positions)
    if not leaves or any(jnp.ndim(leaf) == 0 for leaf in leaves):
        raise ValueError("initial_positions needs a leading chain axis on every leaf")
    sizes = {jnp.shape(leaf)[0] for leaf in leaves}
    if len(sizes) != 1:
        raise ValueError(f"all leaves of initial_positions need the same number of chains, got {sizes}")
    return sizes.pop()


def _tempered(state: L2HMCState, temperature) -> L2HMCState:
    return L2HMCState(
        state.position,
        state.logdensity / temperature,
        jax.tree_util.tree_map(lambda g: g / temperature, state.logdensity_grad),
    )


def train(
    rng_key: PRNGKeyArray,
    logdensity_fn: Callable[[ArrayTree], ArrayLike],
    dynamics: L2HMCDynamics,
    initial_positions: ArrayTree,
    *,
    num_steps: int,
    optimizer: optax.GradientTransformation | None = None,
    learning_rate: float = 1e-3,
    loss_scale: ArrayLike = 0.1,
    burn_in_weight: float = 0.0,
    initial_distribution: Callable[[PRNGKeyArray, int], ArrayTree] | None = None,
    temperature_schedule: Callable[[Array], Array] | None = None,
    max_grad_norm: float | None = None,
    warm_start: bool = True,
    dense_mass: bool = False,
    num_warm_start_steps: int = 400,
    target_acceptance_rate: float = 0.75,
    chunk_size: int = 100,
    progress_bar: bool = True,
    max_consecutive_failures: int = 100,
    mesh: jax.sharding.Mesh | None = None,
    aux: Float[Array, " aux"] | None = None,
    keep_best: bool = True,
) -> tuple[L2HMCDynamics, TrainingHistory]:
    """Train L2HMC dynamics on ``logdensity_fn`` (Algorithm 1; see the module docstring).

    Args:
        rng_key: PRNG key.
        logdensity_fn: log p up to a constant, on one position (a pytree of float arrays).
        dynamics: the dynamics to train (e.g. freshly built, near the HMC limit).
        initial_positions: the persistent chains, with a leading chain axis (the paper uses 200).
        num_steps: training iterations.
        optimizer: any ``optax.GradientTransformation``; default :func:`default_optimizer`
            (Adam, ``learning_rate`` decayed ×0.96 every 1000 steps, staircase).
        learning_rate: Adam's initial learning rate when ``optimizer`` is not given.
        loss_scale: λ² of the loss (scalar), or a per-coordinate λ² of shape ``(dim,)``.
        burn_in_weight: λ_b, the weight of the loss on fresh draws from ``initial_distribution``.
        initial_distribution: ``(rng_key, num) -> positions`` with a leading axis; default N(0, I).
        temperature_schedule: ``step -> T`` (e.g. :func:`exponential_annealing`); training then sees
            p^{1/T}. Default T = 1.
        max_grad_norm: clip gradients to this global norm (``optax.clip_by_global_norm``).
        warm_start: first tune ε and a preconditioner with the HMC limit and start training from
            exactly that tuned HMC (zero heads; :func:`~l2hmc_ppl.training.warm_start`). Turn it
            off for paper-faithful runs and to continue training already trained dynamics.
        dense_mass: dense (Cholesky) preconditioner in the warm start instead of a diagonal one.
        num_warm_start_steps: transitions of the warm start.
        target_acceptance_rate: the warm start's step-size target.
        chunk_size: most iterations per compiled chunk (the host is contacted once per chunk).
        progress_bar: show a tqdm bar with loss, acceptance and step size.
        max_consecutive_failures: stop with an error after this many skipped updates in a row
            (checked on the host between chunks; not applied when ``train`` itself is traced,
            e.g. vmapped over chains, where skipped updates still leave the weights finite).
        mesh: a 1-d ``jax.sharding.Mesh``; the chains are sharded over its devices.
        aux: conditioning input for dynamics built with ``aux_size`` (fixed during training).
        keep_best: at the end, compare the expected squared jump distance of the trained dynamics
            with that of the dynamics training started from (the tuned HMC after a warm start), on
            the final chains with the same randomness, and return the better one with a warning.
            A trained sampler is then never worse than its starting point by the training
            objective's own measure.

    Returns:
        ``(trained_dynamics, history)``.

    Example:
        >>> dynamics = L2HMCDynamics(2, key=jax.random.key(0))
        >>> positions = jax.random.normal(jax.random.key(1), (200, 2))
        >>> trained, history = train(jax.random.key(2), logdensity_fn, dynamics, positions, num_steps=5000)
    """
    if not (isinstance(num_steps, int) and num_steps >= 1):
        raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    num_chains = _batch_size(initial_positions)
    example_position = jax.tree_util.tree_map(lambda leaf: leaf[0], initial_positions)
    flat_example, unravel = ravel_pytree(example_position)
    if flat_example.shape[0] != dynamics.dim:
        raise ValueError(
            f"positions have {flat_example.shape[0]} coordinates, dynamics were built for dim={dynamics.dim}"
        )
    loss_scale = jnp.asarray(loss_scale, flat_example.dtype)
    if loss_scale.ndim not in (0, 1) or (loss_scale.ndim == 1 and loss_scale.shape != (dynamics.dim,)):
        raise ValueError(
            f"loss_scale must be a scalar or have shape ({dynamics.dim},), got {loss_scale.shape}"
        )
    if initial_distribution is None:

        def initial_distribution(key, num):
            flat = jax.random.normal(key, (num, dynamics.dim), flat_example.dtype)
            return jax.vmap(unravel)(flat)

    if temperature_schedule is None:
        temperature_schedule = lambda step: jnp.ones((), flat_example.dtype)  # noqa: E731
    optimizer = default_optimizer(learning_rate) if optimizer is None else optimizer
    if max_grad_norm is not None:
        optimizer = optax.chain(optax.clip_by_global_norm(max_grad_norm), optimizer)

    key_warm, key_train = jax.random.split(rng_key)
    states = jax.vmap(init, (0, None))(initial_positions, logdensity_fn)
    if mesh is not None:
        if len(mesh.axis_names) != 1:
            raise ValueError("mesh must be 1-d (one axis over which the chains are sharded)")
        if num_chains % mesh.size:
            raise ValueError(f"{num_chains} chains cannot be split evenly over {mesh.size} devices")
        # Shard the chains and let XLA propagate the layout (auto mode), whatever the mesh's axis
        # type: the computation is written per chain and vmapped, so no collective is spelled out.
        auto_mesh = jax.sharding.Mesh(mesh.devices, mesh.axis_names, axis_types=(jax.sharding.AxisType.Auto,))
        chain_sharding = jax.sharding.NamedSharding(auto_mesh, jax.sharding.PartitionSpec(mesh.axis_names[0]))
        states = jax.device_put(states, chain_sharding)
    warm_info = None
    if warm_start:
        dynamics, states, warm_info = run_warm_start(
            key_warm,
            logdensity_fn,
            dynamics,
            states,
            num_steps=num_warm_start_steps,
            dense_mass=dense_mass,
            target_acceptance_rate=target_acceptance_rate,
        )

    initial_dynamics = dynamics
    params, static = eqx.partition(dynamics, dynamics.trainable_filter())
    opt_state = optimizer.init(params)
    vmap_propose = jax.vmap(propose, (0, 0, None, None, None))
    flatten_batch = jax.vmap(lambda tree: ravel_pytree(tree)[0])

    def batch_losses(params, key, states, temperature, cut_samples):
        """Per-sample losses; ``cut_samples`` (or ``None``) marks samples whose gradient path is cut."""
        dynamics = eqx.combine(params, static)

        def tempered_logdensity(position):
            return logdensity_fn(position) / temperature

        def gated_propose(key, state, cut):
            # The parameters enter a cut sample through `where(cut, stop_gradient(θ), θ)`. Its VJP
            # is a select, so a NaN in that sample's backward pass never reaches θ's gradient.
            gated = jax.tree_util.tree_map(lambda p: jnp.where(cut, jax.lax.stop_gradient(p), p), params)
            return propose(key, state, tempered_logdensity, eqx.combine(gated, static), aux)

        def sample_losses(key, batch_states):
            keys = jax.random.split(key, num_chains)
            if cut_samples is None:
                proposals = vmap_propose(keys, batch_states, tempered_logdensity, dynamics, aux)
            else:
                proposals = jax.vmap(gated_propose)(keys, batch_states, cut_samples)
            losses = esjd_loss(
                flatten_batch(batch_states.position),
                flatten_batch(proposals.state.position),
                proposals.acceptance_probability,
                loss_scale,
            )
            return losses, proposals

        key_chains, key_draws, key_fresh = jax.random.split(key, 3)
        losses, proposals = sample_losses(key_chains, _tempered(states, temperature))
        if burn_in_weight:
            fresh_positions = initial_distribution(key_draws, num_chains)
            logdensity, grad = jax.vmap(jax.value_and_grad(tempered_logdensity))(fresh_positions)
            fresh = L2HMCState(fresh_positions, logdensity, grad)
            fresh_losses, _ = sample_losses(key_fresh, fresh)
            losses = losses + burn_in_weight * fresh_losses
        return losses, proposals

    def loss_and_grad(params, key, states, temperature, cut_samples):
        def mean_loss(params):
            losses, proposals = batch_losses(params, key, states, temperature, cut_samples)
            finite = jnp.isfinite(losses)
            # A non-finite proposal is a rejection (δA = 0) and enters the loss as such; only a
            # non-finite loss value (from a misbehaving target at the start point) is left out.
            usable = finite & jnp.isfinite(proposals.log_accept_ratio)
            return jnp.sum(jnp.where(finite, losses, 0.0)) / num_chains, (proposals, usable)

        return eqx.filter_value_and_grad(mean_loss, has_aux=True)(params)

    def tree_all_finite(tree):
        return jnp.all(jnp.array([jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)]))

    def train_step(carry, step):
        params, opt_state, states, consecutive_failures, key = carry
        key, key_step, key_accept = jax.random.split(key, 3)
        temperature = jnp.asarray(temperature_schedule(step), flat_example.dtype)
        (loss, (proposals, finite)), grads = loss_and_grad(params, key_step, states, temperature, None)
        all_finite = tree_all_finite(grads) & jnp.isfinite(loss)

        def with_bad_samples_cut(_):
            return loss_and_grad(params, key_step, states, temperature, ~finite)

        (loss, (_, finite)), grads = jax.lax.cond(
            all_finite, lambda _: ((loss, (proposals, finite)), grads), with_bad_samples_cut, None
        )
        usable = jnp.any(finite) & tree_all_finite(grads) & jnp.isfinite(loss)
        grads = jax.tree_util.tree_map(lambda g: jnp.where(usable, g, 0.0), grads)
        updates, new_opt_state = optimizer.update(grads, opt_state, params)
        new_params = eqx.apply_updates(params, updates)
        params, opt_state = jax.tree_util.tree_map(
            lambda new, old: jnp.where(usable, new, old), (new_params, new_opt_state), (params, opt_state)
        )

        # Move the persistent chains by MH with the pre-update proposals (stored untempered).
        log_uniform = jnp.log(jax.random.uniform(key_accept, (num_chains,), flat_example.dtype))
        accepted = log_uniform < proposals.log_accept_ratio
        proposed = L2HMCState(
            proposals.state.position,
            proposals.state.logdensity * temperature,
            jax.tree_util.tree_map(lambda g: g * temperature, proposals.state.logdensity_grad),
        )
        states = jax.tree_util.tree_map(
            lambda new, old: jnp.where(accepted.reshape(accepted.shape + (1,) * (new.ndim - 1)), new, old),
            proposed,
            states,
        )
        consecutive_failures = jnp.where(usable, 0, consecutive_failures + 1)
        record = dict(
            loss=loss,
            acceptance_rate=proposals.acceptance_probability.mean(),
            squared_jump_distance=(proposals.squared_jump_distance * proposals.acceptance_probability).mean(),
            step_size=jnp.exp(eqx.combine(params, static).log_step_size),
            temperature=temperature,
            skipped=~usable,
            num_nonfinite_samples=jnp.sum(~finite),
            most_consecutive_failures=consecutive_failures,
        )
        return (params, opt_state, states, consecutive_failures, key), record

    # Equal chunks of at most chunk_size iterations: the masked tail of the last one is < num_chunks.
    chunk = math.ceil(num_steps / math.ceil(num_steps / chunk_size))
    num_chunks = math.ceil(num_steps / chunk)

    @eqx.filter_jit
    def run_chunk(carry, first_step):
        def masked_step(carry, step):
            # Steps past num_steps (in the last chunk) leave the carry unchanged.
            new_carry, record = train_step(carry, step)
            active = step < num_steps
            carry = jax.tree_util.tree_map(lambda new, old: jnp.where(active, new, old), new_carry, carry)
            return carry, record

        return jax.lax.scan(masked_step, carry, first_step + jnp.arange(chunk))

    carry = (params, opt_state, states, jnp.zeros((), jnp.int32), key_train)
    records = []
    bar = tqdm(total=num_steps, desc="L2HMC training", disable=not progress_bar, leave=False)
    try:
        for index in range(num_chunks):
            carry, record = run_chunk(carry, jnp.asarray(index * chunk))
            records.append(record)
            done = min((index + 1) * chunk, num_steps)
            bar.update(done - index * chunk)
            if isinstance(record["loss"], jax.core.Tracer):
                continue  # traced (train called under jit/vmap/pmap): no host-side reporting or stop rule
            record = jax.device_get(record)
            last = done - index * chunk - 1
            bar.set_postfix(
                loss=f"{record['loss'][last]:.3g}",
                accept=f"{record['acceptance_rate'][last]:.2f}",
                step_size=f"{record['step_size'][last]:.3g}",
            )
            if int(record["most_consecutive_failures"].max()) > max_consecutive_failures:
                raise FloatingPointError(
                    f"L2HMC training stopped at step {done}: more than {max_consecutive_failures} "
                    "consecutive updates had no finite loss and gradient. Try a smaller initial "
                    "step size, a larger loss_scale (λ²), gradient clipping (max_grad_norm), a lower "
                    "learning rate, or initial positions inside the target's support."
                )
    finally:
        bar.close()

    params, _, states, _, key = carry
    trained = eqx.combine(params, static)
    history_arrays = {
        name: jnp.concatenate([r[name] for r in records])[:num_steps]
        for name in records[0]
        if name != "most_consecutive_failures"
    }
    final_esjd = initial_esjd = None
    if keep_best:
        # Same proposals' randomness for both, on the final chains (target at the final temperature).
        final_esjd, initial_esjd = (
            _mean_esjd(key, logdensity_fn, states, candidate, aux, temperature_schedule(num_steps))
            for candidate in (trained, initial_dynamics)
        )
        use_initial = initial_esjd > final_esjd
        # A `where` rather than a Python branch, so that `train` also works under jit/vmap/pmap.
        trained = jax.tree_util.tree_map(
            lambda new, old: jnp.where(use_initial, old, new), trained, initial_dynamics
        )
        if not isinstance(use_initial, jax.core.Tracer) and bool(use_initial):
            warnings.warn(
                f"the trained dynamics jump less (ESJD {float(final_esjd):.3g}) than the dynamics "
                f"training started from ({float(initial_esjd):.3g}); returning the starting dynamics. "
                "Train longer, lower the learning rate, or change loss_scale (λ²).",
                stacklevel=2,
            )
    history = TrainingHistory(
        **history_arrays,
        final_state=states,
        warm_start=warm_info,
        final_esjd=final_esjd,
        initial_esjd=initial_esjd,
    )
    return trained, history


@eqx.filter_jit
def _mean_esjd(rng_key, logdensity_fn, states, dynamics, aux, temperature, num_rounds=8):
    """Mean δ·A of ``num_rounds`` proposals from each chain: the expected squared jump distance."""
    num_chains = jax.tree_util.tree_leaves(states.position)[0].shape[0]

    def tempered_logdensity(position):
        return logdensity_fn(position) / temperature

    def one_round(key):
        keys = jax.random.split(key, num_chains)
        proposals = jax.vmap(propose, (0, 0, None, None, None))(
            keys, _tempered(states, temperature), tempered_logdensity, dynamics, aux
        )
        return jnp.mean(proposals.squared_jump_distance * proposals.acceptance_probability)

    return jnp.mean(jax.lax.map(one_round, jax.random.split(rng_key, num_rounds)))
