"""The samplers the benchmarks compare, each run on a batch of chains with its gradient counts and timings.

Every runner returns a `benchmarks._common.SamplerRun`: the draws in the layout
``(num_steps, num_chains, ...)`` of :mod:`l2hmc_ppl.diagnostics`, the mean number of gradient
evaluations per transition, and the wall, CPU and compile seconds of the adaptation (training,
warm-up) and of the sampling.

- L2HMC: `L2HMCConfig` (the dynamics, and every training option in one ``TrainConfig``),
  `train_l2hmc` and `run_l2hmc` (:func:`l2hmc_ppl.run_chains`; M gradients per transition).
- HMC with M leapfrog steps on a grid of ε (`run_hmc_grid`, BlackJAX ``hmc``, identity mass) and
  `pick_best`, which charges the other grid points to the chosen one's adaptation.
- NumPyro NUTS (`run_nuts`) on a log density or a NumPyro model, diagonal or dense mass-matrix
  adaptation; its gradient count is the tree size (``num_steps``).
- BlackJAX ChEES-HMC (`run_chees`): the trajectory length tuned on the chain ensemble, with its
  diagonal mass-matrix estimate; its gradient count is ``num_integration_steps``.

All transitions of a batch of chains run in the library's one vmapped scan,
:func:`l2hmc_ppl.run_chains` (BlackJAX's kernels through a thin adapter).

References:
    D. Levy, M. D. Hoffman, J. Sohl-Dickstein. *Generalizing Hamiltonian Monte Carlo with Neural
    Networks*. ICLR 2018, arXiv:1711.09268.
    M. D. Hoffman, A. Gelman. *The No-U-Turn Sampler*. JMLR 15, 2014.
    M. D. Hoffman, A. Radul, P. Sountsov. *An Adaptive-MCMC Scheme for Setting Trajectory Lengths
    in Hamiltonian Monte Carlo*. AISTATS 2021 (ChEES-HMC).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import blackjax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from blackjax.adaptation.base import get_filter_adapt_info_fn
from jaxtyping import Array, Float, PRNGKeyArray
from numpyro.infer import MCMC, NUTS

from benchmarks._common import SamplerRun, Stopwatch, Timing
from l2hmc_ppl import L2HMCDynamics, TrainConfig, TrainingHistory, init_chains, run_chains, train

__all__ = [
    "PAPER_TRAINING",
    "L2HMCConfig",
    "annealing_parameters",
    "build_dynamics",
    "hmc_kernel",
    "pick_best",
    "run_chees",
    "run_hmc_grid",
    "run_l2hmc",
    "run_nuts",
    "train_l2hmc",
]

# Compiled once per (log density, kernel, number of steps, structure of the chains).
_run_chains = eqx.filter_jit(run_chains)


def _to_numpy(samples) -> np.ndarray:
    return np.asarray(jax.device_get(samples), dtype=np.float32)


# --------------------------------------------------------------------------------------------------
# L2HMC

#: The paper's training (paper §4, appendix): 5000 iterations of the paper's loss with λ² = 0.1, Adam 10⁻³
#: decayed ×0.96 every 1000 steps, no warm start, and the trained sampler kept whatever it scores
#: (``keep_best=False``: report what training produced).
PAPER_TRAINING = TrainConfig(
    num_steps=5000,
    objective="paper",
    loss_scale=0.1,
    warm_start=False,
    keep_best=False,
    progress_bar=False,
)


@dataclasses.dataclass(frozen=True)
class L2HMCConfig:
    """How one L2HMC sampler is built and trained: the dynamics here, every training option in ``train``.

    Attributes:
        label: name of the configuration in the tables (e.g. ``"paper"`` or ``"tuned"``).
        train: the options of :func:`l2hmc_ppl.train` (the one place for them).
        num_leapfrog_steps: M.
        hidden_size: n_h, width of both networks.
        initial_step_size: ε before training (and before the warm start). The step-size jitter is
            0: the paper's fixed-ε kernel.
    """

    label: str
    train: TrainConfig = PAPER_TRAINING
    num_leapfrog_steps: int = 10
    hidden_size: int = 10
    initial_step_size: float = 0.1

    def replace_training(self, **changes: Any) -> L2HMCConfig:
        """A copy with some training options changed (checked by ``TrainConfig``)."""
        return dataclasses.replace(self, train=self.train.replace(**changes))

    def describe(self) -> str:
        """A one-line summary for the tables, e.g. ``M=10, n_h=10, 5000 steps, no warm start``."""
        train = self.train
        parts = [f"M={self.num_leapfrog_steps}", f"n_h={self.hidden_size}", f"{train.num_steps} steps"]
        if train.objective != "paper":
            parts.append(f"{train.objective} objective")
        if train.burn_in_weight:
            parts.append(f"λ_b={train.burn_in_weight:g}")
        annealing = annealing_parameters(train.temperature_schedule)
        if annealing is not None:
            initial, final, rate, every = annealing
            parts.append(f"T {initial:g}→{final:g} (×{rate:g}/{every})")
        elif train.temperature_schedule is not None:
            parts.append("tempered")
        if train.warm_start:
            kind = "dense" if train.dense_mass else "diag"
            parts.append(f"warm start ({kind}, {train.num_warm_start_steps})")
        else:
            parts.append("no warm start")
        return ", ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        """The configuration as a JSON-ready dict (the training options under ``"train"``)."""
        train = {f.name: getattr(self.train, f.name) for f in dataclasses.fields(self.train)}
        train["loss_scale"] = self.train.resolved_loss_scale
        annealing = annealing_parameters(self.train.temperature_schedule)
        for name in ("initial_distribution", "temperature_schedule", "optimizer"):
            train[name] = None if train[name] is None else repr(train[name])
        if annealing is not None:
            train["temperature_schedule"] = dict(zip(_ANNEALING_FIELDS, annealing, strict=True))
        return {
            "label": self.label,
            "num_leapfrog_steps": self.num_leapfrog_steps,
            "hidden_size": self.hidden_size,
            "initial_step_size": self.initial_step_size,
            "train": train,
        }


_ANNEALING_FIELDS = ("initial", "final", "decay_rate", "decay_steps")


def annealing_parameters(schedule: Callable | None) -> tuple[float, float, float, int] | None:
    """``(initial, final, decay_rate, decay_steps)`` of an :func:`l2hmc_ppl.exponential_annealing`.

    Args:
        schedule: a ``TrainConfig.temperature_schedule``.

    Returns:
        The parameters, or ``None`` for no schedule or another kind of schedule.
    """
    if schedule is None or not all(hasattr(schedule, name) for name in _ANNEALING_FIELDS):
        return None
    return tuple(getattr(schedule, name) for name in _ANNEALING_FIELDS)


def build_dynamics(rng_key: PRNGKeyArray, dim: int, config: L2HMCConfig) -> L2HMCDynamics:
    """Fresh (untrained, near the HMC limit) dynamics for ``config``.

    Args:
        rng_key: PRNG key of the weights and masks.
        dim: dimension of the target.
        config: M, n_h and the initial ε.

    Returns:
        The dynamics, with a fixed ε (no step-size jitter).
    """
    return L2HMCDynamics(
        dim,
        num_leapfrog_steps=config.num_leapfrog_steps,
        hidden_size=config.hidden_size,
        step_size=config.initial_step_size,
        key=rng_key,
    )


def train_l2hmc(
    rng_key: PRNGKeyArray,
    logdensity_fn: Callable,
    config: L2HMCConfig,
    initial_positions: Float[Array, "num_chains dim"],
) -> tuple[L2HMCDynamics, TrainingHistory, Timing]:
    """Build fresh dynamics for ``config`` and train them with :func:`l2hmc_ppl.train`.

    Args:
        rng_key: PRNG key.
        logdensity_fn: log p on one position.
        config: the dynamics and ``config.train``, the training options.
        initial_positions: the persistent training chains, shape ``(num_chains, dim)`` (the paper
            starts 200 of them from N(0, I)).

    Returns:
        ``(trained dynamics, training history, timing)``; the timing covers the whole ``train``
        call, compilation and warm start included.
    """
    key_dynamics, key_train = jax.random.split(rng_key)
    dynamics = build_dynamics(key_dynamics, initial_positions.shape[-1], config)
    with Stopwatch() as timing:
        trained, history = train(key_train, logdensity_fn, dynamics, initial_positions, config.train)
        jax.block_until_ready((trained, history.final_state))
    return trained, history, timing


def run_l2hmc(
    rng_key: PRNGKeyArray,
    logdensity_fn: Callable,
    dynamics: L2HMCDynamics,
    initial_positions: Float[Array, "num_chains dim"],
    num_steps: int,
) -> SamplerRun:
    """Run L2HMC with fixed dynamics on a batch of chains (M gradient evaluations per transition).

    Args:
        rng_key: PRNG key.
        logdensity_fn: log p on one position.
        dynamics: trained (or untrained) dynamics.
        initial_positions: chain starting points, shape ``(num_chains, dim)``.
        num_steps: transitions per chain.

    Returns:
        The draws and the sampling timing (``adaptation`` is zero: the caller adds the training).
    """
    with Stopwatch() as timing:
        states = init_chains(initial_positions, logdensity_fn)
        _, samples, infos = jax.block_until_ready(
            _run_chains(rng_key, logdensity_fn, dynamics, states, num_steps)
        )
    return SamplerRun(
        samples=_to_numpy(samples),
        gradients_per_step=float(dynamics.num_leapfrog_steps),
        adaptation=Timing(),
        sampling=timing,
        acceptance_rate=float(jnp.mean(infos.acceptance_rate)),
        details={"num_leapfrog_steps": dynamics.num_leapfrog_steps, "step_size": float(dynamics.step_size)},
    )


# --------------------------------------------------------------------------------------------------
# BlackJAX kernels in the library's scan over chains


class _Info(NamedTuple):
    """What the runners keep of a BlackJAX transition (its full info holds whole states)."""

    acceptance_rate: Array
    num_integration_steps: Array


def _as_chain_kernel(step: Callable) -> Callable:
    """``step(rng_key, state, logdensity_fn, params) -> (state, info)`` with the info cut to `_Info`."""

    def kernel(rng_key, state, logdensity_fn, params):
        state, info = step(rng_key, state, logdensity_fn, params)
        return state, _Info(info.acceptance_rate, info.num_integration_steps)

    return kernel


def _run_blackjax(rng_key, logdensity_fn, kernel, params, states, num_steps: int):
    """``(draws, acceptance, gradients per transition)`` of ``num_steps`` transitions, as NumPy arrays."""
    _, samples, infos = jax.block_until_ready(
        _run_chains(rng_key, logdensity_fn, params, states, num_steps, kernel=kernel)
    )
    return _to_numpy(samples), np.asarray(infos.acceptance_rate), np.asarray(infos.num_integration_steps)


# --------------------------------------------------------------------------------------------------
# HMC with a fixed ε and M


def hmc_kernel(num_leapfrog_steps: int) -> Callable:
    """BlackJAX's HMC as a kernel for :func:`l2hmc_ppl.run_chains` (its ``dynamics`` are ε and the mass).

    Args:
        num_leapfrog_steps: M.

    Returns:
        ``kernel(rng_key, state, logdensity_fn, (step_size, inverse_mass_matrix)) -> (state, info)``
        on ``blackjax.hmc.init`` states; the info keeps ``acceptance_rate`` and
        ``num_integration_steps``. ε is an argument, so one compilation serves any ε.
    """
    base = blackjax.hmc.build_kernel()

    def hmc_step(rng_key, state, logdensity_fn, params):
        step_size, inverse_mass_matrix = params
        return base(rng_key, state, logdensity_fn, step_size, inverse_mass_matrix, num_leapfrog_steps)

    return _as_chain_kernel(hmc_step)


def run_hmc_grid(
    rng_key: PRNGKeyArray,
    logdensity_fn: Callable,
    initial_positions: Float[Array, "num_chains dim"],
    num_steps: int,
    *,
    num_leapfrog_steps: int,
    step_sizes: Sequence[float],
) -> list[SamplerRun]:
    """HMC (identity mass, M leapfrog steps) for every ε of a grid, on the same chains and key.

    ε is traced, so one compilation serves the whole grid.

    Args:
        rng_key: PRNG key (the same for every ε).
        logdensity_fn: log p on one position.
        initial_positions: chain starting points, shape ``(num_chains, dim)``.
        num_steps: transitions per chain.
        num_leapfrog_steps: M.
        step_sizes: the ε grid.

    Returns:
        One run per ε, in the order of ``step_sizes`` (choose one with `pick_best`).
    """
    kernel = hmc_kernel(num_leapfrog_steps)
    dtype = initial_positions.dtype
    inverse_mass_matrix = jnp.ones(initial_positions.shape[-1], dtype)
    runs = []
    for step_size in step_sizes:
        with Stopwatch() as timing:
            states = jax.vmap(blackjax.hmc.init, (0, None))(initial_positions, logdensity_fn)
            params = (jnp.asarray(step_size, dtype), inverse_mass_matrix)
            samples, acceptance, _ = _run_blackjax(rng_key, logdensity_fn, kernel, params, states, num_steps)
        runs.append(
            SamplerRun(
                samples=samples,
                gradients_per_step=float(num_leapfrog_steps),
                adaptation=Timing(),
                sampling=timing,
                acceptance_rate=float(acceptance.mean()),
                details={"num_leapfrog_steps": num_leapfrog_steps, "step_size": float(step_size)},
            )
        )
    return runs


def pick_best(runs: Sequence[SamplerRun], scores: Sequence[float]) -> tuple[int, SamplerRun]:
    """The run of a grid with the highest finite score, charged with the cost of the others.

    The grid search is the tuning of the chosen run: the sampling time and gradients of every other
    run become its adaptation time and gradients.

    Args:
        runs: the runs of a grid (e.g. `run_hmc_grid`).
        scores: one score per run (higher is better; NaN never wins).

    Returns:
        ``(index, run)`` of the best run, with ``adaptation`` and ``adaptation_gradients`` set.
    """
    values = [score if np.isfinite(score) else -np.inf for score in scores]
    best = int(np.argmax(values))
    chosen = runs[best]
    others = [run for index, run in enumerate(runs) if index != best]
    adaptation, gradients = Timing(), 0.0
    for run in others:
        adaptation = adaptation + run.sampling
        gradients += run.gradients_per_step * _num_draws(run.samples)
    return best, dataclasses.replace(chosen, adaptation=adaptation, adaptation_gradients=gradients)


def _num_draws(samples) -> int:
    """Transitions × chains of a run's draws (an array or a dict of sites)."""
    leaf = jax.tree_util.tree_leaves(samples)[0]
    return int(leaf.shape[0] * leaf.shape[1])


