"""The paper's benchmark targets, with their exact moments and exact samplers.

Every target is a [`Target`][l2hmc_ppl.targets.Target]: a log density in the BlackJAX convention
(``logdensity_fn(x) = −U(x)``, log p up to an additive constant), its true mean and covariance
(the ground truth that [`paper_ess`][l2hmc_ppl.diagnostics.paper_ess] needs), and, where one
exists, an exact sampler (the paper's evaluation protocol, Levy et al. 2018 §5, starts its chains
from exact draws).

| name | density | mean, covariance | sampler |
|---|---|---|---|
| `icg` | N(0, diag(logspace(−2, 2, 50))) | closed form | exact |
| `scg` | N(0, R diag(100, 0.01) Rᵀ), R = rotation by π/4 | closed form | exact |
| `scg_notebook` | N(0, R diag(100, 0.1) Rᵀ) (released notebook) | closed form | exact |
| `rough_well` | U = ½xᵀx + η Σᵢ cos(xᵢ/η), η = 10⁻² | quadrature | inverse CDF on a grid |
| `mog` | ½N((−2, 0), 0.1 I) + ½N((2, 0), 0.1 I) | closed form | exact |
| `ring` | U = ((‖x‖ − 2)/0.4)² | quadrature | inverse CDF on a grid |
| `ring5` | U = minᵢ ((‖x‖ − i)/0.2)², i = 1..5 | quadrature | inverse CDF on a grid |
| `mog2` | ½N((5, 0), 0.25 I) + ½N((−5, 0), 0.25 I) | closed form | exact |
| `mog6` | (1/6) Σₖ N(5(cos kπ/3, sin kπ/3), 0.25 I) | closed form | exact |
| `mog2_unequal` | ½N((5, 0), 3 I) + ½N((−5, 0), 0.05 I) | closed form | exact |
| `german_credit` | Bayesian logistic regression, 25 coefficients | reference file | none |

All log densities are pure JAX, work in float32 and float64 (constants are cast to the dtype of
``x``), and can be jitted, vmapped and differentiated (twice: the L2HMC loss differentiates
through ∇U). Mixtures use ``logsumexp``. Moments are float64 NumPy arrays computed once, in closed
form or by quadrature on a fine grid, so they are exact to far below Monte Carlo error.

Grid samplers (rough well, rings) invert the survival function of a one-dimensional density —
each coordinate of the rough well (the potential separates) or the radius of a ring (the angle is
uniform) — tabulated by the trapezoid rule on a fine grid and interpolated linearly in its
logarithm. They are exact up to the grid discretisation (moment errors of order h², below 10⁻⁶)
and the resolution of the uniform draws (the extreme tail beyond probability 2⁻²⁴ in float32,
2⁻⁵³ in float64, is cut off).

References:
    D. Levy, M. D. Hoffman, J. Sohl-Dickstein. *Generalizing Hamiltonian Monte Carlo with Neural
    Networks*. ICLR 2018, arXiv:1711.09268, §5.1 (the toy targets).
    J. Song, S. Zhao, S. Ermon. *A-NICE-MC: Adversarial Training for MCMC*. NeurIPS 2017
    ([`ring`][l2hmc_ppl.targets.ring], [`ring5`][l2hmc_ppl.targets.ring5],
    [`mog2`][l2hmc_ppl.targets.mog2], [`mog6`][l2hmc_ppl.targets.mog6]).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

__all__ = [
    "GERMAN_CREDIT_ENV_VAR",
    "GERMAN_CREDIT_FILES",
    "TARGET_NAMES",
    "Target",
    "german_credit",
    "get_target",
    "icg",
    "mog",
    "mog2",
    "mog2_unequal",
    "mog6",
    "resolve_german_credit_dir",
    "ring",
    "ring5",
    "rough_well",
    "scg",
    "scg_notebook",
]

LogdensityFn = Callable[[Float[Array, " dim"]], Float[Array, ""]]
SampleFn = Callable[[PRNGKeyArray, int], Float[Array, "num_samples dim"]]

_PAPER = "Levy, Hoffman & Sohl-Dickstein, ICLR 2018"
_ANICE = "A-NICE-MC (Song, Zhao & Ermon, NeurIPS 2017)"

# Grid samplers keep the tabulated region where log p is within this of its maximum: beyond it
# the mass (< e⁻⁸⁰) is far below what a float64 uniform draw can resolve.
_LOG_DENSITY_FLOOR = 80.0


@dataclass(frozen=True, eq=False)
class Target:
    """A target distribution: log density, ground-truth moments and an exact sampler.

    Attributes:
        name: Short name, one of [`TARGET_NAMES`][l2hmc_ppl.targets.TARGET_NAMES] for the built-in
            targets.
        dim: Dimension n of x.
        logdensity_fn: x of shape ``(dim,)`` → log p(x) = −U(x) up to an additive constant (the
            BlackJAX convention). Works in float32 and float64 and under ``jit``/``vmap``/``grad``.
        mean: True mean μ, float64 NumPy array of shape ``(dim,)``.
        covariance: True covariance Σ, float64 NumPy array of shape ``(dim, dim)``.
        sample: ``sample(rng_key, num_samples)`` → exact draws of shape ``(num_samples, dim)`` in
            JAX's default float dtype (jitted, ``num_samples`` static), or ``None`` where exact
            sampling is not available.
        modes: Mode centres of shape ``(num_modes, dim)`` for mixtures, else ``None``.
        description: The density formula, its source and the variant it implements.
    """

    name: str
    dim: int
    logdensity_fn: LogdensityFn
    mean: np.ndarray
    covariance: np.ndarray
    sample: SampleFn | None
    modes: np.ndarray | None
    description: str


# --------------------------------------------------------------------------------------------------
# Helpers


def _as_float(x) -> Array:
    """``x`` as a JAX array with a floating dtype (integers become the default float dtype)."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jax.dtypes.canonicalize_dtype(jnp.float64))
    return x


