"""How the paper measures mixing, the standard multi-chain diagnostics, and mode statistics.

All functions take MCMC output in the layout ``samples[step, chain, coordinate]``, i.e. shape
``(num_steps, num_chains, dim)``, the layout that ``jax.lax.scan`` over steps of a ``vmap``-ed
kernel produces. (NumPyro and ArviZ use ``(num_chains, num_steps, ...)``; the conversion is done
here.) They run on the host in float64 NumPy and accept NumPy or JAX arrays.

- [`paper_ess`][l2hmc_ppl.diagnostics.paper_ess], [`autocorrelation`][l2hmc_ppl.diagnostics.autocorrelation],
  [`ess_per_gradient`][l2hmc_ppl.diagnostics.ess_per_gradient]: the paper's ESS per MH step, which
  uses the true mean and covariance of the target (Levy et al. 2018, §5).
- [`standard_ess`][l2hmc_ppl.diagnostics.standard_ess], [`max_rhat`][l2hmc_ppl.diagnostics.max_rhat]:
  ground-truth-free multi-chain diagnostics (bulk ESS, split R-hat).
- [`mode_assignments`][l2hmc_ppl.diagnostics.mode_assignments],
  [`mode_occupancy`][l2hmc_ppl.diagnostics.mode_occupancy],
  [`mode_switches`][l2hmc_ppl.diagnostics.mode_switches],
  [`chains_visiting_all_modes`][l2hmc_ppl.diagnostics.chains_visiting_all_modes]: how chains move
  between the components of a mixture.

References:
    D. Levy, M. D. Hoffman, J. Sohl-Dickstein. *Generalizing Hamiltonian Monte Carlo with Neural
    Networks*. ICLR 2018, arXiv:1711.09268, §5 (ESS) and Fig. 1.
    A. Vehtari, A. Gelman, D. Simpson, B. Carpenter, P.-C. Bürkner. *Rank-normalization, folding,
    and localization: an improved R-hat for assessing convergence of MCMC*. Bayesian Analysis,
    2021 (bulk ESS).
"""

from __future__ import annotations

import numpy as np
from jaxtyping import ArrayLike, Float, Int
from scipy.special import ndtri
from scipy.stats import rankdata

__all__ = [
    "autocorrelation",
    "chains_visiting_all_modes",
    "ess_per_gradient",
    "max_rhat",
    "mode_assignments",
    "mode_occupancy",
    "mode_switches",
    "paper_ess",
    "standard_ess",
]

# Upper bound on the complex FFT buffer of one chunk of series (in elements, 16 bytes each).
_FFT_CHUNK_ELEMENTS = 2**22


def _as_steps_chains_dim(samples) -> np.ndarray:
    """Samples as a float64 array of shape (num_steps, num_chains, dim); 2-d input means dim = 1."""
    samples = np.asarray(samples, dtype=np.float64)
    if samples.ndim == 2:
        samples = samples[:, :, None]
    if samples.ndim != 3:
        raise ValueError(
            "samples must have shape (num_steps, num_chains, dim) (or (num_steps, num_chains)), "
            f"got {samples.shape}"
        )
    return samples


def _trace(covariance, dim: int) -> float:
    """Tr(Σ) from a (dim, dim) covariance, a (dim,) vector of variances, or a scalar variance."""
    covariance = np.asarray(covariance, dtype=np.float64)
    if covariance.ndim == 2:
        if covariance.shape != (dim, dim):
            raise ValueError(f"covariance must have shape ({dim}, {dim}), got {covariance.shape}")
        return float(np.trace(covariance))
    if covariance.ndim == 1:
        if covariance.shape != (dim,):
            raise ValueError(f"variances must have shape ({dim},), got {covariance.shape}")
        return float(np.sum(covariance))
    return float(covariance) * dim


