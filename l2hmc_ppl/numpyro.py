"""NumPyro adapter: ``MCMC(L2HMCKernel(model), ...)`` as a drop-in replacement for ``NUTS(model)``.

The kernel is a `numpyro.infer.mcmc.MCMCKernel`. NumPyro's own machinery turns the model into a
potential U(z) on the unconstrained space (``initialize_model``), maps the draws back to the
constrained space and adds deterministic sites (``postprocess_fn``); the adapter converts the
potential once, ``logdensity_fn(z) = −U(z)``, and runs the pure-JAX L2HMC kernel
([`build_kernel`][l2hmc_ppl.build_kernel]) on it.

Warmup and sampling:

1. ``init`` trains, once per model data and number of warm-up steps: it builds the dynamics for
   the dimension of the unconstrained space, draws ``num_particles`` particles (the chains' initial
   points and ``init_strategy`` draws), and runs [`train`][l2hmc_ppl.train] on them: the warm start
   (burn-in, step-size, preconditioner and trajectory-length adaptation of the HMC limit), then
   Algorithm 1 of the paper for ``num_training_steps`` iterations (default: ``num_warmup``), then
   the selection between the trained sampler and the tuned HMC. Every chain samples with the
   result, starting from its own trained particle (the particles farthest apart first). Later runs
   of the same kernel on the same data reuse the trained sampler; build a new kernel to train again.
2. The chains start burned in (the particles have been moving under MH through the warm start and
   training), so NumPyro's ``num_warmup`` iterations leave them where they are and cost nothing;
   the ``num_samples`` iterations then draw with the trained, frozen dynamics. One exception: with
   ``potential_fn`` and ``chain_method="sequential"`` only the first chain's ``init_params`` are
   known when training runs, so the particles lie around it alone; every later chain starts at its
   own ``init_params`` and burns in from there with the trained sampler (as in 3), so that chains
   started in different regions can disagree and R̂ can say so.
3. With ``dynamics=`` given there is no training: the ``num_warmup`` iterations burn each chain in
   from its initial point, the first half with the HMC limit of the dynamics, the second half with
   the dynamics themselves.

The dynamics live in the chain state ([`L2HMCKernelState`][l2hmc_ppl.numpyro.L2HMCKernelState]),
never in a closure, so every chain method of NumPyro works: ``"sequential"`` and ``"vectorized"``
chains share one training, done on the host (with progress bars, compiled once); ``"parallel"``
chains call ``init`` under ``pmap``, so each device trains its own chain's sampler (no progress bar,
and M stays at its default there, since a traced training cannot choose it).
[`get_dynamics`][l2hmc_ppl.numpyro.get_dynamics] returns a chain's dynamics after a run.

References:
    D. Levy, M. D. Hoffman, J. Sohl-Dickstein. *Generalizing Hamiltonian Monte Carlo with Neural
    Networks*. ICLR 2018, arXiv:1711.09268.
    D. Phan, N. Pradhan, M. Jankowiak. *Composable Effects for Flexible and Accelerated Probabilistic
    Programming in NumPyro*. arXiv:1912.11554, 2019.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from blackjax.adaptation.step_size import DualAveragingAdaptationState, dual_averaging_adaptation
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray
from optax.tree_utils import tree_where

try:
    import numpyro  # noqa: F401
except ImportError as error:  # pragma: no cover - exercised in a subprocess
    raise ImportError("l2hmc_ppl.numpyro needs NumPyro: pip install l2hmc_ppl[numpyro]") from error
from numpyro import handlers
from numpyro.infer.initialization import init_to_uniform
from numpyro.infer.mcmc import MCMC, MCMCKernel
from numpyro.infer.util import ParamInfo, initialize_model
from numpyro.util import identity, is_prng_key

from l2hmc_ppl._checks import check_dynamics, check_nonnegative_int, check_positive_float, check_positive_int
from l2hmc_ppl.core.chains import init_chains
from l2hmc_ppl.core.kernel import Integrator, L2HMCState, build_kernel
from l2hmc_ppl.core.kernel import init as init_chain_state
from l2hmc_ppl.core.leapfrog import learned_leapfrog
from l2hmc_ppl.dynamics.dynamics import L2HMCDynamics, check_dynamics_options, default_dynamics
from l2hmc_ppl.training.config import TrainConfig
from l2hmc_ppl.training.train import train
from l2hmc_ppl.training.warm_start import as_dtype

__all__ = ["L2HMCKernel", "L2HMCKernelState", "TrainingSummary", "get_dynamics"]

ArrayTree = Any


class TrainingSummary(NamedTuple):
    """What the training inside ``init`` recorded, per training iteration (empty without training).

    Attributes:
        loss: the L2HMC loss of each iteration.
        acceptance_rate: mean acceptance probability of the persistent particles.
        step_size: ε after each iteration.
        final_loss: mean loss over the last 10% of the iterations (NaN without training).
        kept_tuned_hmc: whether the selection step kept the tuned HMC that training started from
            (the trained sampler mixed worse; a warning said so). False without training.
    """

    loss: Float[Array, " num_training_steps"]
    acceptance_rate: Float[Array, " num_training_steps"]
    step_size: Float[Array, " num_training_steps"]
    final_loss: Float[Array, ""]
    kept_tuned_hmc: Bool[Array, ""]


class _SharedTraining:
    """A trained sampler and its final particles, handed out one particle per chain, most spread
    out first (see `_dispersed_order`)."""

    def __init__(self, dynamics, summary, positions):
        self.dynamics, self.summary, self.positions = dynamics, summary, positions
        self.order = _dispersed_order(_whitened_particles(dynamics, positions))
        self.num_taken = 0

    def take(self, num: int):
        """The starting points of the next ``num`` chains (a leading axis of ``num``)."""
        indices = self.order[(self.num_taken + np.arange(num)) % self.order.size]
        self.num_taken += num
        return jax.tree_util.tree_map(lambda x: x[indices], self.positions)


def _dispersed_order(points: np.ndarray) -> np.ndarray:
    """An order of ``points`` (shape ``(n, dim)``) in which each one is the farthest from those
    before it (the first stays first): farthest-point traversal.

    The chains of one NumPyro run start at particles of one shared training. R̂ detects a failure
    to move between regions of the posterior (the modes of a mixture) only when the chains start
    in different ones, which is why Gelman and Rubin ask for overdispersed starting points; the
    first few particles can all lie in one mode while others lie elsewhere. Handing the particles
    out in this order starts the chains as far apart as the trained particles allow, and they are
    all burned-in draws of the trained sampler. A non-finite point comes last.
    """
    points = np.asarray(points, dtype=np.float64)
    order = [0]
    distance = np.linalg.norm(points - points[0], axis=1)
    for _ in range(points.shape[0] - 1):
        candidates = np.where(np.isfinite(distance), distance, -1.0)  # below every finite distance
        candidates[order] = -np.inf  # handed out already
        farthest = int(np.argmax(candidates))
        order.append(farthest)
        distance = np.minimum(distance, np.linalg.norm(points - points[farthest], axis=1))
    return np.asarray(order)


def _whitened_particles(dynamics: L2HMCDynamics, positions) -> np.ndarray:
    """The particles as rows of the dynamics' whitened coordinates z = L⁻¹(x − loc)."""
    return np.asarray(jax.vmap(lambda position: dynamics.to_whitened(ravel_pytree(position)[0]))(positions))