def _frozen(array) -> np.ndarray:
    """A read-only float64 copy, so a Target's moments cannot be changed by accident."""
    array = np.array(array, dtype=np.float64)
    array.setflags(write=False)
    return array


def _default_float():
    """JAX's default float dtype: float64 with ``jax_enable_x64``, else float32."""
    return jax.dtypes.canonicalize_dtype(jnp.float64)


def _rotation(angle: float) -> np.ndarray:
    return np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])


def _safe_norm(x: Array) -> Array:
    """‖x‖ with a finite (zero) gradient at the origin, where ‖·‖ is not differentiable."""
    squared = jnp.sum(x**2, axis=-1)
    positive = squared > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, squared, 1.0)), 0.0)


# --------------------------------------------------------------------------------------------------
# Gaussians and Gaussian mixtures


def _gaussian_mixture(
    name: str,
    weights: Sequence[float],
    means: np.ndarray,
    covariances: np.ndarray,
    description: str,
    modes: np.ndarray | None,
) -> Target:
    """Build a normalised Gaussian mixture Σₖ wₖ N(μₖ, Σₖ) (one component: a Gaussian).

    Each component is evaluated through its whitening map zₖ = Λₖ^{-1/2} Qₖᵀ(x − μₖ), where
    Σₖ = Qₖ Λₖ Qₖᵀ: this avoids the cancellation of xᵀΣ⁻¹x on strongly correlated Gaussians in
    float32.
    """
    weights = np.asarray(weights, dtype=np.float64)
    weights = weights / weights.sum()
    means = np.asarray(means, dtype=np.float64)
    covariances = np.asarray(covariances, dtype=np.float64)
    num_components, dim = means.shape
    eigenvalues, eigenvectors = np.linalg.eigh(covariances)  # (K, n), (K, n, n)
    whitening = eigenvectors.transpose(0, 2, 1) / np.sqrt(eigenvalues)[:, :, None]
    colouring = eigenvectors * np.sqrt(eigenvalues)[:, None, :]  # Σₖ = Lₖ Lₖᵀ
    log_normalisers = (
        np.log(weights) - 0.5 * np.sum(np.log(eigenvalues), axis=1) - 0.5 * dim * np.log(2 * np.pi)
    )

    def logdensity_fn(x: Float[Array, " dim"]) -> Float[Array, ""]:
        x = _as_float(x)
        dtype = x.dtype
        centred = x - jnp.asarray(means, dtype)  # (K, n)
        z = jnp.einsum("kij,kj->ki", jnp.asarray(whitening, dtype), centred)
        log_terms = jnp.asarray(log_normalisers, dtype) - 0.5 * jnp.sum(z**2, axis=-1)
        return jax.nn.logsumexp(log_terms)

    def sample(rng_key: PRNGKeyArray, num_samples: int) -> Float[Array, "num_samples dim"]:
        key_component, key_noise = jax.random.split(rng_key)
        dtype = _default_float()
        component = jax.random.categorical(
            key_component, jnp.asarray(np.log(weights), dtype), shape=(num_samples,)
        )
        noise = jax.random.normal(key_noise, (num_samples, dim), dtype)
        # Colour the noise with every component's factor (K is small), then keep the drawn one.
        scaled = jnp.einsum("kij,sj->ski", jnp.asarray(colouring, dtype), noise)
        scaled = jnp.take_along_axis(scaled, component[:, None, None], axis=1)[:, 0]
        return jnp.asarray(means, dtype)[component] + scaled

    mean = np.einsum("k,ki->i", weights, means)
    second_moment = np.einsum("k,kij->ij", weights, covariances + np.einsum("ki,kj->kij", means, means))
    covariance = second_moment - np.outer(mean, mean)
    covariance = 0.5 * (covariance + covariance.T)  # exactly symmetric despite rounding
    return Target(
        name=name,
        dim=dim,
        logdensity_fn=logdensity_fn,
        mean=_frozen(mean),
        covariance=_frozen(covariance),
        sample=jax.jit(sample, static_argnums=1),
        modes=None if modes is None else _frozen(modes),
        description=description,
    )


