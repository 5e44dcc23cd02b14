"""Tests of the benchmark targets: moments, exact samplers, log densities, German credit loading.

Statistical checks compare Monte Carlo moments of N = 2¹⁶ exact draws with the stored moments,
with tolerance Z standard errors computed from the draws themselves (iid: sd/√N), fixed seeds.
Everything runs in float32 except inside the explicit ``jax.enable_x64`` context of the float64
test, which restores the flag afterwards.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, special, stats

from l2hmc_ppl import targets
from tests.stats import Z_THRESHOLD

Z = Z_THRESHOLD
NUM_DRAWS = 2**16
SAMPLED = tuple(name for name in targets.TARGET_NAMES if name != "german_credit")
GERMAN_CREDIT_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "german_credit"


@pytest.fixture(scope="module")
def built() -> dict[str, targets.Target]:
    return {name: targets.get_target(name) for name in SAMPLED}


@pytest.fixture(scope="module")
def draws(built) -> dict[str, np.ndarray]:
    keys = jax.random.split(jax.random.key(20180430), len(SAMPLED))
    return {
        name: np.asarray(built[name].sample(key, NUM_DRAWS), dtype=np.float64)
        for name, key in zip(SAMPLED, keys, strict=True)
    }


def _moment_z_scores(samples: np.ndarray, mean: np.ndarray, covariance: np.ndarray) -> np.ndarray:
    """|z| of every mean and (co)variance entry: (estimate − truth) / (sd / √N).

    For dim ≤ 5 all covariance entries i ≤ j are checked, for larger dim the diagonal only.
    """
    num, dim = samples.shape
    centred = samples - mean
    z_mean = (centred.mean(0)) / (samples.std(0) / np.sqrt(num))
    pairs = [(i, j) for i in range(dim) for j in range(i, dim)] if dim <= 5 else [(i, i) for i in range(dim)]
    z_cov = []
    for i, j in pairs:
        products = centred[:, i] * centred[:, j]
        z_cov.append((products.mean() - covariance[i, j]) / (products.std() / np.sqrt(num)))
    return np.abs(np.concatenate([z_mean, np.asarray(z_cov)]))


# --------------------------------------------------------------------------------------------------
# Structure


def test_registry():
    assert targets.TARGET_NAMES == (
        "icg",
        "scg",
        "scg_notebook",
        "rough_well",
        "mog",
        "ring",
        "ring5",
        "mog2",
        "mog6",
        "mog2_unequal",
        "german_credit",
    )
    assert targets.get_target("mog", variance=0.2).covariance[1, 1] == pytest.approx(0.2)
    assert targets.get_target("rough_well", eta=0.5).description.count("eta = 0.5") == 1
    with pytest.raises(ValueError, match="Unknown target 'nope'"):
        targets.get_target("nope")


@pytest.mark.parametrize("name", SAMPLED)
def test_fields(built, name):
    target = built[name]
    assert target.name == name
    assert target.mean.shape == (target.dim,)
    assert target.covariance.shape == (target.dim, target.dim)
    np.testing.assert_array_equal(target.covariance, target.covariance.T)
    assert np.all(np.linalg.eigvalsh(target.covariance) > 0)
    assert target.description
    assert not target.mean.flags.writeable
    if name.startswith("mog"):
        assert target.modes is not None and target.modes.shape[1] == target.dim
    else:
        assert target.modes is None


def test_closed_form_moments():
    np.testing.assert_allclose(np.diag(targets.icg().covariance), np.logspace(-2, 2, 50))
    np.testing.assert_allclose(targets.scg().covariance, [[50.005, 49.995], [49.995, 50.005]], rtol=1e-12)
    np.testing.assert_allclose(
        targets.scg_notebook().covariance, [[50.05, 49.95], [49.95, 50.05]], rtol=1e-12
    )
    # Mixture covariance Σ wₖ(Σₖ + μₖμₖᵀ) − μμᵀ, worked out by hand.
    np.testing.assert_allclose(targets.mog().covariance, np.diag([4.1, 0.1]), atol=1e-12)
    np.testing.assert_allclose(targets.mog2().covariance, np.diag([25.25, 0.25]), atol=1e-12)
    np.testing.assert_allclose(targets.mog6().covariance, 12.75 * np.eye(2), atol=1e-12)
    np.testing.assert_allclose(targets.mog2_unequal().covariance, np.diag([26.525, 1.525]), atol=1e-12)
    for target in (targets.mog(), targets.mog2(), targets.mog6(), targets.mog2_unequal()):
        np.testing.assert_allclose(target.mean, 0.0, atol=1e-12)


@pytest.mark.parametrize("eta", [1e-2, 0.3, 1.0])
def test_rough_well_variance_matches_fourier_series(eta):
    # exp(−η cos θ) = I₀(η) + 2 Σₖ (−1)ᵏ Iₖ(η) cos kθ and ∫ x^{2j} e^{−x²/2} cos(ωx) dx give
    # E[x²] = [I₀ + 2Σ(−1)ᵏIₖ(1 − ω²)e^{−ω²/2}] / [I₀ + 2Σ(−1)ᵏIₖ e^{−ω²/2}], ω = k/η: exact,
    # and independent of the grid quadrature in the module.
    k = np.arange(1, 40)
    omega = k / eta
    bessel = special.ive(k, eta) * (-1.0) ** k
    denominator = special.ive(0, eta) + 2 * np.sum(bessel * np.exp(-(omega**2) / 2))
    numerator = special.ive(0, eta) + 2 * np.sum(bessel * (1 - omega**2) * np.exp(-(omega**2) / 2))
    target = targets.rough_well(eta)
    np.testing.assert_allclose(np.diag(target.covariance), numerator / denominator, rtol=1e-10)
    np.testing.assert_allclose(target.covariance[0, 1], 0.0)


def _ring_potentials():
    return {
        "ring": lambda r: ((r - 2.0) / 0.4) ** 2,
        "ring5": lambda r: np.min(((np.asarray(r)[..., None] - np.arange(1, 6)) / 0.2) ** 2, -1),
    }


@pytest.mark.parametrize("name", ["ring", "ring5"])
def test_ring_variance_matches_adaptive_quadrature(built, name):
    potential = _ring_potentials()[name]
    kinks = [i + 0.5 for i in range(1, 5)] if name == "ring5" else None

    def moment(power):
        value, _ = integrate.quad(
            lambda r: r ** (1 + power) * np.exp(-potential(r)),
            0,
            10,
            points=kinks,
            limit=200,
            epsabs=0,
            epsrel=1e-12,
        )
        return value

    np.testing.assert_allclose(np.diag(built[name].covariance), 0.5 * moment(2) / moment(0), rtol=1e-8)


# --------------------------------------------------------------------------------------------------
# Exact samplers against the stored moments


@pytest.mark.parametrize("name", SAMPLED)
def test_sample_moments(built, draws, name):
    samples = draws[name]
    assert samples.shape == (NUM_DRAWS, built[name].dim)
    assert np.all(np.isfinite(samples))
    z = _moment_z_scores(samples, built[name].mean, built[name].covariance)
    assert z.max() < Z, f"{name}: moment z-scores {np.round(z, 2)}"


@pytest.mark.parametrize("name", ["icg", "rough_well", "ring", "mog6"])
def test_sample_dtype_is_default_float(built, name):
    # float64 when the suite enables x64, float32 otherwise.
    default = jax.dtypes.canonicalize_dtype(jnp.float64)
    assert built[name].sample(jax.random.key(0), 3).dtype == default


def test_sample_moment_check_has_power(built, draws):
    # Forgetting the polar Jacobian r in p(r) ∝ r e^{−U(r)} is the classic ring mistake: its
    # variance must be rejected by the same check.
    grid = np.linspace(0, 8, 400_001)
    density = np.exp(-(((grid - 2.0) / 0.4) ** 2))
    wrong_variance = 0.5 * np.sum(grid**2 * density) / np.sum(density)
    z = _moment_z_scores(draws["ring"], np.zeros(2), wrong_variance * np.eye(2))
    assert z.max() > Z
    # A mixture covariance without the between-component term Σ wₖ μₖμₖᵀ − μμᵀ.
    z = _moment_z_scores(draws["mog"], np.zeros(2), 0.1 * np.eye(2))
    assert z.max() > Z


@pytest.mark.parametrize("name", ["mog", "mog2", "mog6", "mog2_unequal"])
def test_mixture_weights(built, draws, name):
    # Nearest-centre assignment equals the component with overwhelming probability for these
    # well-separated mixtures; the occupancy of each is binomial(N, 1/K).
    modes = built[name].modes
    nearest = np.argmin(np.sum((draws[name][:, None, :] - modes) ** 2, axis=-1), axis=1)
    fractions = np.bincount(nearest, minlength=len(modes)) / NUM_DRAWS
    weight = 1 / len(modes)
    standard_error = np.sqrt(weight * (1 - weight) / NUM_DRAWS)
    assert np.all(np.abs(fractions - weight) < Z * standard_error), fractions


def test_mog2_unequal_component_variances(draws):
    # Overall moments do not say which centre has which variance; E[x₀ x₁²] does:
    # ½·5·3 + ½·(−5)·0.05 = 7.375 (−7.375 with the variances swapped).
    products = draws["mog2_unequal"][:, 0] * draws["mog2_unequal"][:, 1] ** 2
    z = (products.mean() - 7.375) / (products.std() / np.sqrt(NUM_DRAWS))
    assert abs(z) < Z
    assert abs((products.mean() + 7.375) / (products.std() / np.sqrt(NUM_DRAWS))) > Z


# --------------------------------------------------------------------------------------------------
# Log densities


def _scipy_logpdf(name: str, x: np.ndarray) -> np.ndarray:
    """Reference log densities (up to a constant) from scipy or from the paper's formula."""
    if name == "icg":
        return stats.multivariate_normal(np.zeros(50), np.diag(np.logspace(-2, 2, 50))).logpdf(x)
    if name in ("scg", "scg_notebook"):
        small = 0.01 if name == "scg" else 0.1
        c, s = np.cos(np.pi / 4), np.sin(np.pi / 4)
        rotation = np.array([[c, -s], [s, c]])
        covariance = rotation @ np.diag([100.0, small]) @ rotation.T
        return stats.multivariate_normal(np.zeros(2), covariance).logpdf(x)
    mixtures = {
        "mog": ([[-2, 0], [2, 0]], [0.1, 0.1]),
        "mog2": ([[5, 0], [-5, 0]], [0.25, 0.25]),
        "mog6": (
            [[5 * np.cos(k * np.pi / 3), 5 * np.sin(k * np.pi / 3)] for k in range(6)],
            [0.25] * 6,
        ),
        "mog2_unequal": ([[5, 0], [-5, 0]], [3.0, 0.05]),
    }
    if name in mixtures:
        centres, variances = mixtures[name]
        components = [
            stats.multivariate_normal(centre, variance * np.eye(2)).logpdf(x)
            for centre, variance in zip(centres, variances, strict=True)
        ]
        return special.logsumexp(components, axis=0) - np.log(len(centres))
    if name == "rough_well":
        return -(0.5 * np.sum(x**2, -1) + 1e-2 * np.sum(np.cos(x / 1e-2), -1))
    return -_ring_potentials()[name](np.linalg.norm(x, axis=-1))