class L2HMCKernelState(NamedTuple):
    """State of one chain of [`L2HMCKernel`][l2hmc_ppl.numpyro.L2HMCKernel] (fields follow NumPyro's
    ``HMCState`` where shared).

    Attributes:
        i: iteration counter (warmup iterations included).
        z: the position in the unconstrained space (a dict of sites for a model, else the pytree of
            ``init_params``).
        potential_energy: U(z) = −log p(z).
        z_grad: ∇U(z), same structure as ``z``.
        energy: the Hamiltonian U(z) + ½|v|² after the last transition, with that transition's
            momentum (for the energy diagnostics of ArviZ).
        accept_prob: acceptance probability A of the last proposal.
        mean_accept_prob: running mean of A, restarted when sampling starts (as in NumPyro's HMC).
        diverging: whether the last proposal diverged (−log A above the threshold or not finite).
        log_det_jacobian: log|det J| of the learned map of the last proposal.
        num_steps: M, the number of learned leapfrog steps (gradient evaluations) per transition.
        step_size: ε of the dynamics.
        training: what the training in ``init`` recorded
            ([`TrainingSummary`][l2hmc_ppl.numpyro.TrainingSummary]).
        dynamics: the (trained, frozen) [`L2HMCDynamics`][l2hmc_ppl.L2HMCDynamics] this chain samples
            with.
        rng_key: PRNG key of the chain.
        burned_in: whether the chain started at a trained particle, which the warm start and
            training have burned in, so NumPyro's warm-up iterations leave it where it is; False
            when the chain burns in from its own initial point during them.
        burn_in_adaptation: the dual averaging (BlackJAX's) of the ε of the HMC limit that burns a
            chain in during the first half of warm-up (unused by a burned-in chain).
    """

    i: Int[Array, ""]
    z: ArrayTree
    potential_energy: Float[Array, ""]
    z_grad: ArrayTree
    energy: Float[Array, ""]
    accept_prob: Float[Array, ""]
    mean_accept_prob: Float[Array, ""]
    diverging: Bool[Array, ""]
    log_det_jacobian: Float[Array, ""]
    num_steps: Int[Array, ""]
    step_size: Float[Array, ""]
    training: TrainingSummary
    dynamics: L2HMCDynamics
    rng_key: PRNGKeyArray
    burned_in: Bool[Array, ""]
    burn_in_adaptation: DualAveragingAdaptationState


def _hashable(x):
    # As in numpyro.infer.mcmc: arrays are keyed by identity (a cache hit needs the same objects).
    if isinstance(x, (np.ndarray, jax.Array)):
        return id(x)
    return x


def _negate(tree):
    return jax.tree_util.tree_map(jnp.negative, tree)