def _isotropic_mixture(name, weights, means, variances, description) -> Target:
    means = np.asarray(means, dtype=np.float64)
    dim = means.shape[1]
    covariances = np.asarray(variances, dtype=np.float64)[:, None, None] * np.eye(dim)
    return _gaussian_mixture(name, weights, means, covariances, description, modes=means)


def icg() -> Target:
    r"""The 50-d ill-conditioned Gaussian (ICG) of the paper.

    p(x) = N(x; 0, diag(σ²)), σ² = logspace(−2, 2, 50), i.e. variances 10⁻² … 10² (condition
    number 10⁴):

    $$\log p(x) = -\tfrac12 \sum_i x_i^2 / \sigma_i^2 - \tfrac12 \sum_i \log(2\pi\sigma_i^2).$$

    Returns:
        The target, with exact moments and sampler.

    References:
        Levy et al., ICLR 2018, §5.1 and Appendix (n_h = 100, λ_b = 0).
    """
    variances = np.logspace(-2.0, 2.0, 50)
    return _gaussian_mixture(
        "icg",
        [1.0],
        np.zeros((1, 50)),
        np.diag(variances)[None],
        "50-d ill-conditioned Gaussian N(0, diag(logspace(-2, 2, 50))) (variances 1e-2 .. 1e2), "
        f"{_PAPER}, Fig. 1.",
        modes=None,
    )


def _correlated_gaussian(name: str, small_variance: float, description: str) -> Target:
    rotation = _rotation(np.pi / 4)
    covariance = rotation @ np.diag([100.0, small_variance]) @ rotation.T
    return _gaussian_mixture(name, [1.0], np.zeros((1, 2)), covariance[None], description, None)


def scg() -> Target:
    r"""The 2-d strongly correlated Gaussian (SCG) as defined in the paper's text.

    p(x) = N(x; 0, Σ) with Σ = R diag(100, 10⁻²) Rᵀ and R the rotation by π/4:

    $$\log p(x) = -\tfrac12 x^\top \Sigma^{-1} x - \tfrac12 \log\det(2\pi\Sigma).$$

    The released notebook used 0.1 for the small variance: see
    [`scg_notebook`][l2hmc_ppl.targets.scg_notebook].

    Returns:
        The target, with exact moments and sampler.

    References:
        Levy et al., ICLR 2018, §5.1 and Appendix (λ_b = 0).
    """
    return _correlated_gaussian(
        "scg",
        0.01,
        "2-d strongly correlated Gaussian N(0, R diag(100, 0.01) R^T), R = rotation by pi/4, as in "
        f"the paper's text ({_PAPER}, Fig. 1).",
    )


def scg_notebook() -> Target:
    r"""The SCG variant of the authors' released notebook: small variance 0.1 instead of 0.01.

    p(x) = N(x; 0, Σ) with Σ = R diag(100, 0.1) Rᵀ and R the rotation by π/4:

    $$\log p(x) = -\tfrac12 x^\top \Sigma^{-1} x - \tfrac12 \log\det(2\pi\Sigma).$$

    Returns:
        The target, with exact moments and sampler.

    References:
        Levy et al., ICLR 2018, released code (notebook); the paper's text uses 0.01
        ([`scg`][l2hmc_ppl.targets.scg]).
    """
    return _correlated_gaussian(
        "scg_notebook",
        0.1,
        "2-d strongly correlated Gaussian N(0, R diag(100, 0.1) R^T), R = rotation by pi/4: the "
        "variant of the authors' released notebook (the paper's text, target `scg`, uses 0.01).",
    )