def _next_power_of_two(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def autocorrelation(
    samples: Float[ArrayLike, "num_steps num_chains dim"],
    mean: Float[ArrayLike, " dim"],
    covariance: Float[ArrayLike, "dim dim"],
    max_lag: int | None = None,
) -> Float[np.ndarray, " num_lags"]:
    r"""The paper's autocorrelation curve ρ_t, with the target's true mean and covariance.

    For one chain $x_1, \dots, x_T$, with μ and Σ the true mean and covariance of the target,

    $$\rho_t = \frac{1}{\operatorname{Tr}(\Sigma)\,(T - t)}
      \sum_{\tau=1}^{T-t} (x_\tau - \mu)^\top (x_{\tau+t} - \mu),$$

    averaged over chains. Using the known μ and Σ (instead of sample estimates) makes each ρ_t an
    unbiased estimate of the stationary autocorrelation when the chains start from the target,
    and lets a chain that is stuck away from μ show up as correlation that does not decay. The
    lagged products are computed for all lags at once with zero-padded FFTs.

    Args:
        samples: Draws of shape ``(num_steps, num_chains, dim)`` (a 2-d array is read as
            ``(num_steps, num_chains)`` with dim = 1).
        mean: True mean μ, shape ``(dim,)``.
        covariance: True covariance Σ, shape ``(dim, dim)``, or its diagonal; only Tr(Σ) is used.
        max_lag: Largest lag returned; default ``num_steps − 1``.

    Returns:
        ``rho`` of shape ``(max_lag + 1,)`` with ``rho[t]`` = ρ_t; ``rho[0]`` is the mean squared
        distance to μ over Tr(Σ), close to but not exactly 1.

    References:
        Levy et al., ICLR 2018, §5 and Fig. 1a.
    """
    samples = _as_steps_chains_dim(samples)
    num_steps, num_chains, dim = samples.shape
    max_lag = num_steps - 1 if max_lag is None else int(max_lag)
    if not 0 <= max_lag < num_steps:
        raise ValueError(f"max_lag must be in [0, {num_steps - 1}], got {max_lag}")
    mean = np.broadcast_to(np.asarray(mean, dtype=np.float64), (dim,))
    trace = _trace(covariance, dim)

    # One series per (chain, coordinate); zero padding to ≥ 2T makes the circular correlation of
    # the FFT equal to the linear one for every lag.
    series = (samples - mean).reshape(num_steps, num_chains * dim).T
    fft_length = _next_power_of_two(2 * num_steps)
    chunk = max(1, _FFT_CHUNK_ELEMENTS // fft_length)
    lagged_sums = np.zeros(num_steps)
    for start in range(0, series.shape[0], chunk):
        spectrum = np.fft.rfft(series[start : start + chunk], n=fft_length, axis=-1)
        power = spectrum.real**2 + spectrum.imag**2
        lagged_sums += np.fft.irfft(power, n=fft_length, axis=-1)[:, :num_steps].sum(axis=0)
    lags = np.arange(max_lag + 1)
    return lagged_sums[: max_lag + 1] / (num_chains * (num_steps - lags) * trace)


def paper_ess(
    samples: Float[ArrayLike, "num_steps num_chains dim"],
    mean: Float[ArrayLike, " dim"],
    covariance: Float[ArrayLike, "dim dim"],
    *,
    threshold: float = 0.05,
) -> float:
    r"""Effective sample size per MH step, as the paper computes it.

    With ρ_t from [`autocorrelation`][l2hmc_ppl.diagnostics.autocorrelation] (true μ and Σ,
    averaged over chains),

    $$\text{ESS} = \frac{1}{1 + 2 \sum_{t=1}^{t^* - 1} \rho_t}, \qquad
      t^* = \min\{t \ge 1 : \rho_t < \text{threshold}\},$$

    i.e. the sum stops at the first lag whose autocorrelation falls below ``threshold`` (that lag
    is not included; if none does, all lags up to T − 1 are summed). The result is a fraction of
    the number of steps: independent draws give 1 (ρ_1 ≈ 0 < threshold), an AR(1) chain with
    coefficient φ gives about (1 − φ)/(1 + φ) (slightly more, because of the truncation). Divide
    by the number of gradient evaluations per step with
    [`ess_per_gradient`][l2hmc_ppl.diagnostics.ess_per_gradient].

    Protocol of the paper: 200 chains started from exact draws of the target, 2000 MH steps.

    Args:
        samples: Draws of shape ``(num_steps, num_chains, dim)``.
        mean: True mean μ of the target, shape ``(dim,)``.
        covariance: True covariance Σ, shape ``(dim, dim)`` (or its diagonal).
        threshold: Truncation level of the autocorrelation sum (0.05 in the paper).

    Returns:
        ESS per MH step (a float; NaN if the samples contain NaN).

    References:
        Levy et al., ICLR 2018, §5 and the table of Fig. 1c, which computes ESS as described by
        M. D. Hoffman, A. Gelman. *The No-U-Turn Sampler*. JMLR 15, 2014 (true moments, sum
        truncated at the first autocorrelation below 0.05).
    """
    rho = autocorrelation(samples, mean, covariance)
    if np.isnan(rho).any():
        return float("nan")
    below = np.flatnonzero(rho[1:] < threshold)
    cutoff = below[0] + 1 if below.size else rho.shape[0]  # first lag below: excluded
    return float(1.0 / (1.0 + 2.0 * np.sum(rho[1:cutoff])))


def ess_per_gradient(ess_per_step: float, num_gradients_per_step: int) -> float:
    """Convert ESS per MH step into ESS per gradient evaluation.

    ESS per gradient = ESS per step / M, with M the gradient evaluations per step (the number of
    leapfrog steps: the paper counts M gradients per MH step).

    Args:
        ess_per_step: ESS per MH step, e.g. from [`paper_ess`][l2hmc_ppl.diagnostics.paper_ess].
        num_gradients_per_step: Gradient evaluations per MH step (M).

    Returns:
        ESS per gradient evaluation.
    """
    if num_gradients_per_step <= 0:
        raise ValueError(f"num_gradients_per_step must be positive, got {num_gradients_per_step}")
    return float(ess_per_step) / num_gradients_per_step


def _numpyro_diagnostics():
    """NumPyro's ESS and R-hat (imported on use: ``import l2hmc_ppl`` does not load NumPyro)."""
    try:
        import numpyro.diagnostics
    except ImportError as error:
        raise ImportError("standard_ess and max_rhat use NumPyro: pip install l2hmc_ppl[numpyro]") from error
    return numpyro.diagnostics


def _chains_first(samples) -> np.ndarray:
    """(num_steps, num_chains, dim) → NumPyro/ArviZ layout (num_chains, num_steps, dim)."""
    return np.swapaxes(_as_steps_chains_dim(samples), 0, 1)


def _bulk_ess(chains_first: np.ndarray) -> np.ndarray:
    """Bulk ESS per coordinate: NumPyro's ESS of rank-normalised split chains (Vehtari 2021)."""
    num_chains, num_steps, dim = chains_first.shape
    half = num_steps // 2
    split = np.concatenate([chains_first[:, :half], chains_first[:, -half:]], axis=0)
    pooled = split.reshape(-1, dim)
    ranks = rankdata(pooled, axis=0)  # average ranks for ties
    z_scores = ndtri((ranks - 0.375) / (pooled.shape[0] + 0.25)).reshape(split.shape)
    return np.asarray(_numpyro_diagnostics().effective_sample_size(z_scores))


def standard_ess(samples: Float[ArrayLike, "num_steps num_chains dim"]) -> float:
    """The standard multi-chain ESS per draw: the minimum over coordinates of the bulk ESS.

    Bulk ESS (Vehtari et al. 2021) is the ESS of the rank-normalised, split chains: each chain is
    cut into halves, all draws of a coordinate are replaced by the normal scores
    Φ⁻¹((rank − 3/8)/(S + 1/4)) of their pooled ranks, and the multi-chain ESS
    (`numpyro.diagnostics.effective_sample_size`, Geyer's initial monotone sequence) is computed
    on the result. It needs no ground truth. The minimum over coordinates is divided by the total
    number of draws, num_steps × num_chains, so that independent draws give about 1, comparable
    with [`paper_ess`][l2hmc_ppl.diagnostics.paper_ess].

    Args:
        samples: Draws of shape ``(num_steps, num_chains, dim)``; at least 4 steps.

    Returns:
        min over coordinates of bulk ESS / (num_steps × num_chains).
    """
    chains_first = _chains_first(samples)
    if chains_first.shape[1] < 4:
        raise ValueError("standard_ess needs at least 4 steps per chain")
    ess = _bulk_ess(chains_first)
    return float(np.min(ess) / (chains_first.shape[0] * chains_first.shape[1]))


def max_rhat(samples: Float[ArrayLike, "num_steps num_chains dim"]) -> float:
    """The largest split R-hat over coordinates (`numpyro.diagnostics.split_gelman_rubin`).

    Each chain is split into halves and R̂ = √(V̂ / W) compares the pooled variance estimate V̂
    with the mean within-chain variance W; values near 1 mean the chains agree.

    Args:
        samples: Draws of shape ``(num_steps, num_chains, dim)``; at least 4 steps.

    Returns:
        max over coordinates of split R-hat.
    """
    chains_first = _chains_first(samples)
    if chains_first.shape[1] < 4:
        raise ValueError("max_rhat needs at least 4 steps per chain")
    return float(np.max(_numpyro_diagnostics().split_gelman_rubin(chains_first)))


def mode_assignments(
    samples: Float[ArrayLike, "... dim"], modes: Float[ArrayLike, "num_modes dim"]
) -> Int[np.ndarray, "..."]:
    """Index of the nearest mode centre (Euclidean) for every draw.

    a = argminₖ ‖x − μₖ‖², evaluated over the last axis of ``samples``.

    Args:
        samples: Draws of shape ``(..., dim)``, e.g. ``(num_steps, num_chains, dim)``.
        modes: Mode centres μₖ of shape ``(num_modes, dim)`` (e.g. the ``modes`` of a
            [`Target`][l2hmc_ppl.targets.Target]).

    Returns:
        Integer array of shape ``samples.shape[:-1]``.
    """
    samples = np.asarray(samples, dtype=np.float64)
    modes = np.asarray(modes, dtype=np.float64)
    if modes.ndim != 2 or samples.shape[-1] != modes.shape[1]:
        raise ValueError(f"modes must have shape (num_modes, {samples.shape[-1]}), got {modes.shape}")
    squared_distances = np.sum((samples[..., None, :] - modes) ** 2, axis=-1)
    return np.argmin(squared_distances, axis=-1)


def _assignments_steps_chains(samples, modes) -> np.ndarray:
    assignments = mode_assignments(samples, modes)
    if assignments.ndim != 2:
        raise ValueError("samples must have shape (num_steps, num_chains, dim)")
    return assignments


def mode_occupancy(
    samples: Float[ArrayLike, "num_steps num_chains dim"],
    modes: Float[ArrayLike, "num_modes dim"],
) -> Float[np.ndarray, "num_chains num_modes"]:
    r"""Fraction of its steps each chain spends nearest to each mode.

    $\text{occupancy}[c, k] = \frac{1}{T} \sum_t \mathbb{1}[a_{t,c} = k]$, with a from
    [`mode_assignments`][l2hmc_ppl.diagnostics.mode_assignments].

    Args:
        samples: Draws of shape ``(num_steps, num_chains, dim)``.
        modes: Mode centres of shape ``(num_modes, dim)``.

    Returns:
        Array of shape ``(num_chains, num_modes)``; each row sums to 1.
    """
    assignments = _assignments_steps_chains(samples, modes)
    num_modes = np.asarray(modes).shape[0]
    one_hot = assignments[..., None] == np.arange(num_modes)
    return one_hot.mean(axis=0)


def mode_switches(
    samples: Float[ArrayLike, "num_steps num_chains dim"],
    modes: Float[ArrayLike, "num_modes dim"],
) -> Int[np.ndarray, " num_chains"]:
    r"""Number of times each chain changes its nearest mode between consecutive steps.

    $\text{switches}[c] = \sum_{t=2}^{T} \mathbb{1}[a_{t,c} \ne a_{t-1,c}]$.

    Args:
        samples: Draws of shape ``(num_steps, num_chains, dim)``.
        modes: Mode centres of shape ``(num_modes, dim)``.

    Returns:
        Integer array of shape ``(num_chains,)``.
    """
    assignments = _assignments_steps_chains(samples, modes)
    return np.sum(assignments[1:] != assignments[:-1], axis=0)


def chains_visiting_all_modes(
    samples: Float[ArrayLike, "num_steps num_chains dim"],
    modes: Float[ArrayLike, "num_modes dim"],
) -> int:
    """Number of chains that are nearest to every mode at least once.

    Args:
        samples: Draws of shape ``(num_steps, num_chains, dim)``.
        modes: Mode centres of shape ``(num_modes, dim)``.

    Returns:
        The count of chains whose [`mode_occupancy`][l2hmc_ppl.diagnostics.mode_occupancy] is
        positive for all modes.
    """
    return int(np.sum(np.all(mode_occupancy(samples, modes) > 0, axis=1)))