class L2HMCKernel(MCMCKernel):
    """L2HMC as a NumPyro MCMC kernel: learned, exactly reversible leapfrog dynamics.

    Built from exactly one of ``model`` (a NumPyro program; constrained sites are sampled in the
    unconstrained space and mapped back by ``postprocess_fn``) or ``potential_fn`` (U(z) = −log p(z)
    on a pytree z; then ``init_params`` must be given to `MCMC.run`).

    The sampler trains inside ``init`` (see the module docstring), once for all chains: it builds
    the dynamics and runs [`train`][l2hmc_ppl.train] on ``num_particles`` particles (burn-in and
    HMC tuning, Algorithm 1, selection); every chain then starts at its own trained particle, and
    sampling uses the trained, frozen dynamics. With ``dynamics=`` given nothing is trained and the
    ``num_warmup`` iterations burn each chain in (first half with the HMC limit of the dynamics,
    second half with the dynamics themselves); so do the later chains of a ``potential_fn`` run
    with ``chain_method="sequential"``, from their own ``init_params`` with the trained dynamics
    (the particles lie around the first chain's initial point only).

    Args:
        model: a NumPyro model (mutually exclusive with ``potential_fn``).
        potential_fn: U(z), the negative log density of the target (mutually exclusive with
            ``model``).
        dynamics: ready [`L2HMCDynamics`][l2hmc_ppl.L2HMCDynamics] (e.g. trained by an earlier run,
            see [`get_dynamics`][l2hmc_ppl.numpyro.get_dynamics]); then no training happens and
            warmup only burns in.
        config: the training options ([`TrainConfig`][l2hmc_ppl.TrainConfig]). Its ``num_steps``
            is replaced by ``num_training_steps`` (default ``num_warmup``) and, unless set here or
            in ``train_options``, its ``num_warm_start_steps`` by ``min(400, max(16, num_warmup))``.
        num_training_steps: iterations of Algorithm 1 (at most, with ``early_stopping_patience`` in
            the [`TrainConfig`][l2hmc_ppl.TrainConfig]); default ``num_warmup``. 0 skips training.
        num_particles: size of the training batch of persistent particles (shared by the chains).
        num_leapfrog_steps: M of new dynamics (default
            [`DEFAULT_NUM_LEAPFROG_STEPS`][l2hmc_ppl.dynamics.DEFAULT_NUM_LEAPFROG_STEPS]).
        hidden_size: width of new dynamics' networks (default
            [`default_hidden_size`][l2hmc_ppl.dynamics.default_hidden_size]).
        step_size: initial ε of new dynamics (the warm start adapts it).
        step_size_jitter: the step-size jitter of new dynamics (default
            [`DEFAULT_STEP_SIZE_JITTER`][l2hmc_ppl.dynamics.DEFAULT_STEP_SIZE_JITTER]); 0 gives the
            paper's fixed-ε kernel.
        divergence_threshold: a transition is divergent when −log A exceeds this value.
        integrator: the map L_θ of each transition (default
            [`learned_leapfrog`][l2hmc_ppl.learned_leapfrog]), as BlackJAX's kernels take theirs.
        init_strategy: NumPyro init strategy, for the chain and the particles (models only).
        progress_bar: show the training's progress bars (warm start, training) inside ``init``;
            they are off when NumPyro runs the chains vectorized or in parallel (traced).
        **train_options: any [`TrainConfig`][l2hmc_ppl.TrainConfig] field (``learning_rate``,
            ``dense_mass``, ``objective``, ...), overriding ``config``.

    Example:
        >>> from numpyro.infer import MCMC
        >>> mcmc = MCMC(L2HMCKernel(model), num_warmup=500, num_samples=1000, num_chains=4)
        >>> mcmc.run(jax.random.key(0), data)
        >>> mcmc.print_summary()
        >>> dynamics = get_dynamics(mcmc)  # reuse: L2HMCKernel(model, dynamics=dynamics)

    References:
        D. Levy, M. D. Hoffman, J. Sohl-Dickstein. *Generalizing Hamiltonian Monte Carlo with Neural
        Networks*. ICLR 2018, arXiv:1711.09268.
    """

    def __init__(
        self,
        model: Callable | None = None,
        potential_fn: Callable | None = None,
        *,
        dynamics: L2HMCDynamics | None = None,
        config: TrainConfig | None = None,
        num_training_steps: int | None = None,
        num_particles: int = 64,
        num_leapfrog_steps: int | None = None,
        hidden_size: int | None = None,
        step_size: float = 0.1,
        step_size_jitter: float | None = None,
        divergence_threshold: float = 1000.0,
        integrator: Integrator = learned_leapfrog,
        init_strategy: Callable = init_to_uniform,
        progress_bar: bool = True,
        **train_options: Any,
    ):
        if (model is None) == (potential_fn is None):
            raise ValueError("Only one of `model` or `potential_fn` must be specified.")
        if dynamics is not None:
            check_dynamics("dynamics", dynamics)
        if not callable(integrator):
            raise TypeError(f"integrator must be callable (e.g. learned_leapfrog), got {integrator!r}")
        if not callable(init_strategy):
            raise TypeError(f"init_strategy must be callable (e.g. init_to_uniform), got {init_strategy!r}")
        if not isinstance(progress_bar, bool):
            raise TypeError(f"progress_bar must be True or False, got {progress_bar!r}")
        num_particles = check_positive_int("num_particles", num_particles)
        if num_particles < 2:
            raise ValueError(f"num_particles must be an integer >= 2, got {num_particles!r}")
        if num_training_steps is not None:
            num_training_steps = check_nonnegative_int("num_training_steps", num_training_steps)
        if config is not None and not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        divergence_threshold = check_positive_float("divergence_threshold", divergence_threshold)
        # Fail now, not inside init, for a bad option; the step counts are filled in by init.
        self._config = (config or TrainConfig()).replace(**train_options)
        self._warm_start_steps_given = "num_warm_start_steps" in train_options or (
            config is not None and config.num_warm_start_steps != TrainConfig().num_warm_start_steps
        )
        self._model = model
        self._potential_fn = potential_fn
        self._dynamics = dynamics
        self._num_training_steps = num_training_steps
        self._num_particles = num_particles
        self._dynamics_options = dict(
            num_leapfrog_steps=num_leapfrog_steps,
            hidden_size=hidden_size,
            step_size=step_size,
            step_size_jitter=step_size_jitter,
        )
        check_dynamics_options(**self._dynamics_options)  # fail now, not when init builds them
        self._divergence_threshold = float(divergence_threshold)
        self._integrator = integrator
        self._init_strategy = init_strategy
        self._progress_bar = bool(progress_bar)
        self._num_warmup = 0
        self._initialized = False
        # Built from the model on the first init (or lazily after unpickling); dropped on pickling.
        self._potential_fn_gen = None
        self._postprocess_fn_gen = None
        self._logdensity_cache: dict = {}
        # The trained sampler per (log density, training config): every chain of every run uses it.
        self._trained: dict = {}

    # ----------------------------------------------------------------------------------------
    # MCMCKernel interface
    @property
    def model(self) -> Callable | None:
        """The NumPyro model, or ``None`` for a kernel built from ``potential_fn``."""
        return self._model

    @property
    def sample_field(self) -> str:
        """The state field holding the (unconstrained) draw."""
        return "z"

    @property
    def default_fields(self) -> tuple[str, ...]:
        """Fields collected by default: the draw and the divergence flag (for ``print_summary``)."""
        return ("z", "diverging")

    @property
    def _sample_fn(self):
        # NumPyro's MCMC calls ``init`` again before a resumed run when this is None; the kernel
        # holds no compiled closure, so once initialised (also after unpickling) it is not needed.
        return self.sample if self._initialized else None

    def get_diagnostics_str(self, state: L2HMCKernelState) -> str:
        """Progress-bar text: mean acceptance, step size, and the training loss during warmup."""
        text = f"acc. prob={float(state.mean_accept_prob):.2f}, step size={float(state.step_size):.2e}"
        final_loss = float(state.training.final_loss)
        if int(state.i) < self._num_warmup and math.isfinite(final_loss):
            text += f", train loss={final_loss:.3g}"
        return text

    def postprocess_fn(self, model_args, model_kwargs):
        """Map unconstrained draws to the constrained space and add deterministic sites."""
        if self._model is None:
            return identity
        self._ensure_model_fns(model_args, model_kwargs)
        return self._postprocess_fn_gen(*model_args, **(model_kwargs or {}))

    def get_potential_fn(self, model_args=(), model_kwargs=None) -> Callable:
        """U(z) = −log p(z) on the unconstrained space for the given model arguments."""
        if self._model is None:
            return self._potential_fn
        self._ensure_model_fns(model_args, model_kwargs)
        return self._potential_fn_gen(*model_args, **(model_kwargs or {}))

    def init(self, rng_key, num_warmup, init_params=None, model_args=(), model_kwargs=None):
        """Initialise the chain(s): build the dynamics and, unless they were given, train them.

        Args:
            rng_key: one key (one chain) or a batch of keys (``chain_method="vectorized"``).
            num_warmup: warmup iterations; the default number of training iterations.
            init_params: initial unconstrained position(s); a leading chain axis when vectorized.
            model_args: positional arguments of the model.
            model_kwargs: keyword arguments of the model.

        Returns:
            [`L2HMCKernelState`][l2hmc_ppl.numpyro.L2HMCKernelState] (with a leading chain axis when
            vectorized).
        """
        model_kwargs = {} if model_kwargs is None else model_kwargs
        self._num_warmup = num_warmup
        vectorized = not is_prng_key(rng_key)
        if vectorized:
            rng_key, key_init_model, key_particles = jnp.swapaxes(
                jax.vmap(lambda k: jax.random.split(k, 3))(rng_key), 0, 1
            )
            num_chains = rng_key.shape[0]
        else:
            rng_key, key_init_model, key_particles = jax.random.split(rng_key, 3)
            num_chains = None

        if isinstance(init_params, ParamInfo):
            init_params = init_params.z
        if self._model is not None:
            model_info = self._initialize(key_init_model, model_args, model_kwargs)
            if init_params is None:
                init_params = model_info.param_info.z
            else:
                _check_init_params_match(init_params, model_info.param_info.z, vectorized)
        elif init_params is None:
            raise ValueError("Valid value of `init_params` must be provided with `potential_fn`.")
        init_params = _checked_init_params(init_params, num_chains)
        logdensity_fn = self._logdensity_fn(model_args, model_kwargs)
        if not _under_transform(init_params):  # a clear error naming the chain with a bad start
            batched = init_params if vectorized else jax.tree_util.tree_map(lambda x: x[None], init_params)
            if ravel_pytree(jax.tree_util.tree_map(lambda x: x[0], batched))[0].size:
                try:
                    init_chains(batched, logdensity_fn, name="init_params")
                except ValueError as error:
                    if vectorized:
                        raise
                    # NumPyro hands each sequential chain its own init_params: there is no index to name.
                    raise ValueError(
                        "init_params: the log density or its gradient is not finite at this chain's "
                        "initial point; start every chain inside the target's support"
                    ) from error
        config = self._training_config(num_warmup)
        self._initialized = True
        first = init_params if not vectorized else jax.tree_util.tree_map(lambda x: x[0], init_params)
        has_coordinates = ravel_pytree(first)[0].size > 0
        traced = _under_transform(rng_key, init_params, model_args, model_kwargs)
        if config is not None and has_coordinates and not traced:
            # Train once, on the host (progress bar, compiled once), and share: every chain of this
            # and later runs of the kernel starts at its own trained particle.
            shared = self._shared_training(
                rng_key if not vectorized else rng_key[0],
                key_particles if not vectorized else key_particles[0],
                init_params,
                num_chains,
                logdensity_fn,
                config,
                model_args,
                model_kwargs,
            )
            if not vectorized and self._model is None and shared.num_taken > 0:
                # A later sequential chain of a potential_fn: the particles lie around the first
                # chain's initial point only, so this one burns in from its own (module docstring).
                return self._chain_state(rng_key, init_params, logdensity_fn, shared, burned_in=False)
            starts = shared.take(1 if num_chains is None else num_chains)
            if vectorized:
                return jax.vmap(lambda key, start: self._chain_state(key, start, logdensity_fn, shared))(
                    rng_key, starts
                )
            return self._chain_state(
                rng_key, jax.tree_util.tree_map(lambda x: x[0], starts), logdensity_fn, shared
            )
        # Under pmap (NumPyro's "parallel" chains) each device trains its own chain's sampler.
        particles = None
        if config is not None:
            particles = self._initial_particles(
                key_particles, init_params, num_chains, logdensity_fn, model_args, model_kwargs
            )

        def init_fn(key, position, particles):
            return self._init_one_chain(key, position, particles, logdensity_fn, config)

        if vectorized:
            return jax.vmap(init_fn)(rng_key, init_params, particles)
        return init_fn(rng_key, init_params, particles)

    def sample(self, state: L2HMCKernelState, model_args, model_kwargs) -> L2HMCKernelState:
        """One L2HMC transition with the chain's frozen dynamics (vectorized over a chain axis).

        Args:
            state: the current state (with a leading chain axis when vectorized).
            model_args: positional arguments of the model.
            model_kwargs: keyword arguments of the model.

        Returns:
            The next [`L2HMCKernelState`][l2hmc_ppl.numpyro.L2HMCKernelState].
        """
        logdensity_fn = self._logdensity_fn(model_args, model_kwargs)
        if jnp.ndim(state.i) == 0:
            return self._transition(state, logdensity_fn)
        return jax.vmap(lambda s: self._transition(s, logdensity_fn))(state)

    def __getstate__(self):
        state = self.__dict__.copy()
        # Drop the closures built from the model; they are rebuilt on demand after unpickling.
        state["_potential_fn_gen"] = None
        state["_postprocess_fn_gen"] = None
        state["_logdensity_cache"] = {}
        # Keyed by those closures; a resumed run starts from the chain states, which hold the dynamics.
        state["_trained"] = {}
        return state

    # ----------------------------------------------------------------------------------------
    # Internals
    def _initialize(self, rng_key, model_args, model_kwargs):
        """``initialize_model`` (at a batch of keys or one key); keeps the potential and postprocess."""
        _check_latent_sites(self._model, model_args, model_kwargs, self._init_strategy)
        model_info = initialize_model(
            rng_key,
            self._model,
            dynamic_args=True,
            init_strategy=self._init_strategy,
            model_args=model_args,
            model_kwargs=model_kwargs,
        )
        self._potential_fn_gen = model_info.potential_fn
        self._postprocess_fn_gen = model_info.postprocess_fn
        return model_info

    def _ensure_model_fns(self, model_args, model_kwargs):
        if self._potential_fn_gen is None:
            self._initialize(jax.random.key(0), model_args, model_kwargs or {})

    def _logdensity_fn(self, model_args, model_kwargs) -> Callable:
        """log p(z) = −U(z), one function object per model arguments.

        The training is compiled once per log-density function: returning the same object for the
        same arguments lets every chain (and every later run) reuse the first chain's compilation.
        Arrays are keyed by identity, as NumPyro's own MCMC caches its compiled functions.
        """
        try:
            key = (
                jax.tree_util.tree_map(_hashable, tuple(model_args)),
                jax.tree_util.tree_map(_hashable, tuple(sorted((model_kwargs or {}).items()))),
            )
            hash(key)
        except TypeError:
            key = None
        if key is not None and key in self._logdensity_cache:
            return self._logdensity_cache[key]
        potential_fn = self.get_potential_fn(model_args, model_kwargs)

        def logdensity_fn(z):
            return -potential_fn(z)

        if key is not None and not _under_transform(model_args, model_kwargs):
            self._logdensity_cache[key] = logdensity_fn
        return logdensity_fn

    def _training_config(self, num_warmup: int) -> TrainConfig | None:
        """The training options for ``num_warmup`` (``None``: no training)."""
        if self._dynamics is not None:
            return None
        num_steps = num_warmup if self._num_training_steps is None else self._num_training_steps
        if num_steps == 0:
            warnings.warn(
                "L2HMCKernel: no training (num_warmup=0 and num_training_steps unset); the dynamics "
                "stay at their untrained HMC limit. Give num_warmup > 0 or a trained `dynamics=`.",
                stacklevel=4,
            )
            return None
        config = self._config.replace(
            num_steps=num_steps, progress_bar=self._config.progress_bar and self._progress_bar
        )
        if not self._warm_start_steps_given:
            config = config.replace(num_warm_start_steps=min(400, max(16, num_warmup)))
        return config

    def _initial_particles(self, rng_key, init_params, num_chains, logdensity_fn, model_args, model_kwargs):
        """Training particles per chain: the chain's initial point, then ``num_particles − 1`` more.

        For a model they are drawn by ``init_strategy``; for a ``potential_fn`` they are the initial
        point plus a uniform jitter in (−2, 2) per coordinate (the width of ``init_to_uniform``),
        falling back to the initial point where the log density is not finite.
        """
        num_other = self._num_particles - 1
        batched_init = (
            init_params if num_chains is not None else jax.tree_util.tree_map(lambda x: x[None], init_params)
        )
        keys = rng_key if num_chains is not None else rng_key[None]
        batch = keys.shape[0]
        if self._model is not None:
            draw_keys = jax.vmap(lambda k: jax.random.split(k, num_other))(keys).reshape(-1, *keys.shape[1:])
            drawn = initialize_model(
                draw_keys,
                self._model,
                dynamic_args=True,
                init_strategy=self._init_strategy,
                model_args=model_args,
                model_kwargs=model_kwargs,
            ).param_info.z
            others = jax.tree_util.tree_map(lambda x: x.reshape(batch, num_other, *x.shape[1:]), drawn)
        else:

            def jitter(key, z):
                flat, unravel = ravel_pytree(z)
                noise = jax.random.uniform(key, (num_other, flat.size), flat.dtype, -2.0, 2.0)
                candidates = flat + noise
                finite = jax.vmap(lambda x: jnp.isfinite(logdensity_fn(unravel(x))))(candidates)
                candidates = jnp.where(finite[:, None], candidates, flat)
                return jax.vmap(unravel)(candidates)

            others = jax.vmap(jitter)(keys, batched_init)
        particles = jax.tree_util.tree_map(
            lambda first, rest: jnp.concatenate([first[:, None].astype(rest.dtype), rest], axis=1),
            batched_init,
            others,
        )
        if num_chains is None:
            particles = jax.tree_util.tree_map(lambda x: x[0], particles)
        return particles

    def _build_dynamics(self, rng_key, position) -> L2HMCDynamics:
        flat, _ = ravel_pytree(position)
        dim = flat.size
        if self._dynamics is not None:
            if self._dynamics.dim != dim:
                raise ValueError(
                    f"the given dynamics were built for dim={self._dynamics.dim}, but the model has "
                    f"{dim} unconstrained coordinates"
                )
            return self._dynamics
        return default_dynamics(dim, key=rng_key, dtype=flat.dtype, **self._dynamics_options)

    def _train(self, rng_key, position, particles, logdensity_fn, config: TrainConfig | None):
        """Build the dynamics and, with a config, train them: ``(dynamics, summary, final particles)``."""
        key_dynamics, key_train = jax.random.split(rng_key)
        dynamics = self._build_dynamics(key_dynamics, position)
        dtype = ravel_pytree(position)[0].dtype
        if config is None:
            empty = jnp.zeros((0,), dtype)
            summary = TrainingSummary(empty, empty, empty, jnp.asarray(jnp.nan, dtype), jnp.asarray(False))
            return dynamics, summary, None
        dynamics, history = train(key_train, logdensity_fn, dynamics, particles, config)
        # the last tenth of the iterations run (an early stop runs fewer than num_steps)
        num_tail = max(1, history.loss.shape[0] // 10)
        summary = TrainingSummary(
            loss=jnp.asarray(history.loss),
            acceptance_rate=jnp.asarray(history.acceptance_rate),
            step_size=jnp.asarray(history.step_size),
            final_loss=jnp.nanmean(jnp.asarray(history.loss[-num_tail:])),
            kept_tuned_hmc=jnp.asarray(history.selection is not None and history.selection.kept_initial),
        )
        return dynamics, summary, history.final_state.position

    def _shared_training(
        self, rng_key, key_particles, init_params, num_chains, logdensity_fn, config, model_args, model_kwargs
    ) -> _SharedTraining:
        """The sampler trained for this log density and number of warm-up steps (trained on first use)."""
        cache_key = (logdensity_fn, config)
        if cache_key not in self._trained:
            batched = (
                init_params
                if num_chains is not None
                else jax.tree_util.tree_map(lambda x: x[None], init_params)
            )
            first = jax.tree_util.tree_map(lambda x: x[0], batched)
            particles = self._initial_particles(
                key_particles, first, None, logdensity_fn, model_args, model_kwargs
            )
            # the chains' own starting points are particles too
            count = min(jax.tree_util.tree_leaves(batched)[0].shape[0], self._num_particles)
            particles = jax.tree_util.tree_map(
                lambda p, b: p.at[:count].set(b[:count].astype(p.dtype)), particles, batched
            )
            dynamics, summary, positions = self._train(rng_key, first, particles, logdensity_fn, config)
            self._trained[cache_key] = _SharedTraining(dynamics, summary, positions)
        return self._trained[cache_key]

    def _chain_state(
        self, rng_key, position, logdensity_fn, shared: _SharedTraining, burned_in: bool = True
    ) -> L2HMCKernelState:
        key_chain = jax.random.split(rng_key, 3)[0]
        return self._state(key_chain, position, logdensity_fn, shared.dynamics, shared.summary, burned_in)

    def _init_one_chain(self, rng_key, position, particles, logdensity_fn, config: TrainConfig | None):
        """Train this chain's own sampler (under ``pmap``, or without training) and start the chain."""
        key_chain, key_train, _ = jax.random.split(rng_key, 3)
        if ravel_pytree(position)[0].size == 0:
            return self._empty_chain_state(key_chain, position, logdensity_fn)
        dynamics, summary, positions = self._train(key_train, position, particles, logdensity_fn, config)
        trained = positions is not None
        if trained:
            # the chain starts where its first particle ended: burned in by the warm start and training
            position = jax.tree_util.tree_map(lambda x: x[0], positions)
        return self._state(key_chain, position, logdensity_fn, dynamics, summary, burned_in=trained)

    def _state(self, key_chain, position, logdensity_fn, dynamics, training, burned_in) -> L2HMCKernelState:
        dtype = ravel_pytree(position)[0].dtype
        chain = init_chain_state(position, logdensity_fn)
        zero = jnp.zeros((), dtype)
        return L2HMCKernelState(
            i=jnp.asarray(0),
            z=chain.position,
            potential_energy=-chain.logdensity,
            z_grad=_negate(chain.logdensity_grad),
            energy=-chain.logdensity,
            accept_prob=zero,
            mean_accept_prob=zero,
            diverging=jnp.asarray(False),
            log_det_jacobian=zero,
            num_steps=jnp.asarray(dynamics.num_leapfrog_steps, jnp.int32),
            step_size=dynamics.step_size.astype(dtype),
            training=training,
            dynamics=dynamics,
            rng_key=key_chain,
            burned_in=jnp.asarray(burned_in),
            burn_in_adaptation=self._burn_in_adaptation_init(dynamics.step_size.astype(dtype)),
        )

    def _burn_in_adaptation_init(self, step_size) -> DualAveragingAdaptationState:
        adaptation_init, _, _ = dual_averaging_adaptation(self._config.target_acceptance_rate)
        return as_dtype(adaptation_init(step_size), step_size.dtype)

    def _empty_chain_state(self, rng_key, position, logdensity_fn) -> L2HMCKernelState:
        """A model whose latent sites have no unconstrained coordinate (e.g. a Dirichlet of size
        one): there is nothing to move, so every draw is the single point, as with NUTS."""
        dtype = jnp.result_type(float)
        zero = jnp.zeros((), dtype)
        empty = jnp.zeros((0,), dtype)
        logdensity = jnp.asarray(logdensity_fn(position), dtype)
        return L2HMCKernelState(
            i=jnp.asarray(0),
            z=position,
            potential_energy=-logdensity,
            z_grad=jax.tree_util.tree_map(jnp.zeros_like, position),
            energy=-logdensity,
            accept_prob=zero,
            mean_accept_prob=zero,
            diverging=jnp.asarray(False),
            log_det_jacobian=zero,
            num_steps=jnp.asarray(0, jnp.int32),
            step_size=zero,
            training=TrainingSummary(empty, empty, empty, jnp.asarray(jnp.nan, dtype), jnp.asarray(False)),
            dynamics=None,
            rng_key=rng_key,
            burned_in=jnp.asarray(True),  # nothing to burn in
            burn_in_adaptation=self._burn_in_adaptation_init(jnp.ones((), dtype)),
        )

    def _transition(self, state: L2HMCKernelState, logdensity_fn) -> L2HMCKernelState:
        if state.dynamics is None:  # no coordinates: the one point is accepted every time
            one = jnp.ones((), state.accept_prob.dtype)
            return state._replace(i=state.i + 1, accept_prob=one, mean_accept_prob=one)
        # A chain that starts at a trained particle, which the warm start and training have burned
        # in, has nothing left to do in NumPyro's warm-up iterations, and they cost nothing.
        return jax.lax.cond(
            state.burned_in & (state.i < self._num_warmup),
            lambda s: s._replace(i=s.i + 1),
            lambda s: self._move(s, logdensity_fn),
            state,
        )

    def _move(self, state: L2HMCKernelState, logdensity_fn) -> L2HMCKernelState:
        """One L2HMC transition of the chain (the HMC limit in the first half of a burn-in warm-up)."""
        rng_key, key_transition = jax.random.split(state.rng_key)
        chain = L2HMCState(state.z, -state.potential_energy, _negate(state.z_grad))
        dynamics = state.dynamics
        # A chain that is not burned in (given `dynamics=`, or a later sequential chain of a
        # potential_fn) starts at its initial point, maybe far out: the first half of warm-up burns
        # in with the HMC limit (zero networks: HMC with the dynamics' jitter and preconditioner),
        # since networks trained near the posterior can be useless far from it, and with its own
        # ε, adapted by dual averaging as NUTS's is, since the trained ε can be far too long where
        # the curvature is larger (a chain started far out never accepted a move with it).
        adaptation = state.burn_in_adaptation
        hmc_limit = eqx.tree_at(
            lambda d: d.log_step_size,
            dynamics.as_hmc_limit(),
            adaptation.log_step_size.astype(dynamics.log_step_size.dtype),
        )
        use_hmc_limit = state.i < self._num_warmup // 2
        dynamics = tree_where(use_hmc_limit, hmc_limit, dynamics)
        new, info = build_kernel(self._integrator, self._divergence_threshold)(
            key_transition, chain, logdensity_fn, dynamics
        )
        _, adaptation_update, _ = dual_averaging_adaptation(self._config.target_acceptance_rate)
        adapted = adaptation_update(adaptation, info.acceptance_rate.astype(adaptation.log_step_size.dtype))
        adaptation = tree_where(use_hmc_limit, adapted, adaptation)
        itr = state.i + 1
        count = jnp.where(state.i < self._num_warmup, itr, itr - self._num_warmup)
        accept_prob = info.acceptance_rate
        mean_accept_prob = state.mean_accept_prob + (accept_prob - state.mean_accept_prob) / count
        initial_energy = info.energy - info.energy_change
        energy = jnp.where(info.is_accepted, info.energy, initial_energy)
        return state._replace(
            i=itr,
            z=new.position,
            potential_energy=-new.logdensity,
            z_grad=_negate(new.logdensity_grad),
            energy=energy.astype(state.energy.dtype),
            accept_prob=accept_prob.astype(state.accept_prob.dtype),
            mean_accept_prob=mean_accept_prob.astype(state.mean_accept_prob.dtype),
            diverging=info.is_divergent,
            log_det_jacobian=info.log_det_jacobian.astype(state.log_det_jacobian.dtype),
            rng_key=rng_key,
            burn_in_adaptation=adaptation,
        )


def _under_transform(*trees) -> bool:
    return any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(trees))