def mog(variance: float = 0.1) -> Target:
    r"""The paper's 2-d mixture of two Gaussians (MoG).

    p(x) = ½ N(x; (−2, 0), s I) + ½ N(x; (2, 0), s I) with s = ``variance``:

    $$\log p(x) = \operatorname{logsumexp}_k \bigl[\log\tfrac12 - \lVert x - \mu_k \rVert^2 / (2s)
      - \log(2\pi s)\bigr].$$

    Mean 0, covariance diag(4 + s, s).

    Args:
        variance: Variance s of each isotropic component (0.1 in the paper).

    Returns:
        The target, with exact moments and sampler; ``modes`` holds the two centres.

    References:
        Levy et al., ICLR 2018, §5.1 and Appendix (λ_b = 1, temperature annealing during training).
    """
    return _isotropic_mixture(
        "mog",
        [0.5, 0.5],
        [[-2.0, 0.0], [2.0, 0.0]],
        [variance, variance],
        f"2-d mixture 0.5 N((-2,0), {variance} I) + 0.5 N((2,0), {variance} I), {_PAPER}, Fig. 1.",
    )


def mog2() -> Target:
    r"""A-NICE-MC's two-component mixture ``mog2``.

    p(x) = ½ N(x; (5, 0), ¼ I) + ½ N(x; (−5, 0), ¼ I):

    $$\log p(x) = \operatorname{logsumexp}_k \bigl[\log\tfrac12 - 2 \lVert x - \mu_k \rVert^2
      - \log(\pi/2)\bigr].$$

    Mean 0, covariance diag(25.25, 0.25) (sd 5.02, 0.5).

    Returns:
        The target, with exact moments and sampler; ``modes`` holds the two centres.

    References:
        Song et al., NeurIPS 2017; used in the comparison figure of Levy et al., ICLR 2018.
    """
    return _isotropic_mixture(
        "mog2",
        [0.5, 0.5],
        [[5.0, 0.0], [-5.0, 0.0]],
        [0.25, 0.25],
        f"2-d mixture 0.5 N((5,0), 0.25 I) + 0.5 N((-5,0), 0.25 I), from {_ANICE}.",
    )


def mog6() -> Target:
    r"""A-NICE-MC's six-component mixture ``mog6``.

    p(x) = (1/6) Σₖ₌₀⁵ N(x; μₖ, ¼ I), μₖ = 5 (cos(kπ/3), sin(kπ/3)):

    $$\log p(x) = \operatorname{logsumexp}_k \bigl[\log\tfrac16 - 2 \lVert x - \mu_k \rVert^2
      - \log(\pi/2)\bigr].$$

    Mean 0, covariance 12.75 I (sd 3.57 per coordinate).

    Returns:
        The target, with exact moments and sampler; ``modes`` holds the six centres.

    References:
        Song et al., NeurIPS 2017; used in the comparison figure of Levy et al., ICLR 2018.
    """
    angles = np.arange(6) * np.pi / 3
    centres = 5.0 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return _isotropic_mixture(
        "mog6",
        np.full(6, 1 / 6),
        centres,
        np.full(6, 0.25),
        f"2-d mixture of six N(mu_k, 0.25 I), mu_k at radius 5 and angles k*60 deg, from {_ANICE}.",
    )


def mog2_unequal() -> Target:
    r"""The mog2 variant with unequal variances of the paper's Fig. 1d.

    p(x) = ½ N(x; (5, 0), 3 I) + ½ N(x; (−5, 0), 0.05 I):

    $$\log p(x) = \operatorname{logsumexp}_k \bigl[\log\tfrac12 - \lVert x - \mu_k \rVert^2 / (2s_k)
      - \log(2\pi s_k)\bigr], \qquad s = (3, 0.05).$$

    The centres are those of [`mog2`][l2hmc_ppl.targets.mog2]; the wide component (variance 3) sits
    at (5, 0), the narrow one (variance 0.05) at (−5, 0). Mean 0, covariance diag(26.525, 1.525).

    Returns:
        The target, with exact moments and sampler; ``modes`` holds the two centres.

    References:
        Levy et al., ICLR 2018, Fig. 1d.
    """
    return _isotropic_mixture(
        "mog2_unequal",
        [0.5, 0.5],
        [[5.0, 0.0], [-5.0, 0.0]],
        [3.0, 0.05],
        "2-d mixture 0.5 N((5,0), 3 I) + 0.5 N((-5,0), 0.05 I): the mog2 centres with unequal, "
        f"isotropic variances (the variant of {_PAPER}, Fig. 1d).",
    )


