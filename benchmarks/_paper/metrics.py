"""Mixing metrics of one sampler run: the paper's ESS, the standard ESS, and mode statistics.

- ``ess_per_step``: :func:`l2hmc_ppl.diagnostics.paper_ess` with the target's true mean and
  covariance (Levy et al. 2018 §5): ESS = 1 / (1 + 2 Σ_{t ≥ 1} ρ_t), truncated at the first ρ_t < 0.05. By
  construction it is at most 1 per step (anti-correlated chains are not rewarded).
- ``ess_per_gradient``: ``ess_per_step`` divided by the mean number of gradient evaluations per
  transition (M for HMC and L2HMC, the tree size for NUTS, the jittered length for ChEES).
- ``second_moment_ess_per_step``: the paper's estimator applied to the squared deviations
  y = (x − μ)² (true mean diag Σ, variance of y pooled over all draws). The paper's ESS only sees the
  first moment: a chain that flips x → −x (ρ₁ ≈ −1, ρ₂ ≈ +1) scores the maximal 1 per step although
  |x| hardly moves; the second-moment ESS exposes it.
- ``robust_ess_per_gradient``: min(first, second-moment ESS per step) / gradients per step.
- ``bulk_ess_per_step``: :func:`l2hmc_ppl.diagnostics.standard_ess`, the minimum over coordinates of
  the bulk ESS per draw (no ground truth), and ``max_rhat``.
- On mixtures (`mode_statistics`): chains that visit every mode, mode switches per chain, counted
  with :mod:`l2hmc_ppl.diagnostics` on the cores of the modes: a chain visits a mode when it enters
  the mode's core, the ball of radius (smallest distance between mode centres) / 4 around the
  centre, and switches when it enters the core of another mode than the last one it was in.
  Assigning every draw to its nearest centre instead would count a chain of the wide component of
  ``mog2_unequal`` (sd 1.7 at distance 5 from the midpoint) as visiting the narrow one whenever it
  strays past the midpoint.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from benchmarks._common import SamplerRun
from l2hmc_ppl.diagnostics import (
    autocorrelation,
    chains_visiting_all_modes,
    ess_per_gradient,
    max_rhat,
    mode_assignments,
    mode_switches,
    paper_ess,
    standard_ess,
)
from l2hmc_ppl.targets import Target

__all__ = ["core_radius", "evaluate_run", "last_core_positions", "mode_statistics"]


def core_radius(modes: np.ndarray) -> float:
    """The radius of the mode cores: a quarter of the smallest distance between two mode centres."""
    modes = np.asarray(modes, np.float64)
    separation = np.sqrt(((modes[:, None] - modes[None]) ** 2).sum(-1))
    return float(separation[~np.eye(modes.shape[0], dtype=bool)].min() / 4.0)


def last_core_positions(samples: np.ndarray, modes: np.ndarray) -> np.ndarray:
    """Every draw moved to the centre of the last mode core its chain entered.

    Before a chain's first entry its draws go to the first core it enters; a chain that never
    enters one stays at the first centre. The nearest-mode statistics of
    :mod:`l2hmc_ppl.diagnostics` on these positions are the core statistics of the draws: a mode
    is visited when its core is entered, and a switch is the entry into another core.

    Args:
        samples: draws of shape ``(num_steps, num_chains, dim)``.
        modes: mode centres of shape ``(num_modes, dim)``.

    Returns:
        Positions of the same shape as ``samples``, each a mode centre.
    """
    samples = np.asarray(samples, np.float64)
    modes = np.asarray(modes, np.float64)
    nearest = mode_assignments(samples, modes)  # (steps, chains)
    in_core = np.linalg.norm(samples - modes[nearest], axis=-1) < core_radius(modes)
    steps = np.arange(samples.shape[0])[:, None]
    last_entry = np.maximum.accumulate(np.where(in_core, steps, -1), axis=0)
    first_entry = np.argmax(in_core, axis=0)  # 0 for a chain that never enters a core
    chains = np.arange(samples.shape[1])
    first_core = np.where(in_core.any(axis=0), nearest[first_entry, chains], 0)
    core = np.where(last_entry >= 0, nearest[np.maximum(last_entry, 0), chains], first_core)
    return modes[core]


def mode_statistics(samples: np.ndarray, modes: np.ndarray) -> dict[str, Any]:
    """Mode visits and switches of each chain, counted on the cores of the modes (module docstring).

    Args:
        samples: draws of shape ``(num_steps, num_chains, dim)``.
        modes: mode centres of shape ``(num_modes, dim)``, at least two.

    Returns:
        ``num_modes``, ``core_radius``, ``chains_visiting_all_modes``, ``mean_switches_per_chain``,
        ``min_switches_per_chain`` and ``chains_switching`` (chains with at least one switch).
    """
    modes = np.asarray(modes, np.float64)
    positions = last_core_positions(samples, modes)
    switches = mode_switches(positions, modes)
    return {
        "num_modes": int(modes.shape[0]),
        "core_radius": core_radius(modes),
        "chains_visiting_all_modes": chains_visiting_all_modes(positions, modes),
        "mean_switches_per_chain": float(switches.mean()),
        "min_switches_per_chain": int(switches.min()),
        "chains_switching": int((switches > 0).sum()),
    }


def _second_moment_ess(samples: np.ndarray, target: Target) -> float:
    """The paper's ESS of y = (x − μ)², whose true mean is diag Σ; Tr Var(y) is pooled from the draws."""
    squared = (np.asarray(samples, np.float64) - target.mean) ** 2
    variances = squared.reshape(-1, squared.shape[-1]).var(axis=0)
    return paper_ess(squared, np.diag(target.covariance), variances)