def _check_latent_sites(model, model_args, model_kwargs, init_strategy) -> None:
    """Clear errors for a model without latent sites or with discrete ones.

    The model runs with the init strategy's values substituted, as NumPyro's own initialisation
    does, so that sites that cannot be sampled (``ImproperUniform``) are fine here.
    """
    with handlers.block(), handlers.trace() as model_trace:
        seeded = handlers.seed(model, rng_seed=0)
        handlers.substitute(seeded, substitute_fn=init_strategy)(*model_args, **model_kwargs)
    latent = {
        name: site
        for name, site in model_trace.items()
        if site["type"] == "sample" and not site["is_observed"]
    }
    if not latent:
        raise ValueError(
            "the model has no latent sample sites (every sample site is observed), so there is nothing "
            "for L2HMCKernel to sample; use numpyro.infer.Predictive to simulate from it"
        )
    discrete = [
        name
        for name, site in latent.items()
        if site["fn"].support.is_discrete and site["infer"].get("enumerate") != "parallel"
    ]
    if discrete:
        raise ValueError(
            f"L2HMCKernel samples continuous latent variables only, but the model has the discrete "
            f"latent site(s) {discrete}. Marginalise them out (e.g. with a mixture distribution, or "
            "mark them infer={'enumerate': 'parallel'} with funsor installed), or use a kernel for "
            "discrete sites (numpyro.infer.MixedHMC, DiscreteHMCGibbs)."
        )