# --------------------------------------------------------------------------------------------------
# Grid-based exact samplers (rough well, rings)


def _survival_table(grid: np.ndarray, log_density: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tabulate log S(x) = log P(X ≥ x) of a 1-d density on ``grid`` (trapezoid rule).

    Returns ``(log_survival, points)`` ordered by increasing log S (decreasing x), ready for
    ``jnp.interp``, restricted to where the density is within e^{-80} of its maximum.
    """
    keep = log_density >= log_density.max() - _LOG_DENSITY_FLOOR
    first, last = np.flatnonzero(keep)[[0, -1]]
    grid, log_density = grid[first : last + 1], log_density[first : last + 1]
    density = np.exp(log_density - log_density.max())
    cell_mass = 0.5 * (density[1:] + density[:-1]) * np.diff(grid)
    survival = np.cumsum(cell_mass[::-1])[::-1]  # S at grid[:-1], before normalisation
    log_survival = np.log(survival) - np.log(survival[0])
    return log_survival[::-1].copy(), grid[:-1][::-1].copy()


def _inverse_survival(
    rng_key: PRNGKeyArray, shape: tuple[int, ...], table: tuple[np.ndarray, np.ndarray], dtype
) -> Array:
    """Draw from a tabulated 1-d distribution: x = S⁻¹(q), q = 1 − u ∈ (0, 1]."""
    log_survival, points = table
    # q = 1 − u never reaches 0 (u < 1), and small q keep their full relative precision.
    log_q = jnp.log1p(-jax.random.uniform(rng_key, shape, dtype))
    return jnp.interp(log_q, jnp.asarray(log_survival, dtype), jnp.asarray(points, dtype))


def _trapezoid(values: np.ndarray, grid: np.ndarray) -> float:
    return float(np.sum(0.5 * (values[1:] + values[:-1]) * np.diff(grid)))


def rough_well(eta: float = 1e-2) -> Target:
    r"""The paper's 2-d rough well.

    U(x) = ½ xᵀx + η Σᵢ cos(xᵢ/η), p(x) ∝ exp(−U(x)), with η = 10⁻² (a Gaussian with a fine,
    shallow "washboard" of period 2πη). The paper's form is followed; the released code's default
    used cos(x/η²):

    $$\log p(x) = -\tfrac12 \sum_i x_i^2 - \eta \sum_i \cos(x_i/\eta) \quad \text{(unnormalised)}.$$

    U separates, so the coordinates are iid with density ∝ exp(−x²/2 − η cos(x/η)). The mean is 0
    by symmetry; the variance c (covariance c I) is computed by the trapezoid rule on a fine grid
    (spectrally accurate for this smooth, fast-decaying integrand; c = 1 up to $e^{-1/(2\eta^2)}$ for
    η = 10⁻²). Exact draws invert the tabulated survival function of |xᵢ| and attach a random
    sign (see the module docstring for the accuracy of grid samplers).

    Args:
        eta: Amplitude and period scale η of the roughness (10⁻² in the paper).

    Returns:
        The target with moments from quadrature and a grid-based exact sampler.

    References:
        Levy et al., ICLR 2018, §5.1 and Appendix (λ_b = 1).
    """
    if eta <= 0:
        raise ValueError(f"eta must be positive, got {eta}")
    # ≥ 64 points per period 2πη: the trapezoid rule is then exact to rounding (its aliasing error
    # involves the Bessel coefficient I₆₄(η)).
    spacing = min(1e-3, 2 * np.pi * eta / 64)
    half_width = 12.0
    half_grid = np.arange(0.0, half_width + spacing / 2, spacing)
    full_grid = np.concatenate([-half_grid[:0:-1], half_grid])

    def potential_1d(x):
        return 0.5 * x**2 + eta * np.cos(x / eta)

    log_full = -potential_1d(full_grid)
    density = np.exp(log_full - log_full.max())
    variance = _trapezoid(full_grid**2 * density, full_grid) / _trapezoid(density, full_grid)
    table = _survival_table(half_grid, -potential_1d(half_grid))

    def logdensity_fn(x: Float[Array, " dim"]) -> Float[Array, ""]:
        x = _as_float(x)
        eta_ = jnp.asarray(eta, x.dtype)
        return -(0.5 * jnp.sum(x**2) + eta_ * jnp.sum(jnp.cos(x / eta_)))

    def sample(rng_key: PRNGKeyArray, num_samples: int) -> Float[Array, "num_samples dim"]:
        key_magnitude, key_sign = jax.random.split(rng_key)
        dtype = _default_float()
        magnitude = _inverse_survival(key_magnitude, (num_samples, 2), table, dtype)
        sign = jnp.where(jax.random.bernoulli(key_sign, 0.5, (num_samples, 2)), 1.0, -1.0)
        return (sign * magnitude).astype(dtype)

    return Target(
        name="rough_well",
        dim=2,
        logdensity_fn=logdensity_fn,
        mean=_frozen(np.zeros(2)),
        covariance=_frozen(variance * np.eye(2)),
        sample=jax.jit(sample, static_argnums=1),
        modes=None,
        description=(
            f"2-d rough well U(x) = 0.5 x^T x + eta sum_i cos(x_i/eta), eta = {eta:g}, as in the "
            f"paper's text ({_PAPER}, Fig. 1; the released code's default used cos(x/eta^2)). "
            "Covariance by quadrature; exact sampler by inverse CDF of |x_i| on a grid."
        ),
    )


def _radial_target(name: str, radial_potential: Callable, r_max: float, description: str) -> Target:
    """A rotation-invariant 2-d target p(x) ∝ exp(−U(‖x‖)).

    In polar coordinates the radius has density ∝ r exp(−U(r)) and the angle is uniform, so the
    mean is 0 and the covariance is ½ E[r²] I, computed by the trapezoid rule on a fine radial grid.
    """
    spacing = 1e-4  # divides 0.5, so ring5's kinks at r = i + ½ fall on grid points
    grid = np.arange(0.0, r_max + spacing / 2, spacing)
    with np.errstate(divide="ignore"):
        log_radial = np.log(grid) - radial_potential(np.asarray(grid), np)
    density = np.exp(log_radial - log_radial.max())
    variance = 0.5 * _trapezoid(grid**2 * density, grid) / _trapezoid(density, grid)
    table = _survival_table(grid[1:], log_radial[1:])

    def logdensity_fn(x: Float[Array, " dim"]) -> Float[Array, ""]:
        x = _as_float(x)
        return -radial_potential(_safe_norm(x), jnp)

    def sample(rng_key: PRNGKeyArray, num_samples: int) -> Float[Array, "num_samples dim"]:
        key_radius, key_angle = jax.random.split(rng_key)
        dtype = _default_float()
        radius = _inverse_survival(key_radius, (num_samples,), table, dtype)
        angle = jax.random.uniform(key_angle, (num_samples,), dtype, 0.0, 2 * np.pi)
        return radius[:, None] * jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=1)

    return Target(
        name=name,
        dim=2,
        logdensity_fn=logdensity_fn,
        mean=_frozen(np.zeros(2)),
        covariance=_frozen(variance * np.eye(2)),
        sample=jax.jit(sample, static_argnums=1),
        modes=None,
        description=description,
    )


def ring() -> Target:
    r"""A-NICE-MC's ``ring``.

    U(x) = ((‖x‖ − 2)/0.4)², p(x) ∝ exp(−U(x)):

    $$\log p(x) = -\bigl((\lVert x \rVert - 2)/0.4\bigr)^2 \quad \text{(unnormalised)}.$$

    Mean 0, covariance ½ E[r²] I with r = ‖x‖ of density ∝ r exp(−U(r)), by radial quadrature.
    Exact draws: r by inverse CDF on a radial grid, angle uniform.

    Returns:
        The target with moments from quadrature and a grid-based exact sampler.

    References:
        Song et al., NeurIPS 2017; used in the comparison figure of Levy et al., ICLR 2018.
    """

    def radial_potential(r, xp):
        return ((r - 2.0) / 0.4) ** 2

    return _radial_target(
        "ring",
        radial_potential,
        6.0,
        f"2-d ring U(x) = ((|x| - 2)/0.4)^2, from {_ANICE}. Covariance by radial quadrature; exact "
        "sampler by inverse CDF of the radius on a grid and a uniform angle.",
    )


def ring5() -> Target:
    r"""A-NICE-MC's ``ring5``: five concentric rings of radii 1..5.

    U(x) = minᵢ₌₁..₅ ((‖x‖ − i)/0.2)², p(x) ∝ exp(−U(x)):

    $$\log p(x) = -\min_{i} \bigl((\lVert x \rVert - i)/0.2\bigr)^2 \quad \text{(unnormalised)}.$$

    Mean 0, covariance ½ E[r²] I by radial quadrature. Exact draws: r by inverse CDF on a radial
    grid, angle uniform.

    Returns:
        The target with moments from quadrature and a grid-based exact sampler.

    References:
        Song et al., NeurIPS 2017; used in the comparison figure of Levy et al., ICLR 2018.
    """

    def radial_potential(r, xp):
        radii = xp.arange(1.0, 6.0)
        r = xp.asarray(r)
        if xp is jnp:
            radii = radii.astype(r.dtype)
        return xp.min(((r[..., None] - radii) / 0.2) ** 2, axis=-1)

    return _radial_target(
        "ring5",
        radial_potential,
        7.0,
        f"2-d five rings U(x) = min_i ((|x| - i)/0.2)^2, i = 1..5, from {_ANICE}. Covariance by "
        "radial quadrature; exact sampler by inverse CDF of the radius on a grid and a uniform "
        "angle.",
    )


# --------------------------------------------------------------------------------------------------
# German credit


GERMAN_CREDIT_ENV_VAR = "L2HMC_PPL_GERMAN_CREDIT"
"""Environment variable naming the folder that holds the German credit files."""

GERMAN_CREDIT_FILES = ("features.npy", "labels.npy", "reference_moments.json")
"""The files [`german_credit`][l2hmc_ppl.targets.german_credit] reads."""

_GERMAN_CREDIT_HELP = (
    "German credit needs features.npy (1000x24 float), labels.npy (1000 or 1000x1, 0/1) and "
    "reference_moments.json (posterior 'mean' and 'std' of the 25 coefficients). The data are the "
    "UCI Statlog (German Credit Data) numeric version, file german.data-numeric "
    "(https://archive.ics.uci.edu/dataset/144/statlog+german+credit+data): its first 24 columns "
    "are features.npy and label = (last column == 2) is labels.npy; the reference moments come "
    "from a long, converged run (importance sampling with a Laplace proposal). "
    f"Pass `data_dir=...` or set the environment variable {GERMAN_CREDIT_ENV_VAR} to their folder."
)


def resolve_german_credit_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The folder that holds the German credit files: ``data_dir``, else ``$L2HMC_PPL_GERMAN_CREDIT``.

    The library searches nowhere else (scripts resolve their own defaults and pass them in).

    Args:
        data_dir: Folder holding the files, or ``None`` to use the environment variable.

    Returns:
        The folder, resolved to an absolute path.

    Raises:
        FileNotFoundError: If no folder is given or it lacks one of
            [`GERMAN_CREDIT_FILES`][l2hmc_ppl.targets.GERMAN_CREDIT_FILES]; the message names the
            missing files and where to get the data.
    """
    if data_dir is not None:
        candidates, origin = [Path(data_dir)], "the `data_dir` argument"
    elif os.environ.get(GERMAN_CREDIT_ENV_VAR):
        candidates = [Path(os.environ[GERMAN_CREDIT_ENV_VAR])]
        origin = f"${GERMAN_CREDIT_ENV_VAR}"
    else:
        raise FileNotFoundError(f"German credit data: no folder given. {_GERMAN_CREDIT_HELP}")
    problems = []
    for candidate in candidates:
        missing = [name for name in GERMAN_CREDIT_FILES if not (candidate / name).is_file()]
        if not missing:
            return candidate.resolve()
        problems.append(f"{candidate}: missing {', '.join(missing)}")
    raise FileNotFoundError(
        f"German credit data not found (from {origin}; {'; '.join(problems)}). {_GERMAN_CREDIT_HELP}"
    )


def german_credit(data_dir: str | os.PathLike | None = None) -> Target:
    r"""Bayesian logistic regression on German credit (numeric, 1000 × 24).

    Each of the 24 features is standardised, (x − mean)/std with the population std, and a bias
    column of ones is appended last, giving the design matrix X (1000 × 25). With labels
    yⱼ ∈ {0, 1}, prior β ~ N(0, I₂₅) and a Bernoulli-logit likelihood:

    $$\log p(\beta \mid y) = -\tfrac12 \lVert\beta\rVert^2
      + \sum_j \bigl[y_j (X\beta)_j - \log(1 + e^{(X\beta)_j})\bigr] \quad \text{(unnormalised)},$$

    evaluated stably as −½‖β‖² − Σⱼ softplus((1 − 2yⱼ)(Xβ)ⱼ). There is no exact sampler; ``mean``
    and ``covariance`` = diag(sd²) come from ``reference_moments.json`` (importance sampling with a
    Laplace proposal, so only the diagonal of the covariance is known).

    Args:
        data_dir: Folder with ``features.npy``, ``labels.npy`` and ``reference_moments.json``;
            ``None`` uses ``$L2HMC_PPL_GERMAN_CREDIT`` (see
            [`resolve_german_credit_dir`][l2hmc_ppl.targets.resolve_german_credit_dir]).

    Returns:
        The 25-d target, with ``sample = None``.

    Raises:
        FileNotFoundError: If the files are missing (the message says where to get them).
        ValueError: If the files have inconsistent shapes.

    References:
        UCI Statlog (German Credit Data), numeric version; used as a logistic-regression benchmark
        e.g. by Hoffman & Gelman (NUTS) and in the NeuTra / A-NICE-MC literature.
    """
    folder = resolve_german_credit_dir(data_dir)
    features = np.asarray(np.load(folder / "features.npy"), dtype=np.float64)
    labels = np.asarray(np.load(folder / "labels.npy"), dtype=np.float64).reshape(-1)
    with open(folder / "reference_moments.json") as file:
        reference = json.load(file)
    if features.ndim != 2 or features.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{folder}: features.npy has shape {features.shape} but labels.npy has "
            f"{labels.shape[0]} entries; expected (num_points, num_features) and num_points labels."
        )
    if not np.all((labels == 0) | (labels == 1)):
        raise ValueError(f"{folder}: labels.npy must hold 0/1 labels.")
    dim = features.shape[1] + 1
    mean = np.asarray(reference["mean"], dtype=np.float64)
    std = np.asarray(reference["std"], dtype=np.float64)
    if mean.shape != (dim,) or std.shape != (dim,):
        raise ValueError(
            f"{folder}/reference_moments.json: 'mean' and 'std' must have {dim} entries "
            f"(features plus bias), got {mean.shape} and {std.shape}."
        )
    scale = features.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)  # a constant column stays constant (zero)
    standardised = (features - features.mean(axis=0)) / scale
    design = np.concatenate([standardised, np.ones((features.shape[0], 1))], axis=1)
    label_signs = 1.0 - 2.0 * labels  # softplus(−l) for y = 1, softplus(l) for y = 0

    def logdensity_fn(x: Float[Array, " dim"]) -> Float[Array, ""]:
        x = _as_float(x)
        logits = jnp.asarray(design, x.dtype) @ x
        log_likelihood = -jnp.sum(jax.nn.softplus(jnp.asarray(label_signs, x.dtype) * logits))
        return log_likelihood - 0.5 * jnp.sum(x**2)

    return Target(
        name="german_credit",
        dim=dim,
        logdensity_fn=logdensity_fn,
        mean=_frozen(mean),
        covariance=_frozen(np.diag(std**2)),
        sample=None,
        modes=None,
        description=(
            f"Bayesian logistic regression on German credit ({features.shape[0]} x "
            f"{features.shape[1]}, UCI Statlog numeric): standardised features, bias column last, "
            "prior N(0, I), Bernoulli-logit likelihood. Reference moments from "
            f"{folder / 'reference_moments.json'}: {reference.get('description', '')}"
        ),
    )