def evaluate_run(run: SamplerRun, target: Target, *, max_lag_gradients: int) -> dict[str, Any]:
    """Mixing metrics and timings of ``run`` as a JSON-ready dict.

    Args:
        run: the sampler's draws ``(num_steps, num_chains, dim)`` and bookkeeping.
        target: the target (its true mean and covariance enter the paper's ESS).
        max_lag_gradients: the autocorrelation curve is kept up to this many gradient evaluations.

    Returns:
        A dict with ``ess_per_step``, ``ess_per_gradient``, ``second_moment_ess_per_step``,
        ``robust_ess_per_gradient``, ``bulk_ess_per_step``, ``bulk_ess_per_gradient``,
        ``max_rhat``, ``gradients_per_step``, ``adaptation_gradients``, ``acceptance_rate``,
        ``timing`` (adaptation and sampling), ``autocorrelation`` (``lags_in_gradients``, ``rho``),
        the mode statistics on mixtures, and ``details``.
    """
    samples = run.samples
    num_steps, num_chains, _ = samples.shape
    finite = bool(np.all(np.isfinite(samples)))
    ess_step = paper_ess(samples, target.mean, target.covariance) if finite else float("nan")
    second = _second_moment_ess(samples, target) if finite else float("nan")
    bulk = standard_ess(samples) if finite else float("nan")
    max_lag = min(num_steps - 1, max(1, math.ceil(max_lag_gradients / max(run.gradients_per_step, 1e-12))))
    rho = autocorrelation(samples, target.mean, target.covariance, max_lag=max_lag) if finite else None
    result: dict[str, Any] = {
        "num_chains": num_chains,
        "num_steps": num_steps,
        "gradients_per_step": run.gradients_per_step,
        "adaptation_gradients": run.adaptation_gradients,
        "ess_per_step": ess_step,
        "ess_per_gradient": ess_per_gradient(ess_step, run.gradients_per_step),
        "second_moment_ess_per_step": second,
        "robust_ess_per_gradient": min(ess_step, second) / run.gradients_per_step,
        "bulk_ess_per_step": bulk,
        "bulk_ess_per_gradient": bulk / run.gradients_per_step,
        "max_rhat": max_rhat(samples) if finite else float("nan"),
        "acceptance_rate": run.acceptance_rate,
        "timing": {"adaptation": run.adaptation.as_dict(), "sampling": run.sampling.as_dict()},
        "autocorrelation": None
        if rho is None
        else {
            "lags_in_gradients": (np.arange(rho.shape[0]) * run.gradients_per_step).tolist(),
            "rho": rho.tolist(),
        },
        "details": dict(run.details),
    }
    if target.modes is not None and finite:
        result["modes"] = mode_statistics(samples, target.modes)
    return result