def _check_init_params_match(init_params, model_z, vectorized: bool) -> None:
    """The user's ``init_params`` have the model's latent sites, each of the model's shape."""
    if isinstance(init_params, dict) and isinstance(model_z, dict) and set(init_params) != set(model_z):
        raise ValueError(
            f"init_params must give every latent site of the model and nothing else: the model has "
            f"{sorted(model_z)}, init_params has {sorted(init_params)}"
        )
    if jax.tree_util.tree_structure(init_params) != jax.tree_util.tree_structure(model_z):
        raise ValueError(
            "init_params must have the structure of the model's unconstrained latent sites "
            f"({jax.tree_util.tree_structure(model_z)}), got {jax.tree_util.tree_structure(init_params)}"
        )
    paths = jax.tree_util.tree_flatten_with_path(model_z)[0]
    for (path, expected), given in zip(paths, jax.tree_util.tree_leaves(init_params), strict=True):
        expected_shape = jnp.shape(expected)[1:] if vectorized else jnp.shape(expected)
        given_shape = jnp.shape(given)[1:] if vectorized else jnp.shape(given)
        if tuple(given_shape) != tuple(expected_shape):
            where = jax.tree_util.keystr(path)
            chain_axis = " after the leading chain axis" if vectorized else ""
            raise ValueError(
                f"init_params{where} must have the shape of the site's unconstrained value "
                f"{tuple(expected_shape)}{chain_axis}, got {tuple(given_shape)}"
            )