# --------------------------------------------------------------------------------------------------
# Registry

_FACTORIES: dict[str, Callable[..., Target]] = {
    "icg": icg,
    "scg": scg,
    "scg_notebook": scg_notebook,
    "rough_well": rough_well,
    "mog": mog,
    "ring": ring,
    "ring5": ring5,
    "mog2": mog2,
    "mog6": mog6,
    "mog2_unequal": mog2_unequal,
    "german_credit": german_credit,
}

TARGET_NAMES: tuple[str, ...] = tuple(_FACTORIES)
"""Names accepted by [`get_target`][l2hmc_ppl.targets.get_target], in the order of the module's table."""


def get_target(name: str, **kwargs) -> Target:
    """Build a target by name.

    Args:
        name: One of [`TARGET_NAMES`][l2hmc_ppl.targets.TARGET_NAMES].
        **kwargs: Passed to the factory (e.g. ``eta`` for ``rough_well``, ``variance`` for
            ``mog``, ``data_dir`` for ``german_credit``).

    Returns:
        The target.

    Raises:
        ValueError: If ``name`` is unknown.

    Example:
        >>> target = get_target("rough_well", eta=1e-2)
        >>> target.dim
        2
    """
    try:
        factory = _FACTORIES[name]
    except KeyError:
        raise ValueError(f"Unknown target {name!r}; choose one of {', '.join(TARGET_NAMES)}.") from None
    return factory(**kwargs)
