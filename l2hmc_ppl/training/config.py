"""[`TrainConfig`][l2hmc_ppl.TrainConfig]: every option of training in one place.

[`train`][l2hmc_ppl.train], the NumPyro kernel, the BlackJAX adaptation and the benchmarks all take
their training options from one `TrainConfig`, so a default is changed (and documented) once.
The config is frozen and hashable: the options that shape the compiled training step are part of
the compilation key, so equal configs reuse the compiled step.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import optax

from l2hmc_ppl._checks import (
    check_nonnegative_float,
    check_nonnegative_int,
    check_positive_float,
    check_positive_int,
)

__all__ = ["DENSE_MASS_MAX_DIM", "OBJECTIVES", "TrainConfig", "build_optimizer"]

DENSE_MASS_MAX_DIM = 200
"""With ``dense_mass="auto"``, targets of up to this many coordinates get a dense preconditioner."""

OBJECTIVES = ("moments", "paper")
"""The training objectives: ``"moments"`` (the default,
[`moments_loss`][l2hmc_ppl.training.moments_loss]) and ``"paper"`` ([`esjd_loss`][l2hmc_ppl.esjd_loss],
Levy et al. 2018, §4, Eq. 7–8)."""

# Consecutive non-finite updates that optax.apply_if_finite tolerates before it would apply one
# anyway; never reached, because `train` stops far earlier (max_consecutive_failures).
_NEVER = 2**31 - 1


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Options of [`train`][l2hmc_ppl.train] (and of the adapters, which train through it).

    Attributes:
        num_steps: total training iterations (Algorithm 1). Training continued from a
            [`TrainState`][l2hmc_ppl.TrainState] runs the iterations it has left.
        objective: ``"moments"`` (default): the expected squared jump of the position *and* of the
            centred squares, both in the whitened coordinates of the warm start, so that a move
            that flips x → −x (which mixes means but never variances) earns nothing; or
            ``"paper"``: the paper's ℓ_λ on the raw squared jump |x' − x|².
        loss_scale: λ² of the loss; ``None`` uses the objective's default (1.0 for ``"moments"``,
            whose jumps are per coordinate in whitened units; 0.1 for ``"paper"``, as in the
            paper's Gaussian runs). The paper objective also takes a per-coordinate λ² of shape
            ``(dim,)`` (a tuple).
        burn_in_weight: λ_b, the weight of the loss on fresh draws from ``initial_distribution``.
        initial_distribution: q of the burn-in term, ``(rng_key, num) -> positions``; default
            N(0, I) on the flattened position.
        temperature_schedule: ``step -> T``; training then sees $p^{1/T}$ (e.g.
            [`exponential_annealing`][l2hmc_ppl.exponential_annealing]). Default T = 1.
        learning_rate: Adam's initial learning rate (when ``optimizer`` is not given).
        learning_rate_warmup_steps: linear warm-up of the learning rate from 0 over these steps.
        decay_steps: the learning rate decays by ``decay_rate`` every ``decay_steps`` (staircase).
        decay_rate: see ``decay_steps``; the paper's ×0.96 every 1000 steps is the default.
        optimizer: any ``optax.GradientTransformation`` instead of the default Adam. Build it once
            and reuse it: the compiled training step is keyed by its identity.
        max_grad_norm: clip gradients to this global norm (``optax.clip_by_global_norm``).
        warm_start: first burn the chains in and tune HMC's step size and preconditioner
            ([`warm_start`][l2hmc_ppl.warm_start]), and start training from exactly that tuned
            HMC (zero heads). Turn it off for paper-faithful runs.
        dense_mass: the warm start's preconditioner: ``True`` a dense (Cholesky) one, ``False`` a
            diagonal one, ``"auto"`` (default) dense up to
            [`DENSE_MASS_MAX_DIM`][l2hmc_ppl.training.config.DENSE_MASS_MAX_DIM] coordinates, which
            removes the linear correlations of a posterior (the common case in regression models)
            for the cost of a triangular solve per gradient.
        num_warm_start_steps: transitions of the warm start (at least 16; M is chosen from 64 on).
        adapt_num_leapfrog_steps: let the warm start choose M, the number of leapfrog steps, by the
            per-gradient jump of the slowest coordinate and moment (see
            [`warm_start`][l2hmc_ppl.warm_start]); the dynamics are rebuilt with that M.
        target_acceptance_rate: the warm start's step-size target, in (0, 1).
        keep_best: after training, score the trained sampler and the one training started from
            by the squared jump of their slowest coordinate and moment (which a flip cannot game)
            and return the better, with a warning when that is the starting one (see
            [`select_dynamics`][l2hmc_ppl.training.select_dynamics]).
        early_stopping_patience: stop training once this many chunks in a row have not raised the
            selection score (the squared jump of the slowest coordinate and moment, see
            [`select_dynamics`][l2hmc_ppl.training.select_dynamics]) by ``early_stopping_min_gain``
            over the best earlier chunk; ``history.stop_reason`` is then ``"converged"``. ``None``
            (default): train for all of ``num_steps``. Off by default because the score is a
            lag-1 jump: on a correlated Gaussian it levels off after 300 iterations while the
            sampler is still antithetic (ESS of x 4.9× that of x²; 0.86× after 1000 iterations).
            Where that does not matter (a near-Gaussian posterior whose warm-up time counts), 2
            halves the training time on the development suite.
        early_stopping_min_gain: the relative gain of the chunk's score over the best earlier one
            that counts as progress (chunk scores of a converged training scatter by a few per cent).
        chunk_size: iterations per compiled chunk; the host is contacted once per chunk (progress
            bar, stop rule, checkpoint), never per iteration.
        max_consecutive_failures: after this many skipped updates in a row (no finite gradient),
            training stops and returns what it has, with a warning.
        progress_bar: show progress bars with the iteration rate and the time left.
        checkpoint_path: write the [`TrainState`][l2hmc_ppl.TrainState] here (atomically) every
            ``checkpoint_every`` chunks and at the end; resume with ``train(..., resume_from=...)``.
        checkpoint_every: chunks between checkpoints.
    """

    num_steps: int = 1000
    objective: Literal["moments", "paper"] = "moments"
    loss_scale: float | tuple[float, ...] | None = None
    burn_in_weight: float = 0.0
    initial_distribution: Callable | None = None
    temperature_schedule: Callable | None = None
    learning_rate: float = 1e-3
    learning_rate_warmup_steps: int = 0
    decay_steps: int = 1000
    decay_rate: float = 0.96
    optimizer: optax.GradientTransformation | None = None
    max_grad_norm: float | None = None
    warm_start: bool = True
    dense_mass: bool | Literal["auto"] = "auto"
    num_warm_start_steps: int = 400
    adapt_num_leapfrog_steps: bool = True
    target_acceptance_rate: float = 0.75
    keep_best: bool = True
    early_stopping_patience: int | None = None
    early_stopping_min_gain: float = 0.05
    chunk_size: int = 100
    max_consecutive_failures: int = 100
    progress_bar: bool = True
    checkpoint_path: str | None = None
    checkpoint_every: int = 10

    def __post_init__(self):
        # Keep the config hashable and plain: NumPy/JAX scalars become Python floats, and a
        # per-coordinate λ² becomes a tuple.
        for name in _FLOAT_OPTIONS:
            object.__setattr__(self, name, _plain_float(getattr(self, name)))
        if self.loss_scale is not None:
            if hasattr(self.loss_scale, "__len__") or getattr(self.loss_scale, "ndim", 0):
                values = tuple(_plain_float(v) for v in np.ravel(self.loss_scale))
                object.__setattr__(self, "loss_scale", values)
            else:
                object.__setattr__(self, "loss_scale", _plain_float(self.loss_scale))
        check_positive_int("num_steps", self.num_steps)
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        scales = self.loss_scale if isinstance(self.loss_scale, tuple) else (self.loss_scale,)
        for scale in scales:
            if scale is not None:
                check_positive_float("loss_scale", scale)
        if isinstance(self.loss_scale, tuple) and self.objective != "paper":
            raise ValueError("a per-coordinate loss_scale needs objective='paper'")
        check_nonnegative_float("burn_in_weight", self.burn_in_weight)
        check_positive_float("learning_rate", self.learning_rate)
        check_nonnegative_int("learning_rate_warmup_steps", self.learning_rate_warmup_steps)
        check_positive_int("decay_steps", self.decay_steps)
        if not (_is_number(self.decay_rate) and 0 < self.decay_rate <= 1):
            raise ValueError(f"decay_rate must be in (0, 1], got {self.decay_rate!r}")
        if self.optimizer is not None and not isinstance(self.optimizer, optax.GradientTransformation):
            raise TypeError(
                f"optimizer must be an optax.GradientTransformation, got {type(self.optimizer).__name__}"
            )
        if self.max_grad_norm is not None:
            check_positive_float("max_grad_norm", self.max_grad_norm)
        if self.dense_mass not in (True, False, "auto"):
            raise ValueError(f"dense_mass must be True, False or 'auto', got {self.dense_mass!r}")
        for name in ("warm_start", "keep_best", "progress_bar", "adapt_num_leapfrog_steps"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        check_positive_int("num_warm_start_steps", self.num_warm_start_steps)
        if self.warm_start and self.num_warm_start_steps < 16:
            raise ValueError(f"num_warm_start_steps must be at least 16, got {self.num_warm_start_steps}")
        if not (_is_number(self.target_acceptance_rate) and 0 < self.target_acceptance_rate < 1):
            raise ValueError(
                "target_acceptance_rate must be in (0, 1) (0.6-0.9 is usual), "
                f"got {self.target_acceptance_rate!r}"
            )
        if self.early_stopping_patience is not None:
            check_positive_int("early_stopping_patience", self.early_stopping_patience)
        check_nonnegative_float("early_stopping_min_gain", self.early_stopping_min_gain)
        check_positive_int("chunk_size", self.chunk_size)
        check_positive_int("max_consecutive_failures", self.max_consecutive_failures)
        check_positive_int("checkpoint_every", self.checkpoint_every)
        if self.checkpoint_path is not None:
            _check_checkpoint_path(self.checkpoint_path)
        for name in ("initial_distribution", "temperature_schedule"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise TypeError(f"{name} must be callable or None, got {value!r}")

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some options changed (checked like a new config)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(f"unknown training option(s) {sorted(unknown)}; see TrainConfig")
        return dataclasses.replace(self, **changes)

    def uses_dense_mass(self, dim: int) -> bool:
        """Whether the warm start estimates a dense preconditioner for a ``dim``-dimensional target."""
        return dim <= DENSE_MASS_MAX_DIM if self.dense_mass == "auto" else self.dense_mass

    @property
    def resolved_loss_scale(self) -> float | tuple[float, ...]:
        """λ² with the objective's default filled in."""
        if self.loss_scale is not None:
            return self.loss_scale
        return 1.0 if self.objective == "moments" else 0.1


def build_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """The optimizer of a config, wrapped so that a non-finite update is skipped.

    The default is Adam with the config's learning rate (linear warm-up, then staircase decay);
    ``max_grad_norm`` adds global-norm clipping in front; ``optax.apply_if_finite`` around the whole
    skips an update whose gradient is not finite and counts it (``notfinite_count``). Equal options
    return the very same object, so the compiled training step is reused.
    """
    return _build_optimizer(
        config.optimizer,
        config.learning_rate,
        config.learning_rate_warmup_steps,
        config.decay_steps,
        config.decay_rate,
        config.max_grad_norm,
    )


@functools.lru_cache(maxsize=64)
def _build_optimizer(optimizer, learning_rate, warmup_steps, decay_steps, decay_rate, max_grad_norm):
    if optimizer is None:
        decay = optax.exponential_decay(learning_rate, decay_steps, decay_rate, staircase=True)
        if warmup_steps:
            warmup = optax.linear_schedule(0.0, learning_rate, warmup_steps)
            schedule = optax.join_schedules([warmup, decay], [warmup_steps])
        else:
            schedule = decay
        optimizer = optax.adam(schedule)
    if max_grad_norm is not None:
        optimizer = optax.chain(optax.clip_by_global_norm(max_grad_norm), optimizer)
    return optax.apply_if_finite(optimizer, max_consecutive_errors=_NEVER)


_FLOAT_OPTIONS = (
    "burn_in_weight",
    "learning_rate",
    "decay_rate",
    "max_grad_norm",
    "target_acceptance_rate",
    "early_stopping_min_gain",
)


def _plain_float(value):
    """A NumPy/JAX scalar as a Python float; anything else unchanged (and checked later)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def _check_checkpoint_path(path) -> None:
    # Checked here, not after the first chunk of a long training.
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise TypeError(f"checkpoint_path must be None or a file path (str or os.PathLike), got {path!r}")
    folder = Path(path).expanduser().resolve().parent
    if not folder.is_dir():
        raise ValueError(f"checkpoint_path={os.fspath(path)!r}: its folder {str(folder)!r} does not exist")
    if Path(path).expanduser().is_dir():
        raise ValueError(f"checkpoint_path={os.fspath(path)!r} is a folder; give a file path")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