def _checked_init_params(init_params, num_chains: int | None):
    """``init_params`` as float arrays, with a clear error for a wrong layout or dtype."""
    leaves = jax.tree_util.tree_leaves(init_params)
    if not leaves:
        raise ValueError("init_params is empty: the model has no latent coordinates to sample")
    converted = []
    for leaf in leaves:
        kind = np.dtype(jnp.result_type(leaf) if isinstance(leaf, jax.Array) else np.asarray(leaf).dtype).kind
        if kind not in "fiub":
            raise TypeError(
                f"init_params must hold real numbers, got an array of dtype {np.asarray(leaf).dtype}"
            )
        array = jnp.asarray(leaf)
        if kind != "f":  # integers and booleans become the default float
            array = array.astype(jnp.result_type(float))
        converted.append(array)
    init_params = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(init_params), converted)
    if num_chains is not None:
        sizes = {jnp.shape(leaf)[0] if jnp.ndim(leaf) else None for leaf in converted}
        if sizes != {num_chains}:
            raise ValueError(
                f"with {num_chains} vectorized chains, every leaf of init_params needs a leading axis of "
                f"size {num_chains} (one initial point per chain); got leading sizes "
                f"{sorted(map(str, sizes))}"
            )
    return init_params


def get_dynamics(source: MCMC | L2HMCKernelState, chain: int = 0) -> L2HMCDynamics:
    """The trained dynamics of one chain after a run (to save, reuse, or use in BlackJAX).

    Args:
        source: a ``numpyro.infer.MCMC`` that ran an [`L2HMCKernel`][l2hmc_ppl.numpyro.L2HMCKernel]
            (its last state, or else its post-warmup state, is used) or an
            [`L2HMCKernelState`][l2hmc_ppl.numpyro.L2HMCKernelState].
        chain: which chain's dynamics to return when there are several.

    Returns:
        The [`L2HMCDynamics`][l2hmc_ppl.L2HMCDynamics] of that chain. Pass them to
        ``L2HMCKernel(model, dynamics=...)`` to sample without training, or to
        [`build_kernel`][l2hmc_ppl.build_kernel] with the flattened unconstrained position
        (``jax.flatten_util.ravel_pytree`` of a draw of ``z``).
    """
    state = source
    if isinstance(source, MCMC):
        state = source.last_state if source.last_state is not None else source.post_warmup_state
        if state is None:
            raise ValueError("the MCMC object has not run yet")
    if not isinstance(state, L2HMCKernelState):
        raise TypeError(f"expected an MCMC run with L2HMCKernel or an L2HMCKernelState, got {type(state)}")
    dynamics = state.dynamics
    if dynamics is None:
        raise ValueError("the model has no unconstrained coordinates, so the chains have no dynamics")
    if jnp.ndim(state.i) == 0:
        if chain != 0:
            raise IndexError(f"the state holds one chain, asked for chain {chain}")
        return dynamics
    num_chains = jnp.shape(state.i)[0]
    if not -num_chains <= chain < num_chains:
        raise IndexError(f"chain {chain} out of range for {num_chains} chains")
    return jax.tree_util.tree_map(lambda x: x[chain], dynamics)