# --------------------------------------------------------------------------------------------------
# NumPyro NUTS


def run_nuts(
    rng_key: PRNGKeyArray,
    num_steps: int,
    *,
    logdensity_fn: Callable | None = None,
    initial_positions: Float[Array, "num_chains dim"] | None = None,
    model: Callable | None = None,
    model_args: tuple = (),
    model_kwargs: dict[str, Any] | None = None,
    num_chains: int | None = None,
    dense_mass: bool = False,
    num_warmup: int = 1000,
    max_tree_depth: int = 10,
    target_accept_prob: float = 0.8,
    chain_method: str = "vectorized",
) -> SamplerRun:
    """NumPyro NUTS with step-size and diagonal or dense mass-matrix adaptation, on a density or a model.

    Each chain adapts on its own (Stan's windowed warm-up). The gradient count per transition is
    NUTS's ``num_steps`` (the leapfrog steps of the tree), averaged over transitions and chains; the
    warm-up's tree sizes are summed into ``adaptation_gradients``.

    Args:
        rng_key: PRNG key.
        num_steps: measured transitions per chain (after warm-up).
        logdensity_fn: log p on a flat position (give this or ``model``).
        initial_positions: chain starting points ``(num_chains, dim)``; required with
            ``logdensity_fn``; with a model, unconstrained values (optional: NumPyro's
            initialisation otherwise).
        model: a NumPyro model (give this or ``logdensity_fn``).
        model_args: positional arguments of the model.
        model_kwargs: keyword arguments of the model.
        num_chains: chains; default the number of ``initial_positions``.
        dense_mass: adapt a dense mass matrix instead of a diagonal one.
        num_warmup: warm-up iterations.
        max_tree_depth: NumPyro's default, 10 (at most 1023 leapfrog steps per transition).
        target_accept_prob: the step-size adaptation's target.
        chain_method: ``"vectorized"`` (all chains at once), ``"sequential"`` or ``"parallel"``.

    Returns:
        The draws (an array for a log density; for a model, its constrained sites), the warm-up
        timing as ``adaptation`` and the sampling timing.
    """
    if (logdensity_fn is None) == (model is None):
        raise ValueError("give exactly one of logdensity_fn and model")
    if logdensity_fn is not None and initial_positions is None:
        raise ValueError("a log density needs initial_positions")
    if num_chains is None:
        if initial_positions is None:
            raise ValueError("give num_chains or initial_positions")
        num_chains = jax.tree_util.tree_leaves(initial_positions)[0].shape[0]
    model_kwargs = {} if model_kwargs is None else model_kwargs
    options = dict(
        dense_mass=dense_mass, max_tree_depth=max_tree_depth, target_accept_prob=target_accept_prob
    )
    if model is not None:
        kernel = NUTS(model, **options)
    else:
        kernel = NUTS(potential_fn=lambda position: -logdensity_fn(position), **options)
    mcmc = MCMC(
        kernel,
        num_warmup=num_warmup,
        num_samples=num_steps,
        num_chains=num_chains,
        chain_method=chain_method,
        progress_bar=False,
    )
    key_warmup, key_sample = jax.random.split(rng_key)
    with Stopwatch() as warmup_timing:
        mcmc.warmup(
            key_warmup,
            *model_args,
            init_params=initial_positions,
            collect_warmup=True,
            extra_fields=("num_steps",),
            **model_kwargs,
        )
        jax.block_until_ready(mcmc.post_warmup_state)
    warmup_gradients = float(np.sum(np.asarray(mcmc.get_extra_fields()["num_steps"], np.float64)))
    with Stopwatch() as sampling_timing:
        mcmc.run(
            key_sample, *model_args, extra_fields=("num_steps", "accept_prob", "diverging"), **model_kwargs
        )
        samples = jax.block_until_ready(mcmc.get_samples(group_by_chain=True))
    extra = mcmc.get_extra_fields(group_by_chain=True)
    num_gradients = np.asarray(extra["num_steps"], dtype=np.float64)  # (chains, steps)
    step_sizes = np.asarray(mcmc.last_state.adapt_state.step_size)
    samples = jax.tree_util.tree_map(lambda x: _to_numpy(jnp.swapaxes(x, 0, 1)), samples)
    return SamplerRun(
        samples=samples,
        gradients_per_step=float(num_gradients.mean()),
        adaptation=warmup_timing,
        sampling=sampling_timing,
        acceptance_rate=float(np.mean(extra["accept_prob"])),
        adaptation_gradients=warmup_gradients,
        details={
            "dense_mass": dense_mass,
            "num_warmup": num_warmup,
            "total_gradients": float(num_gradients.sum()),
            "max_gradients_per_step": int(num_gradients.max()),
            "median_step_size": float(np.median(step_sizes)),
            "num_divergent": int(np.sum(np.asarray(extra["diverging"]))),
        },
    )


