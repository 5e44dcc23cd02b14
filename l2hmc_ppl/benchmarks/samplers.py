"""The samplers of the benchmark: L2HMC (trained here) and the baselines, all on the same chains.

Every sampler is run with the paper's protocol (SPEC §7): ``num_chains`` chains started from exact
draws of the target, ``num_steps`` measured transitions. Each returns a `SamplerRun` with the
draws in the layout ``(num_steps, num_chains, dim)`` of :mod:`l2hmc_ppl.diagnostics`, the mean
number of gradient evaluations per transition, and wall-clock timings of the adaptation (training,
warm-up) and of the sampling, each with the share spent compiling.

- L2HMC: :func:`l2hmc_ppl.train`, then :func:`l2hmc_ppl.build_kernel` under ``vmap`` and ``scan``
  (M gradient evaluations per transition).
- HMC with M leapfrog steps and a given ε (BlackJAX ``hmc``, identity mass; M gradients).
- NumPyro NUTS with diagonal or dense mass-matrix adaptation, ``chain_method="vectorized"``; its
  gradient count is the sum of the leapfrog steps of each tree (``num_steps``).
- BlackJAX ChEES-HMC (jittered trajectory length tuned on the chain ensemble, with its diagonal
  mass-matrix estimate); its gradient count is ``num_integration_steps`` of each transition.

References:
    D. Levy, M. D. Hoffman, J. Sohl-Dickstein. *Generalizing Hamiltonian Monte Carlo with Neural
    Networks*. ICLR 2018, arXiv:1711.09268.
    M. D. Hoffman, A. Gelman. *The No-U-Turn Sampler*. JMLR 15, 2014.
    M. D. Hoffman, A. Radul, P. Sountsov. *An Adaptive-MCMC Scheme for Setting Trajectory Lengths
    in Hamiltonian Monte Carlo*. AISTATS 2021 (ChEES-HMC).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import blackjax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from blackjax.adaptation.base import get_filter_adapt_info_fn
from jaxtyping import Array, Float, PRNGKeyArray
from numpyro.infer import MCMC, NUTS

from l2hmc_ppl.benchmarks.config import L2HMCConfig
from l2hmc_ppl.core.kernel import build_kernel, init
from l2hmc_ppl.dynamics.dynamics import L2HMCDynamics
from l2hmc_ppl.targets import Target
from l2hmc_ppl.training.train import TrainingHistory, default_optimizer, exponential_annealing, train

__all__ = [
    "SamplerRun",
    "Stopwatch",
    "Timing",
    "build_l2hmc",
    "sample_chees",
    "sample_hmc",
    "sample_l2hmc",
    "sample_nuts",
    "train_l2hmc",
]

# --------------------------------------------------------------------------------------------------
# Timing, with the time JAX spends tracing, lowering and compiling

_COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)
_compile_seconds = 0.0
_listener_lock = threading.Lock()
_listener_registered = False


def _on_event_duration(event: str, duration: float, **_: Any) -> None:
    global _compile_seconds
    if event in _COMPILE_EVENTS:
        _compile_seconds += duration


def _ensure_listener() -> None:
    global _listener_registered
    with _listener_lock:
        if not _listener_registered:
            jax.monitoring.register_event_duration_secs_listener(_on_event_duration)
            _listener_registered = True


@dataclass
class Timing:
    """Wall-clock and process CPU seconds of a phase, and the part of the wall time spent compiling.

    Attributes:
        wall: elapsed seconds.
        cpu: CPU seconds of this process (all threads; exceeds ``wall`` when JAX uses both cores).
        compile: seconds JAX spent tracing, lowering and compiling (XLA) during the phase.
    """

    wall: float = 0.0
    cpu: float = 0.0
    compile: float = 0.0

    @property
    def run(self) -> float:
        """Wall seconds not spent compiling."""
        return max(0.0, self.wall - self.compile)

    def __add__(self, other: Timing) -> Timing:
        return Timing(self.wall + other.wall, self.cpu + other.cpu, self.compile + other.compile)

    def as_dict(self) -> dict[str, float]:
        """The timings as a JSON-ready dict (seconds)."""
        return {"wall": self.wall, "cpu": self.cpu, "compile": self.compile, "run": self.run}


class Stopwatch:
    """Context manager that fills a `Timing` (wall, CPU and compile seconds).

    Example:
        >>> with Stopwatch() as timing:
        ...     jax.block_until_ready(f(x))
        >>> timing.wall, timing.compile
    """

    def __init__(self):
        _ensure_listener()
        self.timing = Timing()

    def __enter__(self) -> Timing:
        self._wall = time.perf_counter()
        self._cpu = time.process_time()
        self._compile = _compile_seconds
        return self.timing

    def __exit__(self, *exc) -> None:
        self.timing.wall = time.perf_counter() - self._wall
        self.timing.cpu = time.process_time() - self._cpu
        self.timing.compile = _compile_seconds - self._compile


# --------------------------------------------------------------------------------------------------
# Results


@dataclass
class SamplerRun:
    """The output of one sampler on one target.

    Attributes:
        samples: draws of shape ``(num_steps, num_chains, dim)`` (float32 NumPy).
        gradients_per_step: mean gradient evaluations of log p per transition and chain.
        adaptation: timing of training / warm-up / adaptation (zero when there is none).
        sampling: timing of the measured transitions.
        acceptance_rate: mean acceptance probability (or NUTS's mean ``accept_prob``).
        details: sampler-specific facts (adapted step size, M, mass matrix kind, ...).
    """

    samples: np.ndarray
    gradients_per_step: float
    adaptation: Timing
    sampling: Timing
    acceptance_rate: float
    details: dict[str, Any] = field(default_factory=dict)


def _to_numpy(samples) -> np.ndarray:
    return np.asarray(jax.device_get(samples), dtype=np.float32)


# --------------------------------------------------------------------------------------------------
# L2HMC


def build_l2hmc(rng_key: PRNGKeyArray, dim: int, config: L2HMCConfig) -> L2HMCDynamics:
    """Fresh (untrained, near the HMC limit) dynamics for ``config``."""
    return L2HMCDynamics(
        dim,
        num_leapfrog_steps=config.num_leapfrog_steps,
        hidden_size=config.hidden_size,
        step_size=config.initial_step_size,
        key=rng_key,
    )


def train_l2hmc(
    rng_key: PRNGKeyArray, target: Target, config: L2HMCConfig, num_chains: int
) -> tuple[L2HMCDynamics, TrainingHistory, Timing]:
    """Train L2HMC on ``target`` with ``config`` (Algorithm 1, chains started from N(0, I)).

    Args:
        rng_key: PRNG key.
        target: the target.
        config: network size, M, loss and schedule settings, warm start.
        num_chains: persistent training chains (200 in the paper).

    Returns:
        ``(trained dynamics, training history, timing)``; the timing covers the whole
        :func:`l2hmc_ppl.train` call, compilation and warm start included. The trained dynamics
        are returned even where training lowered the ESJD (``keep_best=False``).
    """
    key_dynamics, key_positions, key_train = jax.random.split(rng_key, 3)
    dynamics = build_l2hmc(key_dynamics, target.dim, config)
    initial_positions = jax.random.normal(key_positions, (num_chains, target.dim))
    schedule = None
    if config.annealing is not None:
        initial, rate, every = config.annealing
        schedule = exponential_annealing(initial, 1.0, rate, every)
    with Stopwatch() as timing:
        trained, history = train(
            key_train,
            target.logdensity_fn,
            dynamics,
            initial_positions,
            num_steps=config.num_train_steps,
            optimizer=default_optimizer(config.learning_rate),
            loss_scale=config.loss_scale,
            burn_in_weight=config.burn_in_weight,
            temperature_schedule=schedule,
            warm_start=config.warm_start,
            dense_mass=config.dense_mass,
            num_warm_start_steps=config.num_warm_start_steps,
            keep_best=False,  # report what training produced; "hmc_warm" is the untrained sampler
            progress_bar=False,
        )
        jax.block_until_ready((trained, history.loss))
    return trained, history, timing


def sample_l2hmc(
    rng_key: PRNGKeyArray,
    target: Target,
    dynamics: L2HMCDynamics,
    initial_positions: Float[Array, "num_chains dim"],
    num_steps: int,
) -> SamplerRun:
    """Run L2HMC with fixed dynamics on a batch of chains (M gradient evaluations per step).

    Args:
        rng_key: PRNG key.
        target: the target.
        dynamics: trained (or untrained) dynamics.
        initial_positions: chain starting points, shape ``(num_chains, dim)``.
        num_steps: transitions per chain.

    Returns:
        The draws and timings (``adaptation`` is zero: pass the training time separately).
    """
    kernel = build_kernel()
    num_chains = initial_positions.shape[0]

    @eqx.filter_jit
    def run(key, positions, dynamics):
        states = jax.vmap(init, (0, None))(positions, target.logdensity_fn)

        def one_step(states, key):
            keys = jax.random.split(key, num_chains)
            states, info = jax.vmap(kernel, (0, 0, None, None))(keys, states, target.logdensity_fn, dynamics)
            return states, (states.position, info.acceptance_rate.mean())

        _, (positions, acceptance) = jax.lax.scan(one_step, states, jax.random.split(key, num_steps))
        return positions, acceptance.mean()

    with Stopwatch() as timing:
        samples, acceptance = jax.block_until_ready(run(rng_key, initial_positions, dynamics))
    return SamplerRun(
        samples=_to_numpy(samples),
        gradients_per_step=float(dynamics.num_leapfrog_steps),
        adaptation=Timing(),
        sampling=timing,
        acceptance_rate=float(acceptance),
        details={
            "num_leapfrog_steps": dynamics.num_leapfrog_steps,
            "step_size": float(dynamics.step_size),
        },
    )


# --------------------------------------------------------------------------------------------------
# HMC with a fixed ε and M


def _hmc_runner(logdensity_fn: Callable, num_leapfrog_steps: int, num_steps: int):
    """A jitted ``run(key, positions, step_size)``: ε is traced, so one compilation serves a grid."""
    kernel = blackjax.hmc.build_kernel()

    @jax.jit
    def run(key, positions, step_size):
        num_chains, dim = positions.shape
        states = jax.vmap(blackjax.hmc.init, (0, None))(positions, logdensity_fn)
        inverse_mass_matrix = jnp.ones(dim, positions.dtype)

        def one_step(states, key):
            keys = jax.random.split(key, num_chains)
            states, info = jax.vmap(kernel, (0, 0, None, None, None, None))(
                keys, states, logdensity_fn, step_size, inverse_mass_matrix, num_leapfrog_steps
            )
            return states, (states.position, info.acceptance_rate.mean())

        _, (positions, acceptance) = jax.lax.scan(one_step, states, jax.random.split(key, num_steps))
        return positions, acceptance.mean()

    return run


def sample_hmc(
    rng_key: PRNGKeyArray,
    target: Target,
    initial_positions: Float[Array, "num_chains dim"],
    num_steps: int,
    *,
    num_leapfrog_steps: int,
    step_sizes: tuple[float, ...],
) -> list[SamplerRun]:
    """HMC (identity mass, M leapfrog steps) for every ε of a grid, on the same chains and key.

    Args:
        rng_key: PRNG key (the same for every ε).
        target: the target.
        initial_positions: chain starting points, shape ``(num_chains, dim)``.
        num_steps: transitions per chain.
        num_leapfrog_steps: M.
        step_sizes: the ε grid.

    Returns:
        One `SamplerRun` per ε, in the order of ``step_sizes``.
    """
    run = _hmc_runner(target.logdensity_fn, num_leapfrog_steps, num_steps)
    results = []
    for step_size in step_sizes:
        with Stopwatch() as timing:
            samples, acceptance = jax.block_until_ready(
                run(rng_key, initial_positions, jnp.asarray(step_size, initial_positions.dtype))
            )
        results.append(
            SamplerRun(
                samples=_to_numpy(samples),
                gradients_per_step=float(num_leapfrog_steps),
                adaptation=Timing(),
                sampling=timing,
                acceptance_rate=float(acceptance),
                details={"num_leapfrog_steps": num_leapfrog_steps, "step_size": float(step_size)},
            )
        )
    return results


# --------------------------------------------------------------------------------------------------
# NumPyro NUTS


def sample_nuts(
    rng_key: PRNGKeyArray,
    target: Target,
    initial_positions: Float[Array, "num_chains dim"],
    num_steps: int,
    *,
    dense_mass: bool,
    num_warmup: int,
    max_tree_depth: int = 10,
) -> SamplerRun:
    """NumPyro NUTS with step-size and (diagonal or dense) mass-matrix adaptation.

    All chains run at once (``chain_method="vectorized"``), each with its own adaptation, started
    from ``initial_positions``. The gradient count per transition is NUTS's ``num_steps`` (the
    leapfrog steps of the tree), averaged over the measured transitions and chains.

    Args:
        rng_key: PRNG key.
        target: the target.
        initial_positions: chain starting points, shape ``(num_chains, dim)``.
        num_steps: measured transitions per chain (after warm-up).
        dense_mass: adapt a dense mass matrix instead of a diagonal one.
        num_warmup: warm-up iterations (Stan's windowed adaptation).
        max_tree_depth: NumPyro's default, 10 (at most 1023 leapfrog steps per transition).

    Returns:
        The draws, the warm-up timing as ``adaptation`` and the sampling timing.
    """

    def potential_fn(position):
        return -target.logdensity_fn(position)

    num_chains = initial_positions.shape[0]
    kernel = NUTS(potential_fn=potential_fn, dense_mass=dense_mass, max_tree_depth=max_tree_depth)
    mcmc = MCMC(
        kernel,
        num_warmup=num_warmup,
        num_samples=num_steps,
        num_chains=num_chains,
        chain_method="vectorized",
        progress_bar=False,
    )
    key_warmup, key_sample = jax.random.split(rng_key)
    with Stopwatch() as warmup_timing:
        mcmc.warmup(key_warmup, init_params=initial_positions, extra_fields=("num_steps",))
        jax.block_until_ready(mcmc.post_warmup_state)
    with Stopwatch() as sampling_timing:
        mcmc.run(key_sample, extra_fields=("num_steps", "accept_prob"))
        samples = jax.block_until_ready(mcmc.get_samples(group_by_chain=True))
    extra = mcmc.get_extra_fields(group_by_chain=True)
    num_gradients = np.asarray(extra["num_steps"], dtype=np.float64)  # (chains, steps)
    step_sizes = np.asarray(mcmc.last_state.adapt_state.step_size)
    return SamplerRun(
        samples=_to_numpy(jnp.swapaxes(samples, 0, 1)),
        gradients_per_step=float(num_gradients.mean()),
        adaptation=warmup_timing,
        sampling=sampling_timing,
        acceptance_rate=float(np.mean(extra["accept_prob"])),
        details={
            "dense_mass": dense_mass,
            "num_warmup": num_warmup,
            "total_gradients": float(num_gradients.sum()),
            "max_gradients_per_step": int(num_gradients.max()),
            "median_step_size": float(np.median(step_sizes)),
            "num_divergent": int(np.sum(np.asarray(mcmc.get_extra_fields()["diverging"]))),
        },
    )


# --------------------------------------------------------------------------------------------------
# BlackJAX ChEES-HMC


def sample_chees(
    rng_key: PRNGKeyArray,
    target: Target,
    initial_positions: Float[Array, "num_chains dim"],
    num_steps: int,
    *,
    num_warmup: int,
    learning_rate: float = 0.025,
    initial_step_size: float = 0.1,
) -> SamplerRun:
    """BlackJAX ChEES-HMC: ε by dual averaging and the trajectory length by the ChEES criterion.

    The adaptation runs on the whole ensemble of chains (started from ``initial_positions``),
    with BlackJAX's ensemble estimate of a diagonal mass matrix; sampling then uses
    ``blackjax.dynamic_hmc`` with the adapted, Halton-jittered number of leapfrog steps.

    Args:
        rng_key: PRNG key.
        target: the target.
        initial_positions: chain starting points, shape ``(num_chains, dim)``.
        num_steps: measured transitions per chain (after adaptation).
        num_warmup: adaptation transitions.
        learning_rate: Adam's learning rate for the log trajectory length (0.025 as in TFP).
        initial_step_size: ε at the start of the adaptation.

    Returns:
        The draws, the adaptation timing and the sampling timing.
    """
    num_chains = initial_positions.shape[0]
    warmup = blackjax.chees_adaptation(
        target.logdensity_fn,
        num_chains,
        mass_matrix_estimation="diagonal",
        adaptation_info_fn=get_filter_adapt_info_fn(),
    )
    key_warmup, key_sample = jax.random.split(rng_key)
    with Stopwatch() as warmup_timing:
        (states, parameters), _ = warmup.run(
            key_warmup,
            initial_positions,
            initial_step_size,
            optax.adam(learning_rate),
            num_warmup,
            max_sampling_steps=num_steps,
        )
        jax.block_until_ready(states)
    algorithm = blackjax.dynamic_hmc(target.logdensity_fn, **parameters)

    @jax.jit
    def run(key, states):
        def one_step(states, key):
            keys = jax.random.split(key, num_chains)
            states, info = jax.vmap(algorithm.step)(keys, states)
            return states, (states.position, info.acceptance_rate.mean(), info.num_integration_steps)

        _, outputs = jax.lax.scan(one_step, states, jax.random.split(key, num_steps))
        return outputs

    with Stopwatch() as sampling_timing:
        samples, acceptance, num_integration_steps = jax.block_until_ready(run(key_sample, states))
    num_integration_steps = np.asarray(num_integration_steps, dtype=np.float64)
    return SamplerRun(
        samples=_to_numpy(samples),
        gradients_per_step=float(num_integration_steps.mean()),
        adaptation=warmup_timing,
        sampling=sampling_timing,
        acceptance_rate=float(np.mean(acceptance)),
        details={
            "num_warmup": num_warmup,
            "step_size": float(parameters["step_size"]),
            "mean_num_leapfrog_steps": float(parameters["integration_steps_params"][0]),
            "max_gradients_per_step": int(num_integration_steps.max()),
        },
    )