@pytest.mark.parametrize("name", SAMPLED)
def test_logdensity_matches_reference(built, draws, name):
    target = built[name]
    rng = np.random.default_rng(0)
    points = np.concatenate(
        [
            draws[name][:200],
            rng.normal(size=(50, target.dim)) * 4 * np.sqrt(np.diag(target.covariance)),
        ]
    )
    ours = np.asarray(jax.jit(jax.vmap(target.logdensity_fn))(jnp.asarray(points, jnp.float32)))
    reference = _scipy_logpdf(name, points.astype(np.float32).astype(np.float64))
    difference = ours - reference
    # Gaussians and mixtures are normalised; the other targets are −U exactly: no constant either.
    # float32 rounding: relative 1e-5 of the terms (ring potentials are evaluated at float32 |x|).
    tolerance = 2e-5 * (1 + np.abs(reference)) + (2e-3 if name.startswith("ring") else 0)
    assert np.all(np.abs(difference) < tolerance), np.abs(difference).max()


@pytest.mark.parametrize("name", SAMPLED)
def test_logdensity_grad_finite_and_transformable(built, draws, name):
    target = built[name]
    points = jnp.asarray(
        np.concatenate([draws[name][:16], np.zeros((1, target.dim)), target.mean[None]]),
        jnp.float32,
    )
    value_and_grad = jax.jit(jax.vmap(jax.value_and_grad(target.logdensity_fn)))
    values, grads = value_and_grad(points)
    assert values.dtype == jnp.float32 and grads.dtype == jnp.float32
    assert np.all(np.isfinite(values)) and np.all(np.isfinite(grads))
    np.testing.assert_allclose(values[3], jax.jit(target.logdensity_fn)(points[3]), rtol=1e-5)
    # L2HMC's loss differentiates through ∇U: second derivatives must be finite too.
    hessian = jax.jit(jax.hessian(target.logdensity_fn))(points[0])
    assert np.all(np.isfinite(hessian))
    # Gradient agrees with a float64 central finite difference of the reference formula.
    x = np.asarray(points[0], np.float64)
    step = 1e-6 * (1 + np.abs(x))
    basis = np.eye(target.dim) * step
    finite_difference = (_scipy_logpdf(name, x + basis) - _scipy_logpdf(name, x - basis)) / (2 * step)
    np.testing.assert_allclose(grads[0], finite_difference, rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("name", SAMPLED)
def test_float32_and_float64(built, name):
    target = built[name]
    with jax.enable_x64(True):
        value_and_grad = jax.jit(jax.value_and_grad(target.logdensity_fn))
        x = jnp.asarray(target.mean + 0.1, jnp.float64)
        value64, grad64 = value_and_grad(x)
        value32, grad32 = value_and_grad(x.astype(jnp.float32))
        assert value64.dtype == grad64.dtype == jnp.float64
        assert value32.dtype == grad32.dtype == jnp.float32
        np.testing.assert_allclose(value32, value64, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(grad32, grad64, rtol=1e-3, atol=1e-3)
        assert target.sample(jax.random.key(0), 4).dtype == jnp.float64
        if name == "scg":  # float64 is accurate far along the narrow direction
            far = jnp.array([7.0, -7.0])
            np.testing.assert_allclose(
                target.logdensity_fn(far), _scipy_logpdf("scg", np.asarray(far)), rtol=1e-12
            )


# --------------------------------------------------------------------------------------------------
# German credit


def _reference_logdensity(folder: Path, beta: np.ndarray) -> float:
    features = np.load(folder / "features.npy").astype(np.float64)
    labels = np.load(folder / "labels.npy").astype(np.float64).reshape(-1)
    design = (features - features.mean(0)) / features.std(0)
    design = np.hstack([design, np.ones((len(design), 1))])
    logits = design @ beta
    log_likelihood = np.sum(labels * logits - np.logaddexp(0.0, logits))
    return log_likelihood + stats.norm.logpdf(beta).sum()


needs_german_credit = pytest.mark.skipif(
    not GERMAN_CREDIT_DIR.is_dir(), reason=f"German credit data not at {GERMAN_CREDIT_DIR}"
)


@needs_german_credit
def test_german_credit_loads_and_is_finite():
    target = targets.german_credit(GERMAN_CREDIT_DIR)
    reference = json.loads((GERMAN_CREDIT_DIR / "reference_moments.json").read_text())
    assert target.dim == 25 and target.sample is None and target.modes is None
    np.testing.assert_allclose(target.mean, reference["mean"])
    np.testing.assert_allclose(np.diag(target.covariance), np.square(reference["std"]))
    value, grad = jax.value_and_grad(target.logdensity_fn)(jnp.asarray(target.mean, jnp.float32))
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    # Equal to the formula up to the constant of the N(0, I) prior.
    rng = np.random.default_rng(1)
    betas = target.mean + rng.normal(size=(5, 25)) * np.sqrt(np.diag(target.covariance))
    ours = np.asarray(jax.vmap(target.logdensity_fn)(jnp.asarray(betas, jnp.float32)))
    expected = np.array([_reference_logdensity(GERMAN_CREDIT_DIR, b) for b in betas])
    difference = ours - expected
    np.testing.assert_allclose(difference, difference[0], atol=1e-5 * np.abs(expected).max())


@needs_german_credit
def test_german_credit_matches_reference_moments():
    # Self-normalised importance sampling from the Laplace approximation must reproduce the
    # reference moments: this pins the design (standardisation, bias column last, prior), which a
    # finite log density alone would not. Tolerance: Z times the combined standard error of the
    # estimate here (delta method, from the weighted draws) and of the reference (sd/√ESS_ref).
    target = targets.german_credit(GERMAN_CREDIT_DIR)
    reference = json.loads((GERMAN_CREDIT_DIR / "reference_moments.json").read_text())
    with jax.enable_x64(True):
        grad = jax.jit(jax.grad(target.logdensity_fn))
        hessian = jax.jit(jax.hessian(target.logdensity_fn))
        mode = jnp.zeros(25, jnp.float64)
        for _ in range(10):  # Newton's method on a strictly concave function
            mode = mode - jnp.linalg.solve(hessian(mode), grad(mode))
        cholesky = np.linalg.cholesky(np.linalg.inv(-np.asarray(hessian(mode))))
        noise = np.random.default_rng(2).standard_normal((20_000, 25))
        betas = np.asarray(mode) + noise @ cholesky.T
        log_target = np.asarray(jax.jit(jax.vmap(target.logdensity_fn))(jnp.asarray(betas)))
    log_weights = log_target + 0.5 * np.sum(noise**2, axis=1)
    weights = np.exp(log_weights - log_weights.max())
    weights /= weights.sum()
    mean = weights @ betas
    centred = betas - mean
    variance = weights @ centred**2
    se_mean = np.sqrt(weights**2 @ centred**2)
    se_variance = np.sqrt(weights**2 @ (centred**2 - variance) ** 2)
    reference_sd = np.sqrt(np.diag(target.covariance))
    reference_num = reference["importance_sampling_ess"]
    se_mean = np.hypot(se_mean, reference_sd / np.sqrt(reference_num))
    se_variance = np.hypot(se_variance, reference_sd**2 * np.sqrt(2 / reference_num))
    assert np.all(np.abs(mean - target.mean) < Z * se_mean)
    assert np.all(np.abs(variance - reference_sd**2) < Z * se_variance)
    # Power: the posterior mode is up to ~0.4 sd from the mean, and the same check sees it.
    assert np.any(np.abs(np.asarray(mode) - target.mean) > Z * se_mean)


@needs_german_credit
def test_german_credit_is_found_only_where_it_is_told(monkeypatch, tmp_path):
    """The library searches no default folder: the argument, else the environment variable."""
    monkeypatch.delenv(targets.GERMAN_CREDIT_ENV_VAR, raising=False)
    monkeypatch.chdir(Path(__file__).resolve().parents[1])  # where ../shared/data exists
    with pytest.raises(FileNotFoundError, match="no folder given.*L2HMC_PPL_GERMAN_CREDIT"):
        targets.resolve_german_credit_dir()
    assert targets.resolve_german_credit_dir(GERMAN_CREDIT_DIR) == GERMAN_CREDIT_DIR.resolve()
    copy = tmp_path / "copy"
    shutil.copytree(GERMAN_CREDIT_DIR, copy)
    monkeypatch.setenv(targets.GERMAN_CREDIT_ENV_VAR, str(copy))
    assert targets.resolve_german_credit_dir() == copy.resolve()
    assert targets.get_target("german_credit").dim == 25


def test_german_credit_missing_files(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as error:
        targets.german_credit(missing)
    message = str(error.value)
    for name in targets.GERMAN_CREDIT_FILES:
        assert name in message
    assert "UCI" in message and str(missing) in message
    # A partial folder names exactly what is missing.
    np.save(tmp_path / "features.npy", np.zeros((3, 2)))
    with pytest.raises(FileNotFoundError, match="missing labels.npy, reference_moments.json"):
        targets.german_credit(tmp_path)
    # An explicit environment variable is not silently replaced by the default folders.
    monkeypatch.setenv(targets.GERMAN_CREDIT_ENV_VAR, str(missing))
    with pytest.raises(FileNotFoundError, match="L2HMC_PPL_GERMAN_CREDIT"):
        targets.german_credit()