# --------------------------------------------------------------------------------------------------
# BlackJAX ChEES-HMC


def run_chees(
    rng_key: PRNGKeyArray,
    logdensity_fn: Callable,
    initial_positions: Float[Array, "num_chains dim"],
    num_steps: int,
    *,
    num_warmup: int,
    learning_rate: float = 0.025,
    initial_step_size: float = 0.1,
) -> SamplerRun:
    """BlackJAX ChEES-HMC: ε by dual averaging and the trajectory length by the ChEES criterion.

    The adaptation runs on the whole ensemble of chains (started from ``initial_positions``), with
    BlackJAX's ensemble estimate of a diagonal mass matrix; sampling then uses
    ``blackjax.dynamic_hmc`` with the adapted, Halton-jittered number of leapfrog steps.

    Args:
        rng_key: PRNG key.
        logdensity_fn: log p on one position.
        initial_positions: chain starting points, shape ``(num_chains, dim)``.
        num_steps: measured transitions per chain (after adaptation).
        num_warmup: adaptation transitions.
        learning_rate: Adam's learning rate for the log trajectory length (0.025 as in TFP).
        initial_step_size: ε at the start of the adaptation.

    Returns:
        The draws, the adaptation timing and gradients, and the sampling timing.
    """
    num_chains = initial_positions.shape[0]
    warmup = blackjax.chees_adaptation(
        logdensity_fn,
        num_chains,
        mass_matrix_estimation="diagonal",
        adaptation_info_fn=get_filter_adapt_info_fn(info_keys={"num_integration_steps"}),
    )
    key_warmup, key_sample = jax.random.split(rng_key)
    with Stopwatch() as warmup_timing:
        (states, parameters), warmup_info = warmup.run(
            key_warmup,
            initial_positions,
            initial_step_size,
            optax.adam(learning_rate),
            num_warmup,
            max_sampling_steps=num_steps,
        )
        jax.block_until_ready(states)
    warmup_gradients = float(np.sum(np.asarray(warmup_info.info.num_integration_steps, np.float64)))
    algorithm = blackjax.dynamic_hmc(logdensity_fn, **parameters)
    kernel = _as_chain_kernel(lambda rng_key, state, logdensity_fn, params: algorithm.step(rng_key, state))
    with Stopwatch() as sampling_timing:
        samples, acceptance, num_integration_steps = _run_blackjax(
            key_sample, logdensity_fn, kernel, None, states, num_steps
        )
    num_integration_steps = num_integration_steps.astype(np.float64)
    return SamplerRun(
        samples=samples,
        gradients_per_step=float(num_integration_steps.mean()),
        adaptation=warmup_timing,
        sampling=sampling_timing,
        acceptance_rate=float(np.mean(acceptance)),
        adaptation_gradients=warmup_gradients,
        details={
            "num_warmup": num_warmup,
            "step_size": float(parameters["step_size"]),
            "mean_num_leapfrog_steps": float(parameters["integration_steps_params"][0]),
            "max_gradients_per_step": int(num_integration_steps.max()),
        },
    )
