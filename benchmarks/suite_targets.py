"""The development suite: real posteriors and library test models with gold-standard moments.

Every entry is a `SuiteTarget`: either a NumPyro model (``model``, ``model_args``,
``model_kwargs``) or a log density over a flat vector (``logdensity_fn``, ``dim``, BlackJAX
convention), the gold-standard mean and standard deviation of each scalar quantity it is judged on
(`Reference`, keyed Stan style: ``"theta[1]"`` is the first element, 1-based), and ``extract``,
which maps a run's draws to those quantities. `moment_z_scores` and `min_moment_ess` compare a run
with the reference.

Groups (see `GROUPS`; `load_suite` builds them, `get_target` builds one entry):

- ``posteriordb``: the twelve posteriors of ``<data_root>/posteriordb`` (posteriordb commit
  28f8d3d6), each written in NumPyro as the same density as its ``model.stan``: the same
  parameterisation, priors (a parameter without a sampling statement is flat on its support), and
  supports (NumPyro then samples the unconstrained transform, as Stan does). The reference is the
  folder's ``reference.json`` (10 × 1000 draws of a long Stan run, with their MCSE).
- ``german_credit``: Bayesian logistic regression on ``<data_root>/german_credit`` (standardised
  features, bias column last, prior N(0, I₂₅)); reference moments from importance sampling.
- ``toy``: the paper's four targets (`l2hmc_ppl.targets`: ``icg``, ``scg``, ``rough_well``,
  ``mog``) as log densities with exact moments.
- ``numpyro_tests``: the continuous models and potentials of NumPyro's ``test/infer/test_mcmc.py``
  whose posterior moments are known exactly (conjugacy, or one-dimensional quadrature of a closed
  form), on the test's own data (its seeds, its float32 draws).
- ``blackjax_tests``: the same for BlackJAX's ``tests/mcmc/test_sampling.py``.
- ``stress``: Neal's funnel (centred, 10-d) and a 4-d strongly correlated Gaussian with
  differently scaled coordinates, both with exact moments.

A reference whose moments are exact has ``mcse_mean = mcse_sd = 0``. The module never looks for
data by itself: callers pass ``data_root``, the folder that holds ``posteriordb/`` and
``german_credit/`` (the groups that need no files build without it).

Conventions for ``extract``: its input is NumPyro's grouped draws, ``{site: (chains, draws,
*site_shape)}`` in the constrained space (``mcmc.get_samples(group_by_chain=True)``), or, for a
log-density target, ``{"x": (chains, draws, dim)}``; its output is ``{name: (chains, draws)}`` for
exactly the keys of ``reference``.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.diagnostics import effective_sample_size
from numpyro.distributions import constraints
from scipy.special import gammaln, ndtr

__all__ = [
    "GROUPS",
    "NUTS_SETTINGS",
    "Reference",
    "SuiteTarget",
    "get_target",
    "load_suite",
    "min_moment_ess",
    "moment_z_scores",
    "target_names",
]

GROUPS: tuple[str, ...] = ("posteriordb", "german_credit", "toy", "numpyro_tests", "blackjax_tests", "stress")

# NUTS options beyond NumPyro's defaults that `check_suite_targets.py` uses (4 chains x (1000 + 1000)):
# - diamonds: its 24 predictors are strongly correlated; with a diagonal mass matrix NUTS passes too but
#   runs at tree depth ~10 (about 7 minutes on 2 shared cores), with a dense one in about a minute.
# - gp_pois_regr: the default target_accept_prob 0.8 leaves ~16 divergences (it passes all the same);
#   0.95 removes them (posteriordb's reference used adapt_delta 0.99).
NUTS_SETTINGS: dict[str, dict[str, Any]] = {
    "diamonds": {"dense_mass": True},
    "gp_pois_regr": {"target_accept_prob": 0.95},
}

_POSTERIORDB_URL = "https://github.com/stan-dev/posteriordb (posterior_database/)"


@dataclass(frozen=True)
class Reference:
    """Gold-standard moments of one scalar quantity.

    Attributes:
        mean: Posterior mean.
        sd: Posterior standard deviation.
        mcse_mean: Monte Carlo standard error of ``mean`` (0.0 where it is exact).
        mcse_sd: Monte Carlo standard error of ``sd`` (0.0 where it is exact).
    """

    mean: float
    sd: float
    mcse_mean: float
    mcse_sd: float


@dataclass(frozen=True, eq=False)
class SuiteTarget:
    """One target of the suite: a NumPyro model or a log density, with reference moments.

    Attributes:
        name: Unique name, e.g. ``"eight_schools_noncentered"``.
        group: One of `GROUPS`.
        model: A NumPyro model, or ``None`` for a log-density target.
        model_args: Positional arguments of ``model`` (empty for log-density targets).
        model_kwargs: Keyword arguments of ``model`` (empty for log-density targets).
        logdensity_fn: For log-density targets, flat vector ``(dim,)`` → log p up to a constant
            (BlackJAX convention; works under ``jit``/``vmap``/``grad`` and in float32 or float64);
            ``None`` for models.
        dim: Dimension of ``logdensity_fn``'s input; ``None`` for models.
        reference: Gold-standard moments, keyed by the quantity's flat name (Stan style).
        extract: Grouped draws → ``{name: (num_chains, num_draws)}`` for the keys of ``reference``
            (see the module docstring).
        initial_position: For log-density targets, ``(rng_key, num) → (num, dim)`` initial points;
            ``None`` for models (use the sampler's own initialisation).
        description: What the target is, where it comes from, how its reference was obtained.
    """

    name: str
    group: str
    model: Callable | None
    model_args: tuple
    model_kwargs: dict
    logdensity_fn: Callable | None
    dim: int | None
    reference: dict[str, Reference]
    extract: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]
    initial_position: Callable | None
    description: str


# --------------------------------------------------------------------------------------------------
# Helpers


def _flat_names(site: str, shape: tuple[int, ...]) -> list[tuple[str, tuple[int, ...]]]:
    """Stan-style flat names of a site's elements with their 0-based indices: x, x[1], w[2,3]."""
    if shape == ():
        return [(site, ())]
    return [(f"{site}[{','.join(str(i + 1) for i in index)}]", index) for index in np.ndindex(*shape)]


def _parse_flat_name(name: str) -> tuple[str, tuple[int, ...]]:
    """Inverse of `_flat_names` for one name: ``"w[2,3]"`` → ``("w", (1, 2))``."""
    if "[" not in name:
        return name, ()
    site, rest = name.split("[", 1)
    return site, tuple(int(i) - 1 for i in rest.rstrip("]").split(","))


def _site_extract(names: Sequence[str]) -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """An ``extract`` that reads each flat name ``site[i,...]`` from the grouped draws of ``site``."""
    parsed = {name: _parse_flat_name(name) for name in names}

    def extract(samples: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = {}
        for name, (site, index) in parsed.items():
            values = np.asarray(samples[site])
            out[name] = values[(slice(None), slice(None)) + index]
        return out

    return extract


def _vector_extract(
    names: Sequence[str], derived: dict[str, Callable[[np.ndarray], np.ndarray]] | None = None
) -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """``extract`` of a log-density target: ``names[i]`` is coordinate i of ``x``.

    ``derived`` maps further names to functions of the draws ``x`` (chains, draws, dim).
    """
    names = list(names)
    derived = dict(derived or {})

    def extract(samples: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = np.asarray(samples["x"])
        if x.ndim == 2:  # a scalar position: (chains, draws)
            x = x[..., None]
        out = {name: x[..., i] for i, name in enumerate(names)}
        out.update({name: fn(x) for name, fn in derived.items()})
        return out

    return extract


def _exact(mean, sd) -> Reference:
    return Reference(float(mean), float(sd), 0.0, 0.0)


def _exact_references(names: Sequence[str], means, sds) -> dict[str, Reference]:
    means = np.broadcast_to(np.asarray(means, dtype=np.float64), (len(names),))
    sds = np.broadcast_to(np.asarray(sds, dtype=np.float64), (len(names),))
    return {name: _exact(m, s) for name, m, s in zip(names, means, sds, strict=True)}


def _normal_init(scale: float = 1.0) -> Callable:
    """``initial_position`` drawing N(0, scale² I) points in JAX's default float dtype."""

    def initial_position(rng_key, num: int, *, dim: int):
        dtype = jax.dtypes.canonicalize_dtype(jnp.float64)
        return scale * jax.random.normal(rng_key, (num, dim), dtype)

    return initial_position


def _gaussian_logdensity(mean: np.ndarray, covariance: np.ndarray) -> Callable:
    """Log density of N(mean, covariance) up to a constant, evaluated through the whitening map.

    Accepts a vector of shape (dim,) (or a scalar when dim = 1) in any float dtype.
    """
    mean = np.asarray(mean, dtype=np.float64).reshape(-1)
    eigenvalues, eigenvectors = np.linalg.eigh(np.asarray(covariance, dtype=np.float64))
    whitening = eigenvectors.T / np.sqrt(eigenvalues)[:, None]

    def logdensity_fn(x):
        x = jnp.asarray(x)
        dtype = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jax.dtypes.canonicalize_dtype(float)
        z = jnp.asarray(whitening, dtype) @ (jnp.reshape(x, (-1,)).astype(dtype) - jnp.asarray(mean, dtype))
        return -0.5 * jnp.sum(z**2)

    return logdensity_fn


def _logdensity_target(
    name: str,
    group: str,
    logdensity_fn: Callable,
    dim: int,
    reference: dict[str, Reference],
    extract: Callable,
    description: str,
    initial_position: Callable | None = None,
) -> SuiteTarget:
    init = initial_position or _normal_init()
    return SuiteTarget(
        name=name,
        group=group,
        model=None,
        model_args=(),
        model_kwargs={},
        logdensity_fn=logdensity_fn,
        dim=dim,
        reference=reference,
        extract=extract,
        initial_position=functools.partial(init, dim=dim),
        description=description,
    )


def _model_target(
    name: str,
    group: str,
    model: Callable,
    reference: dict[str, Reference],
    description: str,
    model_args: tuple = (),
    model_kwargs: dict | None = None,
    extract: Callable | None = None,
) -> SuiteTarget:
    return SuiteTarget(
        name=name,
        group=group,
        model=model,
        model_args=model_args,
        model_kwargs=dict(model_kwargs or {}),
        logdensity_fn=None,
        dim=None,
        reference=reference,
        extract=extract or _site_extract(list(reference)),
        initial_position=None,
        description=description,
    )


def _flat_prior(shape: tuple[int, ...] = (), support=constraints.real) -> dist.Distribution:
    """The flat (improper) prior on ``support`` that Stan gives a parameter without a sampling statement."""
    return dist.ImproperUniform(support, (), shape)


# --------------------------------------------------------------------------------------------------
# posteriordb: the Stan programs in NumPyro


def _ark(lags, y):
    """arK: AR(K) model. ``lags[t, k] = y[t - k - 1]`` for t = K..T-1, ``y`` = y[K:]."""
    num_lags = lags.shape[1]
    alpha = numpyro.sample("alpha", dist.Normal(0.0, 10.0))
    beta = numpyro.sample("beta", dist.Normal(0.0, 10.0).expand([num_lags]).to_event(1))
    sigma = numpyro.sample("sigma", dist.HalfCauchy(2.5))
    mu = alpha + jnp.asarray(lags) @ beta
    numpyro.sample("y", dist.Normal(mu, sigma).to_event(1), obs=jnp.asarray(y))


def _diamonds(xc, y):
    """brms linear regression with centred predictors ``xc`` (N × Kc), as in diamonds' Stan code."""
    num_effects = xc.shape[1]
    b = numpyro.sample("b", dist.Normal(0.0, 1.0).expand([num_effects]).to_event(1))
    intercept = numpyro.sample("Intercept", dist.StudentT(3.0, 8.0, 10.0))
    # student_t(3, 0, 10) truncated to sigma > 0 (brms subtracts the log ccdf at 0, a constant).
    sigma = numpyro.sample("sigma", dist.FoldedDistribution(dist.StudentT(3.0, 0.0, 10.0)))
    mu = intercept + jnp.asarray(xc) @ b
    numpyro.sample("Y", dist.Normal(mu, sigma).to_event(1), obs=jnp.asarray(y))


def _flat_linear_regression(design, y, *, sigma_prior: dist.Distribution | None = None):
    """``y ~ normal(design @ beta, sigma)``, flat prior on beta; sigma flat on (0, ∞) unless given."""
    num_coefs = design.shape[1]
    beta = numpyro.sample("beta", _flat_prior((num_coefs,)))
    sigma = numpyro.sample(
        "sigma", sigma_prior if sigma_prior is not None else _flat_prior((), constraints.positive)
    )
    numpyro.sample("y", dist.Normal(jnp.asarray(design) @ beta, sigma).to_event(1), obs=jnp.asarray(y))


def _eight_schools_noncentered(sigma, y):
    num_schools = sigma.shape[0]
    theta_trans = numpyro.sample("theta_trans", dist.Normal(0.0, 1.0).expand([num_schools]).to_event(1))
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    theta = numpyro.deterministic("theta", theta_trans * tau + mu)
    numpyro.sample("y", dist.Normal(theta, jnp.asarray(sigma)).to_event(1), obs=jnp.asarray(y))


def _garch11(y, sigma1):
    """GARCH(1, 1) with Stan's flat priors and the dependent bound 0 < beta1 < 1 − alpha1.

    beta1 = (1 − alpha1) · beta1_unit with beta1_unit ∈ (0, 1) flat: the factor log(1 − alpha1) is
    the Jacobian |∂beta1/∂beta1_unit|, so (alpha1, beta1) is flat on its region, as in Stan.
    """
    y = jnp.asarray(y)
    mu = numpyro.sample("mu", _flat_prior())
    alpha0 = numpyro.sample("alpha0", _flat_prior((), constraints.positive))
    alpha1 = numpyro.sample("alpha1", dist.Uniform(0.0, 1.0))
    beta1_unit = numpyro.sample("beta1_unit", dist.Uniform(0.0, 1.0))
    beta1 = numpyro.deterministic("beta1", (1.0 - alpha1) * beta1_unit)
    numpyro.factor("beta1_jacobian", jnp.log1p(-alpha1))

    def step(variance, y_previous):
        variance = alpha0 + alpha1 * (y_previous - mu) ** 2 + beta1 * variance
        return variance, variance

    first = jnp.full((), sigma1**2, dtype=y.dtype)
    _, variances = jax.lax.scan(step, first, y[:-1])
    sigma = jnp.sqrt(jnp.concatenate([first[None], variances]))
    numpyro.sample("y", dist.Normal(mu, sigma).to_event(1), obs=y)


def _gp_pois_regr(x, k):
    """Latent GP (squared exponential kernel + 1e-10 jitter, non-centred) with a Poisson-log likelihood.

    The 1e-10 jitter makes the Cholesky factor fail in float32: run it in float64.
    """
    x = jnp.asarray(x)
    num = x.shape[0]
    rho = numpyro.sample("rho", dist.Gamma(25.0, 4.0))
    alpha = numpyro.sample("alpha", dist.HalfNormal(2.0))
    f_tilde = numpyro.sample("f_tilde", dist.Normal(0.0, 1.0).expand([num]).to_event(1))
    squared_distance = (x[:, None] - x[None, :]) ** 2
    cov = alpha**2 * jnp.exp(-0.5 * squared_distance / rho**2) + 1e-10 * jnp.eye(num)
    f = numpyro.deterministic("f", jnp.linalg.cholesky(cov) @ f_tilde)
    numpyro.sample("k", dist.Poisson(jnp.exp(f)).to_event(1), obs=jnp.asarray(k))


def _hmm_example(y):
    """Two-state Gaussian HMM; the states are summed out by the forward algorithm (scan + logsumexp)."""
    y = jnp.asarray(y)
    theta1 = numpyro.sample("theta1", dist.Dirichlet(jnp.ones(2)))  # flat on the simplex
    theta2 = numpyro.sample("theta2", dist.Dirichlet(jnp.ones(2)))
    mu = numpyro.sample("mu", _flat_prior((2,), constraints.positive_ordered_vector))
    numpyro.factor("mu_prior", dist.Normal(3.0, 1.0).log_prob(mu[0]) + dist.Normal(10.0, 1.0).log_prob(mu[1]))
    log_theta = jnp.log(jnp.stack([theta1, theta2]))  # [j, k]: from state j to state k
    log_emission = dist.Normal(mu, 1.0).log_prob(y[:, None])  # (N, K)

    def forward(gamma, log_emission_t):
        gamma = jax.nn.logsumexp(gamma[:, None] + log_theta, axis=0) + log_emission_t
        return gamma, None

    gamma, _ = jax.lax.scan(forward, log_emission[0], log_emission[1:])
    numpyro.factor("forward", jax.nn.logsumexp(gamma))


def _low_dim_gauss_mix(y):
    y = jnp.asarray(y)
    mu = numpyro.sample("mu", _flat_prior((2,), constraints.ordered_vector))
    numpyro.factor("mu_prior", jnp.sum(dist.Normal(0.0, 2.0).log_prob(mu)))
    sigma = numpyro.sample("sigma", dist.HalfNormal(2.0).expand([2]).to_event(1))
    theta = numpyro.sample("theta", dist.Beta(5.0, 5.0))
    log_components = jnp.stack(
        [
            jnp.log(theta) + dist.Normal(mu[0], sigma[0]).log_prob(y),
            jnp.log1p(-theta) + dist.Normal(mu[1], sigma[1]).log_prob(y),
        ]
    )
    numpyro.factor("log_mix", jnp.sum(jax.nn.logsumexp(log_components, axis=0)))


def _blr(x, y):
    num_coefs = x.shape[1]
    beta = numpyro.sample("beta", dist.Normal(0.0, 10.0).expand([num_coefs]).to_event(1))
    sigma = numpyro.sample("sigma", dist.HalfNormal(10.0))
    numpyro.sample("y", dist.Normal(jnp.asarray(x) @ beta, sigma).to_event(1), obs=jnp.asarray(y))


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing. The suite's posteriordb folder holds, per posterior, model.stan, "
            f"data.json and reference.json (from {_POSTERIORDB_URL}); pass the folder that holds "
            "posteriordb/ as data_root."
        )
    with open(path) as file:
        return json.load(file)


def _posteriordb_reference(reference_json: dict) -> dict[str, Reference]:
    return {
        name: Reference(float(v["mean"]), float(v["sd"]), float(v["mcse_mean"]), float(v["mcse_sd"]))
        for name, v in reference_json["parameters"].items()
    }


def _posteriordb_model(posterior: str, data: dict) -> tuple[Callable, dict, str]:
    """The NumPyro model of one posterior, its keyword arguments (transformed data) and a note."""
    if posterior == "arK-arK":
        y = np.asarray(data["y"], dtype=np.float64)
        num_lags = int(data["K"])
        lags = np.stack([y[num_lags - k - 1 : len(y) - k - 1] for k in range(num_lags)], axis=1)
        return _ark, {"lags": lags, "y": y[num_lags:]}, f"AR({num_lags}) on T = {len(y)} points."
    if posterior == "diamonds-diamonds":
        x = np.asarray(data["X"], dtype=np.float64)
        xc = x[:, 1:] - x[:, 1:].mean(axis=0)
        note = (
            f"brms linear regression, N = {x.shape[0]}, {xc.shape[1]} centred, strongly correlated "
            "predictors."
        )
        return _diamonds, {"xc": xc, "y": np.asarray(data["Y"], dtype=np.float64)}, note
    if posterior == "earnings-logearn_interaction":
        height, male = (np.asarray(data[k], dtype=np.float64) for k in ("height", "male"))
        design = np.stack([np.ones_like(height), height, male, height * male], axis=1)
        y = np.log(np.asarray(data["earn"], dtype=np.float64))
        return _flat_linear_regression, {"design": design, "y": y}, "log(earn) ~ height * male, flat priors."
    if posterior == "eight_schools-eight_schools_noncentered":
        kwargs = {
            "sigma": np.asarray(data["sigma"], dtype=np.float64),
            "y": np.asarray(data["y"], dtype=np.float64),
        }
        return _eight_schools_noncentered, kwargs, "Non-centred eight schools; theta is a deterministic site."
    if posterior == "garch-garch11":
        kwargs = {"y": np.asarray(data["y"], dtype=np.float64), "sigma1": float(data["sigma1"])}
        note = "GARCH(1,1); beta1 = (1 - alpha1) * beta1_unit with its Jacobian (deterministic site beta1)."
        return _garch11, kwargs, note
    if posterior == "gp_pois_regr-gp_pois_regr":
        kwargs = {"x": np.asarray(data["x"], dtype=np.float64), "k": np.asarray(data["k"], dtype=np.int64)}
        return _gp_pois_regr, kwargs, "Latent GP, Poisson likelihood; needs float64 (1e-10 jitter)."
    if posterior == "hmm_example-hmm_example":
        if int(data["K"]) != 2:
            raise ValueError("hmm_example's Stan program is written for K = 2 states.")
        return _hmm_example, {"y": np.asarray(data["y"], dtype=np.float64)}, "2-state HMM, forward algorithm."
    if posterior == "kidiq-kidscore_interaction":
        hs, iq = (np.asarray(data[k], dtype=np.float64) for k in ("mom_hs", "mom_iq"))
        design = np.stack([np.ones_like(hs), hs, iq, hs * iq], axis=1)
        model = functools.partial(_flat_linear_regression, sigma_prior=dist.HalfCauchy(2.5))
        kwargs = {"design": design, "y": np.asarray(data["kid_score"], dtype=np.float64)}
        return model, kwargs, "kid_score ~ mom_hs * mom_iq, flat priors on beta, half-Cauchy(2.5) on sigma."
    if posterior == "low_dim_gauss_mix-low_dim_gauss_mix":
        return _low_dim_gauss_mix, {"y": np.asarray(data["y"], dtype=np.float64)}, "Two-component mixture."
    if posterior == "mesquite-logmesquite":
        logs = [
            np.log(np.asarray(data[k], dtype=np.float64))
            for k in ("diam1", "diam2", "canopy_height", "total_height", "density")
        ]
        group = np.asarray(data["group"], dtype=np.float64)
        design = np.stack([np.ones_like(group), *logs, group], axis=1)
        y = np.log(np.asarray(data["weight"], dtype=np.float64))
        return _flat_linear_regression, {"design": design, "y": y}, "Log-log regression, flat priors."
    if posterior == "nes2000-nes":
        columns = [np.asarray(data[k], dtype=np.float64) for k in ("real_ideo", "race_adj")]
        age = np.asarray(data["age_discrete"])
        ages = [(age == level).astype(np.float64) for level in (2, 3, 4)]
        rest = [np.asarray(data[k], dtype=np.float64) for k in ("educ1", "gender", "income")]
        design = np.stack([np.ones_like(columns[0]), *columns, *ages, *rest], axis=1)
        y = np.asarray(data["partyid7"], dtype=np.float64)
        return _flat_linear_regression, {"design": design, "y": y}, "Linear regression, flat priors."
    if posterior == "sblrc-blr":
        kwargs = {"x": np.asarray(data["X"], dtype=np.float64), "y": np.asarray(data["y"], dtype=np.float64)}
        return _blr, kwargs, "Bayesian linear regression, N(0, 10) on beta, half-normal(10) on sigma."
    raise ValueError(f"unknown posteriordb posterior {posterior!r}")


# posteriordb folder → suite name (posteriordb's model name).
_POSTERIORDB: dict[str, str] = {
    "arK": "arK-arK",
    "diamonds": "diamonds-diamonds",
    "logearn_interaction": "earnings-logearn_interaction",
    "eight_schools_noncentered": "eight_schools-eight_schools_noncentered",
    "garch11": "garch-garch11",
    "gp_pois_regr": "gp_pois_regr-gp_pois_regr",
    "hmm_example": "hmm_example-hmm_example",
    "kidscore_interaction": "kidiq-kidscore_interaction",
    "low_dim_gauss_mix": "low_dim_gauss_mix-low_dim_gauss_mix",
    "logmesquite": "mesquite-logmesquite",
    "nes": "nes2000-nes",
    "blr": "sblrc-blr",
}


def _posteriordb_target(name: str, data_root: str | Path | None) -> SuiteTarget:
    posterior = _POSTERIORDB[name]
    if data_root is None:
        raise FileNotFoundError(f"target {name!r} needs data_root (the folder that holds posteriordb/).")
    folder = Path(data_root) / "posteriordb" / posterior
    data = _read_json(folder / "data.json")
    reference_json = _read_json(folder / "reference.json")
    model, kwargs, note = _posteriordb_model(posterior, data)
    method = reference_json.get("reference_method", {}).get("method_arguments", {})
    return _model_target(
        name,
        "posteriordb",
        model,
        _posteriordb_reference(reference_json),
        f"posteriordb {posterior}: {note} Reference: {reference_json.get('num_chains')} x "
        f"{reference_json.get('num_draws_per_chain')} Stan NUTS draws ({method.get('control')}).",
        model_kwargs=kwargs,
    )


# --------------------------------------------------------------------------------------------------
# German credit


def _logistic_regression(design, labels):
    beta = numpyro.sample("beta", dist.Normal(0.0, 1.0).expand([design.shape[1]]).to_event(1))
    numpyro.sample(
        "obs", dist.Bernoulli(logits=jnp.asarray(design) @ beta).to_event(1), obs=jnp.asarray(labels)
    )


def _german_credit_target(name: str, data_root: str | Path | None) -> SuiteTarget:
    del name
    if data_root is None:
        raise FileNotFoundError(
            "target 'german_credit' needs data_root (the folder that holds german_credit/)."
        )
    folder = Path(data_root) / "german_credit"
    missing = [
        f for f in ("features.npy", "labels.npy", "reference_moments.json") if not (folder / f).is_file()
    ]
    if missing:
        raise FileNotFoundError(
            f"{folder}: missing {', '.join(missing)}. German credit (numeric, UCI Statlog) is "
            "features.npy (1000 x 24), labels.npy (0/1) and reference_moments.json (posterior mean and "
            "std of the 25 coefficients); see the shared data README."
        )
    features = np.asarray(np.load(folder / "features.npy"), dtype=np.float64)
    labels = np.asarray(np.load(folder / "labels.npy"), dtype=np.float64).reshape(-1)
    with open(folder / "reference_moments.json") as file:
        moments = json.load(file)
    scale = features.std(axis=0)
    standardised = (features - features.mean(axis=0)) / np.where(scale > 0, scale, 1.0)
    design = np.concatenate([standardised, np.ones((features.shape[0], 1))], axis=1)
    mean = np.asarray(moments["mean"], dtype=np.float64)
    sd = np.asarray(moments["std"], dtype=np.float64)
    if mean.shape != (design.shape[1],) or sd.shape != mean.shape:
        raise ValueError(f"{folder}/reference_moments.json: expected {design.shape[1]} means and stds.")
    # The file gives no MCSE but the importance-sampling ESS: MCSE ≈ sd/√ESS for the mean and
    # sd/√(2 ESS) for the sd (Gaussian approximation); 0 if the ESS is absent.
    ess = float(moments.get("importance_sampling_ess", math.inf))
    names = [f"beta[{i + 1}]" for i in range(design.shape[1])]
    reference = {
        n: Reference(float(m), float(s), float(s / math.sqrt(ess)), float(s / math.sqrt(2 * ess)))
        for n, m, s in zip(names, mean, sd, strict=True)
    }
    return _model_target(
        "german_credit",
        "german_credit",
        _logistic_regression,
        reference,
        "Bayesian logistic regression on German credit (1000 x 24, standardised features, bias column "
        "last, prior N(0, I_25)). Reference: importance sampling with a Laplace proposal "
        f"(ESS {ess:.0f}); MCSE from that ESS.",
        model_kwargs={"design": design, "labels": labels},
    )


# --------------------------------------------------------------------------------------------------
# The paper's toy targets


def _toy_target(name: str, data_root: str | Path | None) -> SuiteTarget:
    del data_root
    from l2hmc_ppl import targets

    target = getattr(targets, name)()
    names = [f"x[{i + 1}]" for i in range(target.dim)]
    reference = _exact_references(names, target.mean, np.sqrt(np.diag(target.covariance)))
    return _logdensity_target(
        name,
        "toy",
        target.logdensity_fn,
        target.dim,
        reference,
        _vector_extract(names),
        f"{target.description} Exact moments (l2hmc_ppl.targets.{name}). Initial points N(0, I).",
    )


# --------------------------------------------------------------------------------------------------
# NumPyro's test/infer/test_mcmc.py
#
# Data are regenerated as the tests do without x64 (float32 draws from the tests' keys), whatever
# the current precision, so that the data and the exact moments never depend on jax_enable_x64.

_F32 = jnp.float32


def _beta_moments(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return a / (a + b), np.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))


def _beta_bernoulli(data):
    p_latent = numpyro.sample("p_latent", dist.Beta(jnp.array([1.1, 1.1]), jnp.array([1.1, 1.1])))
    numpyro.sample("obs", dist.Bernoulli(p_latent), obs=jnp.asarray(data))


def _dirichlet_categorical(data):
    p_latent = numpyro.sample("p_latent", dist.Dirichlet(jnp.array([1.0, 1.0, 1.0])))
    numpyro.sample("obs", dist.Categorical(p_latent), obs=jnp.asarray(data))


def _dense_mass_mvn(covariance):
    numpyro.sample("x", dist.MultivariateNormal(jnp.zeros(2), covariance_matrix=jnp.asarray(covariance)))


def _change_point(data, rate):
    """test_change_point_x64's model; ``rate`` = 1/mean(data), computed once (float32, as the test)."""
    data = jnp.asarray(data)
    lambda1 = numpyro.sample("lambda1", dist.Exponential(rate))
    lambda2 = numpyro.sample("lambda2", dist.Exponential(rate))
    tau = numpyro.sample("tau", dist.Uniform(0.0, 1.0))
    lambda12 = jnp.where(jnp.arange(data.shape[0]) < tau * data.shape[0], lambda1, lambda2)
    numpyro.sample("obs", dist.Poisson(lambda12), obs=data)


def _binomial_stable(total_count, successes):
    p = numpyro.sample("p", dist.Beta(1.0, 1.0))
    numpyro.sample("obs", dist.Binomial(total_count, logits=jax.scipy.special.logit(p)), obs=successes)


def _improper_prior(data):
    mean = numpyro.sample("mean", dist.Normal(0.0, 1.0).mask(False))
    std = numpyro.sample("std", dist.ImproperUniform(constraints.positive, (), ()))
    numpyro.sample("obs", dist.Normal(mean, std), obs=jnp.asarray(data))


def _mcmc_progbar(data):
    mean = numpyro.sample("mean", dist.Normal(0.0, 1.0).mask(False))
    std = numpyro.sample("std", dist.LogNormal(0.0, 1.0).mask(False))
    numpyro.sample("obs", dist.Normal(mean, std), obs=jnp.asarray(data))


def _uniform_normal(data, *, masked: bool):
    """test_uniform_normal (``masked=False``) and test_improper_normal (``masked=True``)."""
    from numpyro.distributions.transforms import AffineTransform
    from numpyro.infer.reparam import TransformReparam

    alpha = numpyro.sample("alpha", dist.Uniform(0.0, 1.0))
    base = dist.Uniform(0.0, 1.0).mask(False) if masked else dist.Uniform(0.0, 1.0)
    with numpyro.handlers.reparam(config={"loc": TransformReparam()}):
        loc = numpyro.sample("loc", dist.TransformedDistribution(base, AffineTransform(0.0, alpha)))
    numpyro.sample("obs", dist.Normal(loc, 0.1), obs=jnp.asarray(data))


def _normal_normal(data):
    loc = numpyro.sample("loc", dist.Normal(0.0, 1.0))
    numpyro.sample("obs", dist.Normal(loc, 1.0), obs=jnp.asarray(data))


def _structured_mass(covariance):
    w = numpyro.sample("w", dist.Normal(0.0, 1000.0).expand([2]).to_event(1))
    x = numpyro.sample("x", dist.Normal(0.0, 1000.0).expand([1]).to_event(1))
    y = numpyro.sample("y", dist.Normal(0.0, 1000.0).expand([1]).to_event(1))
    z = numpyro.sample("z", dist.Normal(0.0, 1000.0).expand([1]).to_event(1))
    wxyz = jnp.concatenate([w, x, y, z])
    numpyro.sample("obs", dist.MultivariateNormal(jnp.zeros(5), jnp.asarray(covariance)), obs=wxyz)


def _structured_mass_smoke():
    numpyro.sample("x", dist.Normal(0.0, 1.0))
    numpyro.sample("y", dist.Normal(0.0, 1.0).expand([4]))
    numpyro.sample("w", dist.Normal(0.0, 1.0).expand([2, 5]))
    numpyro.sample("z", dist.Normal(0.0, 1.0).expand([1]))


def _half_normal():
    numpyro.sample("x", dist.HalfNormal(1.0))


def _trivial_dirichlet():
    x = numpyro.sample("x", dist.Dirichlet(jnp.ones(1)))
    numpyro.sample("y", dist.Normal(x, 1.0), obs=2.0)


def _categorical_f32(key, probs, shape) -> np.ndarray:
    """numpyro.distributions.util._categorical with float32 draws (the test without x64)."""
    s = np.cumsum(np.asarray(probs, dtype=np.float32))
    s = jnp.asarray(s[:-1] / s[-1:], _F32)
    r = jax.random.uniform(key, shape=shape + (1,), dtype=_F32)
    return np.asarray(jnp.sum(s < r, axis=-1))


def _product_reference(sd1: float, sd2: float, cov12: float) -> Reference:
    """Exact moments of x₁x₂ for a zero-mean bivariate normal: mean c₁₂, variance σ₁²σ₂² + c₁₂²."""
    return _exact(cov12, math.sqrt(sd1**2 * sd2**2 + cov12**2))


def _numpyro_tests_target(name: str, data_root: str | Path | None) -> SuiteTarget:
    del data_root
    group = "numpyro_tests"
    source = "NumPyro test/infer/test_mcmc.py::"
    key = jax.random.key

    if name == "numpyro_unnormalized_normal":
        true_mean, true_std = 1.0, 0.5
        return _logdensity_target(
            name,
            group,
            _gaussian_logdensity(np.array([true_mean]), np.array([[true_std**2]])),
            1,
            {"x[1]": _exact(true_mean, true_std)},
            _vector_extract(["x[1]"]),
            f"{source}test_unnormalized_normal_x64: potential 0.5 ((z - 1)/0.5)^2, i.e. N(1, 0.5^2). "
            "The test's position is a scalar (init 0.0); here dim = 1 (the log density also accepts "
            "a scalar). Exact moments. Initial points N(0, 1).",
        )
    if name == "numpyro_correlated_mvn":
        d = 5
        noise = np.asarray(jax.random.normal(key(0), (d, d), _F32), dtype=np.float64)
        a = np.tril(0.5 * np.fliplr(np.eye(d)) + 0.1 * np.exp(noise))
        cov = a @ a.T
        names = [f"x[{i + 1}]" for i in range(d)]
        return _logdensity_target(
            name,
            group,
            _gaussian_logdensity(np.zeros(d), cov),
            d,
            _exact_references(names, 0.0, np.sqrt(np.diag(cov))),
            _vector_extract(names),
            f"{source}test_correlated_mvn: 5-d N(0, a a^T), a = tril(0.5 fliplr(I) + 0.1 exp(N(0, 1) "
            "draws of key 0, float32)) (the test asks for a dense mass matrix). Exact moments. "
            "Initial points N(0, I).",
        )
    if name in ("numpyro_beta_bernoulli", "numpyro_functional_beta_bernoulli"):
        functional = name == "numpyro_functional_beta_bernoulli"
        shape = (1000, 2, 2) if functional else (1000, 2)
        data = np.asarray(jax.random.bernoulli(key(1), jnp.array([0.9, 0.1], _F32), shape), dtype=np.float64)
        successes = data.reshape(-1, 2).sum(axis=0)
        trials = data.reshape(-1, 2).shape[0]
        mean, sd = _beta_moments(1.1 + successes, 1.1 + trials - successes)
        test = "test_functional_beta_bernoulli_x64" if functional else "test_beta_bernoulli_x64"
        return _model_target(
            name,
            group,
            _beta_bernoulli,
            _exact_references(["p_latent[1]", "p_latent[2]"], mean, sd),
            f"{source}{test}: p ~ Beta(1.1, 1.1) (2 coordinates), {trials} Bernoulli observations of "
            f"each (true probs 0.9, 0.1; key 1). Exact: conjugate Beta(1.1 + s, 1.1 + n - s), "
            f"s = {successes}.",
            model_args=(data,),
        )
    if name == "numpyro_dirichlet_categorical":
        data = _categorical_f32(key(1), [0.1, 0.6, 0.3], (2000,))
        concentration = 1.0 + np.bincount(data, minlength=3).astype(np.float64)
        total = concentration.sum()
        mean = concentration / total
        sd = np.sqrt(concentration * (total - concentration) / (total**2 * (total + 1)))
        return _model_target(
            name,
            group,
            _dirichlet_categorical,
            _exact_references([f"p_latent[{i + 1}]" for i in range(3)], mean, sd),
            f"{source}test_dirichlet_categorical_x64: p ~ Dirichlet(1, 1, 1), 2000 categorical "
            f"observations (probs 0.1, 0.6, 0.3; key 1). Exact: conjugate Dirichlet{tuple(concentration)}.",
            model_args=(data,),
        )
    if name in ("numpyro_dense_mass_rho08", "numpyro_dense_mass_rhom07"):
        rho = 0.8 if name.endswith("08") else -0.7
        cov = np.array([[10.0, rho], [rho, 0.1]])
        reference = _exact_references(["x[1]", "x[2]"], 0.0, np.sqrt(np.diag(cov)))
        reference["x[1]*x[2]"] = _product_reference(math.sqrt(10.0), math.sqrt(0.1), rho)
        site_extract = _site_extract(["x[1]", "x[2]"])

        def extract(samples):
            out = site_extract(samples)
            out["x[1]*x[2]"] = out["x[1]"] * out["x[2]"]
            return out

        return _model_target(
            name,
            group,
            _dense_mass_mvn,
            reference,
            f"{source}test_dense_mass (rho = {rho}): x ~ N(0, [[10, rho], [rho, 0.1]]) (correlation "
            f"{rho:+.1f}, scales differ 10x). Exact moments, also of x1 x2 (mean rho, variance "
            "10 * 0.1 + rho^2), which the test checks.",
            model_args=(cov,),
            extract=extract,
        )
    if name == "numpyro_change_point":
        # fmt: off
        counts = np.array([
            13, 24, 8, 24, 7, 35, 14, 11, 15, 11, 22, 22, 11, 57, 11, 19, 29, 6, 19, 12, 22,
            12, 18, 72, 32, 9, 7, 13, 19, 23, 27, 20, 6, 17, 13, 10, 14, 6, 16, 15, 7, 2,
            15, 15, 19, 70, 49, 7, 53, 22, 21, 31, 19, 11, 1, 20, 12, 35, 17, 23, 17, 4, 2,
            31, 30, 13, 27, 0, 39, 37, 5, 14, 13, 22])
        # fmt: on
        rate = float(1.0 / np.mean(counts.astype(np.float32), dtype=np.float32))
        reference = _change_point_reference(counts, rate)
        return _model_target(
            name,
            group,
            _change_point,
            reference,
            f"{source}test_change_point_x64: lambda1, lambda2 ~ Exponential(1/mean(data)), tau ~ U(0, 1), "
            "counts ~ Poisson(lambda1 before tau * n, else lambda2). Exact: given the switch index s "
            "(tau in ((s-1)/n, s/n]) the rates are conjugate Gammas; the posterior is a 74-term mixture "
            "with closed-form weights. The density is piecewise constant in tau (a hard case for "
            "gradient-based samplers).",
            model_args=(counts, rate),
        )
    if name == "numpyro_binomial_stable":
        total_count, successes = 5_000_000, 3849
        mean, sd = _beta_moments(1.0 + successes, 1.0 + total_count - successes)
        return _model_target(
            name,
            group,
            _binomial_stable,
            {"p": _exact(mean, sd)},
            f"{source}test_binomial_stable_x64: p ~ Beta(1, 1), 3849 successes of 5e6 (Binomial with "
            "logits = logit(p): the test's with_logits parameter is a non-empty string, so both of its "
            "cases take this branch). Exact: Beta(3850, 4996152). Needs float64.",
            model_args=(total_count, successes),
        )
    if name in ("numpyro_improper_prior", "numpyro_mcmc_progbar"):
        data = np.asarray(1.0 + 2.0 * jax.random.normal(key(1), (2000,), _F32), dtype=np.float64)
        reference = _flat_normal_reference(data)
        if name == "numpyro_improper_prior":
            model, what = (
                _improper_prior,
                "test_improper_prior: mean ~ Normal(0, 1).mask(False), std ~ ImproperUniform(positive)",
            )
        else:
            model, what = (
                _mcmc_progbar,
                "test_mcmc_progbar: mean ~ Normal(0, 1).mask(False), std ~ LogNormal(0, 1).mask(False)",
            )
        return _model_target(
            name,
            group,
            model,
            reference,
            f"{source}{what}, i.e. flat priors on mean and std; 2000 observations N(1, 2^2) (key 1). "
            "Exact: std^2 ~ InvGamma(n/2 - 1, SS/2), mean | std ~ N(ybar, std^2/n).",
            model_args=(data,),
        )
    if name in ("numpyro_uniform_normal", "numpyro_improper_normal"):
        masked = name == "numpyro_improper_normal"
        data = np.asarray(0.9 + jax.random.normal(key(0), (1000,), _F32), dtype=np.float64)
        test = "test_improper_normal (base Uniform(0, 1).mask(False))" if masked else "test_uniform_normal"
        return _model_target(
            name,
            group,
            functools.partial(_uniform_normal, masked=masked),
            _uniform_normal_reference(data, 0.1),
            f"{source}{test}: alpha ~ U(0, 1), loc = alpha * u with u ~ U(0, 1) (TransformReparam: "
            "latent loc_base, deterministic loc), 1000 observations ~ N(loc, 0.1^2) (0.9 + N(0, 1) draws, "
            "key 0). Masking the uniform's log density (zero on its support) changes nothing, so both "
            "tests have this posterior. Exact up to quadrature: p(loc) ∝ L(loc) (-log loc), E[alpha | loc] "
            "= (1 - loc)/(-log loc), E[alpha^2 | loc] = (1 - loc^2)/(-2 log loc), integrated over loc.",
            model_args=(data,),
        )
    if name == "numpyro_diverging_normal":
        data = np.asarray(jax.random.normal(key(0), (1000,), _F32), dtype=np.float64)
        n = data.size
        return _model_target(
            name,
            group,
            _normal_normal,
            {"loc": _exact(data.sum() / (n + 1), 1.0 / math.sqrt(n + 1))},
            f"{source}test_diverging's model: loc ~ N(0, 1), 1000 observations ~ N(loc, 1) (key 0). "
            "Exact: N(sum y/(n + 1), 1/(n + 1)). (The test forces divergences with step_size=10 and no "
            "adaptation; the model itself is benign.)",
            model_args=(data,),
        )
    if name == "numpyro_structured_mass":
        cov = np.zeros((5, 5))
        cov[:2, :2] = [[1.5, 0.5], [0.5, 1.5]]
        cov[2:4, 2:4] = [[2.0, 1.0], [1.0, 3.0]]
        cov[4, 4] = 2.5
        posterior_cov = np.linalg.inv(np.linalg.inv(cov) + np.eye(5) / 1000.0**2)
        names = ["w[1]", "w[2]", "x[1]", "y[1]", "z[1]"]
        return _model_target(
            name,
            group,
            _structured_mass,
            _exact_references(names, 0.0, np.sqrt(np.diag(posterior_cov))),
            f"{source}test_structured_mass: w (2), x, y, z (1 each) ~ N(0, 1000^2), and the factor "
            "MVN(0, C) at (w, x, y, z) (block-diagonal C). Exact: Gaussian, covariance (C^-1 + 1e-6 I)^-1.",
            model_args=(cov,),
        )
    if name == "numpyro_structured_mass_smoke":
        names = [
            n
            for site, shape in (("x", ()), ("y", (4,)), ("w", (2, 5)), ("z", (1,)))
            for n, _ in _flat_names(site, shape)
        ]
        return _model_target(
            name,
            group,
            _structured_mass_smoke,
            _exact_references(names, 0.0, 1.0),
            f"{source}test_structured_mass_smoke: independent N(0, 1) sites of shapes (), (4,), (2, 5), "
            "(1,) (16 coordinates; flat names x, y[i], w[i,j], z[1]). Exact. The standard-normal priors "
            "of test_extra_fields, test_compile_warmup_run and test_initial_inverse_mass_matrix* are "
            "special cases.",
        )
    if name == "numpyro_half_normal":
        return _model_target(
            name,
            group,
            _half_normal,
            {"x": _exact(math.sqrt(2 / math.pi), math.sqrt(1 - 2 / math.pi))},
            f"{source}test_extra_fields_include_unconstrained_samples: x ~ HalfNormal(1) (a positive "
            "site, sampled as log x). Exact: mean sqrt(2/pi), sd sqrt(1 - 2/pi).",
        )
    if name == "numpyro_trivial_dirichlet":
        return _model_target(
            name,
            group,
            _trivial_dirichlet,
            {"x[1]": _exact(1.0, 0.0)},
            f"{source}test_trivial_dirichlet (batch shape ()): x ~ Dirichlet([1]), y ~ N(x, 1) observed. "
            "x = 1 almost surely: the unconstrained dimension is 0 (a sampler must cope with an empty "
            "position); mean 1, sd 0, and ESS/R-hat are undefined.",
        )
    raise KeyError(name)


def _change_point_reference(counts: np.ndarray, rate: float) -> dict[str, Reference]:
    """Exact moments of test_change_point_x64's posterior (mixture over the switch index s = 1..n)."""
    n = counts.size
    s = np.arange(1, n + 1)
    cumulative = np.concatenate([[0], np.cumsum(counts)])
    before, after = cumulative[s], cumulative[-1] - cumulative[s]  # counts on lambda1 / lambda2
    shape1, rate1 = 1.0 + before, rate + s
    shape2, rate2 = 1.0 + after, rate + (n - s)
    log_w = gammaln(shape1) - shape1 * np.log(rate1) + gammaln(shape2) - shape2 * np.log(rate2)
    w = np.exp(log_w - log_w.max())
    w /= w.sum()

    def moments(first, second):
        mean = float(np.sum(w * first))
        return mean, math.sqrt(max(float(np.sum(w * second)) - mean**2, 0.0))

    m1 = moments(shape1 / rate1, shape1 * (shape1 + 1) / rate1**2)
    m2 = moments(shape2 / rate2, shape2 * (shape2 + 1) / rate2**2)
    lo, hi = (s - 1) / n, s / n  # tau uniform on (lo, hi]
    mt = moments((lo + hi) / 2, (lo**2 + lo * hi + hi**2) / 3)
    return {"lambda1": _exact(*m1), "lambda2": _exact(*m2), "tau": _exact(*mt)}


def _flat_normal_reference(data: np.ndarray) -> dict[str, Reference]:
    """Exact moments of N(mean, std²) data under flat priors on mean ∈ ℝ and std > 0."""
    n = data.size
    ybar = float(data.mean())
    a, b = n / 2 - 1, float(np.sum((data - ybar) ** 2)) / 2  # std² ~ InvGamma(a, b)
    e_std = math.sqrt(b) * math.exp(gammaln(a - 0.5) - gammaln(a))
    e_var = b / (a - 1)
    return {
        "mean": _exact(ybar, math.sqrt(e_var / n)),
        "std": _exact(e_std, math.sqrt(e_var - e_std**2)),
    }


def _uniform_normal_reference(data: np.ndarray, noise_sd: float) -> dict[str, Reference]:
    """Moments of (alpha, loc) in test_uniform_normal by quadrature over loc (see the target's note)."""
    n = data.size
    ybar, s = float(data.mean()), noise_sd / math.sqrt(n)
    lo, hi = max(ybar - 40 * s, 1e-12), min(ybar + 40 * s, 1.0)
    loc = np.linspace(lo, hi, 400_001)
    log_lik = -0.5 * ((loc - ybar) / s) ** 2
    lik = np.exp(log_lik - log_lik.max())
    neg_log = -np.log(loc)
    z = np.trapezoid(lik * neg_log, loc)

    def expect(values):
        return float(np.trapezoid(lik * values, loc) / z)

    e_loc, e_loc2 = expect(loc * neg_log), expect(loc**2 * neg_log)
    e_alpha, e_alpha2 = expect(1.0 - loc), expect((1.0 - loc**2) / 2)
    return {
        "alpha": _exact(e_alpha, math.sqrt(e_alpha2 - e_alpha**2)),
        "loc": _exact(e_loc, math.sqrt(e_loc2 - e_loc**2)),
    }


_NUMPYRO_TESTS: tuple[str, ...] = (
    "numpyro_unnormalized_normal",
    "numpyro_correlated_mvn",
    "numpyro_beta_bernoulli",
    "numpyro_functional_beta_bernoulli",
    "numpyro_dirichlet_categorical",
    "numpyro_dense_mass_rho08",
    "numpyro_dense_mass_rhom07",
    "numpyro_change_point",
    "numpyro_binomial_stable",
    "numpyro_improper_prior",
    "numpyro_mcmc_progbar",
    "numpyro_uniform_normal",
    "numpyro_improper_normal",
    "numpyro_diverging_normal",
    "numpyro_structured_mass",
    "numpyro_structured_mass_smoke",
    "numpyro_half_normal",
    "numpyro_trivial_dirichlet",
)


# --------------------------------------------------------------------------------------------------
# BlackJAX's tests/mcmc/test_sampling.py


def _triangle_init(rng_key, num: int, *, dim: int):
    """Uniform points in the triangle {x > 0, x1 + x2 < 1} (inside the constrained normal's support)."""
    dtype = jax.dtypes.canonicalize_dtype(jnp.float64)
    return jax.random.dirichlet(rng_key, jnp.ones(dim + 1, dtype), (num,))[:, :dim]


def _blackjax_tests_target(name: str, data_root: str | Path | None) -> SuiteTarget:
    del data_root
    group = "blackjax_tests"
    source = "BlackJAX tests/mcmc/test_sampling.py::"
    key = jax.random.key

    if name == "blackjax_univariate_normal":
        return _logdensity_target(
            name,
            group,
            _gaussian_logdensity(np.array([1.0]), np.array([[4.0]])),
            1,
            {"x[1]": _exact(1.0, 2.0)},
            _vector_extract(["x[1]"]),
            f"{source}UnivariateNormalTest: stats.norm.logpdf(x, 1, 2), N(1, 2^2). The tests use a scalar "
            "position (e.g. init 3.0); here dim = 1 (the log density also accepts a scalar). Exact. "
            "Initial points N(0, 1). (NumPyro's test_functional_map uses the same N(1, 2^2).)",
        )
    if name == "blackjax_latent_gaussian":
        return _logdensity_target(
            name,
            group,
            _gaussian_logdensity(np.array([2.0 / 3.0]), np.array([[2.0 / 3.0]])),
            1,
            {"x[1]": _exact(2.0 / 3.0, math.sqrt(2.0 / 3.0))},
            _vector_extract(["x[1]"]),
            f"{source}LatentGaussianTest: prior N(0, C = 2) (mgrad_gaussian's covariance) times the "
            "likelihood exp(-(x - 1)^2/2), position of shape (1,). Exact: N(2/3, 2/3).",
        )
    if name == "blackjax_mcse_mvn":
        loc, scale, rho = np.array([0.0, 3.0]), np.array([1.0, 2.0]), 0.75
        cov = np.diag(scale**2)
        cov[0, 1] = cov[1, 0] = rho * scale[0] * scale[1]
        reference = _exact_references(["x[1]", "x[2]"], loc, scale)
        # The test also checks the correlation: E[z1 z2] = rho, Var(z1 z2) = 1 + rho^2 (standardised).
        reference["z[1]*z[2]"] = _product_reference(1.0, 1.0, rho)

        def product(x):
            return (x[..., 0] - loc[0]) * (x[..., 1] - loc[1]) / (scale[0] * scale[1])

        return _logdensity_target(
            name,
            group,
            _gaussian_logdensity(loc, cov),
            2,
            reference,
            _vector_extract(["x[1]", "x[2]"], {"z[1]*z[2]": product}),
            f"{source}MonteCarloStandardErrorTest: N((0, 3), cov) with scales (1, 2) and correlation 0.75. "
            "Exact, also the standardised product z1 z2 (mean 0.75, sd sqrt(1 + 0.75^2)).",
        )
    if name == "blackjax_ill_conditioned_gaussian":
        dim = 100
        eigs = np.logspace(-0.5, 0.5, dim)
        names = [f"x[{i + 1}]" for i in range(dim)]
        return _logdensity_target(
            name,
            group,
            _gaussian_logdensity(np.zeros(dim), np.diag(eigs)),
            dim,
            _exact_references(names, 0.0, np.sqrt(eigs)),
            _vector_extract(names),
            f"{source}LinearRegressionTest.test_mclmc_preconditioning: IllConditionedGaussian(d = 100, "
            "condition number 10), N(0, diag(logspace(-0.5, 0.5, 100))). Exact.",
        )
    if name == "blackjax_constrained_normal":
        reference = _triangle_normal_reference()
        return _logdensity_target(
            name,
            group,
            _constrained_normal_logdensity,
            2,
            reference,
            _vector_extract(["x[1]", "x[2]"]),
            f"{source}ConstrainedNormal: N(0, I_2) restricted to A x < b, the triangle x1 > 0, x2 > 0, "
            "x1 + x2 < 1 (log density -inf outside, no gradient from the walls). Exact up to 1-d "
            "Gauss-Legendre quadrature of phi(x1) (Phi(1 - x1) - 1/2). Initial points uniform in the "
            "triangle (N(0, I) points would start outside the support).",
            initial_position=_triangle_init,
        )
    if name == "blackjax_linear_regression":
        _, k0, k1 = jax.random.split(key(19), 3)
        x32 = jax.random.normal(k0, (1000, 1), _F32)
        y32 = 3 * x32 + jax.random.normal(k1, (1000, 1), _F32)  # float32 arithmetic, as the test
        x, y = (np.asarray(v, dtype=np.float64)[:, 0] for v in (x32, y32))
        reference = _linear_regression_reference(x, y)
        return _logdensity_target(
            name,
            group,
            _linear_regression_logdensity(x, y),
            2,
            reference,
            _vector_extract(["coefs", "log_scale"], {"scale": lambda v: np.exp(v[..., 1])}),
            f"{source}LinearRegressionTest: y = 3 x + N(0, 1) (1000 points, key 19), coefs ~ N(0, 5^2), "
            "scale ~ Exponential(1) sampled as log_scale (with its Jacobian). Position (coefs, "
            "log_scale): the order in which ravel_pytree flattens the test's dict. Exact up to 1-d "
            "quadrature: coefs | scale is Gaussian in closed form, the marginal of log_scale is "
            "integrated on a fine grid.",
        )
    if name == "blackjax_sgmcmc_normal_mean":
        _, data_key = jax.random.split(key(19), 2)
        data = np.asarray(jax.random.normal(data_key, (1000, 5), _F32), dtype=np.float64)
        precision = 0.01 + data.size
        mean = data.sum() / precision

        def logdensity_fn(theta):
            theta = jnp.reshape(jnp.asarray(theta), ())
            values = jnp.asarray(data, theta.dtype)
            return -0.5 * 0.01 * theta**2 - 0.5 * jnp.sum((values - theta) ** 2)

        return _logdensity_target(
            name,
            group,
            logdensity_fn,
            1,
            {"x[1]": _exact(mean, 1.0 / math.sqrt(precision))},
            _vector_extract(["x[1]"]),
            f"{source}SGMCMCTest: logprior -0.005 theta^2, loglikelihood -0.5 |x - theta|^2 summed over "
            "1000 data points in R^5 (key 19), with the tests' scalar position theta (they only take a "
            "step). Exact: conjugate N(sum x / (0.01 + 5000), 1/(0.01 + 5000)).",
        )
    raise KeyError(name)


def _constrained_normal_logdensity(x):
    x = jnp.reshape(jnp.asarray(x), (-1,))
    inside = (x[0] > 0) & (x[1] > 0) & (x[0] + x[1] < 1)
    return jnp.where(inside, -0.5 * jnp.sum(x**2), -jnp.inf)


def _triangle_normal_reference() -> dict[str, Reference]:
    """Moments of N(0, I₂) restricted to the triangle x > 0, x1 + x2 < 1 (the same for x1 and x2)."""
    nodes, weights = np.polynomial.legendre.leggauss(200)
    t, w = (nodes + 1) / 2, weights / 2  # on (0, 1)
    inner = np.exp(-0.5 * t**2) * (ndtr(1 - t) - 0.5)  # ∫ φ(x2) over (0, 1 - x1), up to a constant
    z = np.sum(w * inner)
    e1, e2 = np.sum(w * t * inner) / z, np.sum(w * t**2 * inner) / z
    return _exact_references(["x[1]", "x[2]"], e1, math.sqrt(e2 - e1**2))


def _linear_regression_logdensity(x: np.ndarray, y: np.ndarray) -> Callable:
    """BlackJAX's regression_logprob over the flat position (coefs, log_scale)."""

    def logdensity_fn(position):
        position = jnp.asarray(position)
        coefs, log_scale = position[0], position[1]
        xs, ys = jnp.asarray(x, position.dtype), jnp.asarray(y, position.dtype)
        scale = jnp.exp(log_scale)
        log_prior = -scale + log_scale + jax.scipy.stats.norm.logpdf(coefs, 0.0, 5.0)
        return log_prior + jnp.sum(jax.scipy.stats.norm.logpdf(ys, xs * coefs, scale))

    return logdensity_fn


def _linear_regression_reference(x: np.ndarray, y: np.ndarray) -> dict[str, Reference]:
    """Moments of (coefs, log_scale, scale): coefs | scale in closed form, 1-d grid over log_scale."""
    n, sxx, sxy, syy = x.size, float(x @ x), float(x @ y), float(y @ y)

    def parts(log_scale):
        variance = np.exp(2 * log_scale)
        precision = 1 / 25 + sxx / variance
        b = sxy / variance
        log_w = -np.exp(log_scale) + log_scale - n * log_scale - syy / (2 * variance)
        log_w = log_w + b**2 / (2 * precision) - 0.5 * np.log(precision)
        return log_w, b / precision, 1 / precision

    coarse = np.linspace(-5.0, 5.0, 100_001)
    centre = coarse[np.argmax(parts(coarse)[0])]
    grid = np.linspace(centre - 1.0, centre + 1.0, 200_001)
    log_w, m, v = parts(grid)
    w = np.exp(log_w - log_w.max())
    w /= w.sum()

    def moments(first, second):
        mean = float(np.sum(w * first))
        return _exact(mean, math.sqrt(float(np.sum(w * second)) - mean**2))

    return {
        "coefs": moments(m, m**2 + v),
        "log_scale": moments(grid, grid**2),
        "scale": moments(np.exp(grid), np.exp(2 * grid)),
    }


_BLACKJAX_TESTS: tuple[str, ...] = (
    "blackjax_univariate_normal",
    "blackjax_latent_gaussian",
    "blackjax_mcse_mvn",
    "blackjax_ill_conditioned_gaussian",
    "blackjax_constrained_normal",
    "blackjax_linear_regression",
    "blackjax_sgmcmc_normal_mean",
)


# --------------------------------------------------------------------------------------------------
# Stress targets


def _funnel(dim: int = 10):
    v = numpyro.sample("v", dist.Normal(0.0, 3.0))
    numpyro.sample("x", dist.Normal(0.0, jnp.exp(v / 2)).expand([dim - 1]).to_event(1))


def _stress_target(name: str, data_root: str | Path | None) -> SuiteTarget:
    del data_root
    if name == "funnel10":
        names = ["v"] + [f"x[{i + 1}]" for i in range(9)]
        sds = [3.0] + [math.exp(9 / 4)] * 9
        return _model_target(
            name,
            "stress",
            _funnel,
            _exact_references(names, 0.0, sds),
            "Neal's funnel, centred, 10-d: v ~ N(0, 3^2), x_i | v ~ N(0, e^v), i = 1..9. Exact: means 0, "
            "sd(v) = 3, sd(x_i) = sqrt(E e^v) = e^(9/4). Hard: the neck (v << 0) is rarely reached.",
        )
    if name == "correlated_gaussian4":
        scales = np.array([0.5, 1.0, 2.0, 5.0])
        correlation = np.full((4, 4), 0.9) + 0.1 * np.eye(4)
        cov = correlation * np.outer(scales, scales)
        names = [f"x[{i + 1}]" for i in range(4)]
        return _logdensity_target(
            name,
            "stress",
            _gaussian_logdensity(np.zeros(4), cov),
            4,
            _exact_references(names, 0.0, scales),
            _vector_extract(names),
            "4-d Gaussian N(0, D R D), scales D = (0.5, 1, 2, 5) (10x apart), all correlations 0.9 "
            "(eigenvalues of R: 3.7 and 0.1 x 3). Exact. Initial points N(0, I).",
        )
    raise KeyError(name)


# --------------------------------------------------------------------------------------------------
# Registry


def _registry() -> dict[str, tuple[str, Callable[[str, str | Path | None], SuiteTarget]]]:
    entries: dict[str, tuple[str, Callable]] = {}
    for name in _POSTERIORDB:
        entries[name] = ("posteriordb", _posteriordb_target)
    entries["german_credit"] = ("german_credit", _german_credit_target)
    for name in ("icg", "scg", "rough_well", "mog"):
        entries[name] = ("toy", _toy_target)
    for name in _NUMPYRO_TESTS:
        entries[name] = ("numpyro_tests", _numpyro_tests_target)
    for name in _BLACKJAX_TESTS:
        entries[name] = ("blackjax_tests", _blackjax_tests_target)
    for name in ("funnel10", "correlated_gaussian4"):
        entries[name] = ("stress", _stress_target)
    return entries


_REGISTRY = _registry()


def target_names(groups: Sequence[str] | None = None) -> list[str]:
    """Names of the suite's targets, in suite order, optionally only those of ``groups``."""
    _check_groups(groups)
    return [name for name, (group, _) in _REGISTRY.items() if groups is None or group in groups]


def _check_groups(groups: Sequence[str] | None) -> None:
    unknown = sorted(set(groups or ()) - set(GROUPS))
    if unknown:
        raise ValueError(f"unknown group(s) {unknown}; the groups are {list(GROUPS)}")


def get_target(name: str, data_root: str | Path | None) -> SuiteTarget:
    """Build one target of the suite.

    Args:
        name: A name from `target_names`.
        data_root: Folder that holds ``posteriordb/`` and ``german_credit/`` (may be ``None`` for
            the targets that read no files).

    Raises:
        KeyError: If ``name`` is not a suite target.
        FileNotFoundError: If the target's data files are missing (the message names them).
    """
    if name not in _REGISTRY:
        raise KeyError(f"unknown suite target {name!r}; the targets are {list(_REGISTRY)}")
    _, builder = _REGISTRY[name]
    return builder(name, data_root)


def load_suite(data_root: str | Path | None, groups: Sequence[str] | None = None) -> list[SuiteTarget]:
    """Build the suite's targets (all of them, or those of ``groups``), in suite order.

    Args:
        data_root: Folder that holds ``posteriordb/`` and ``german_credit/``; only the groups
            ``posteriordb`` and ``german_credit`` read it.
        groups: Subset of `GROUPS`, or ``None`` for all.

    Raises:
        ValueError: On an unknown group.
        FileNotFoundError: If a selected target's data files are missing.
    """
    return [get_target(name, data_root) for name in target_names(groups)]


# --------------------------------------------------------------------------------------------------
# Comparing a run with the reference


def _ess(x: np.ndarray) -> float:
    """NumPyro's multi-chain ESS of draws (chains, draws); nan for constant draws."""
    x = np.asarray(x, dtype=np.float64)
    if x.shape[-1] < 4 or not np.all(np.isfinite(x)) or np.ptp(x) == 0:
        return math.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(effective_sample_size(x))


def _z(difference: float, standard_error: float, scale: float) -> float:
    """|difference| / standard error; 0 or inf where the error is zero (a constant quantity)."""
    if standard_error > 0 and math.isfinite(standard_error):
        return abs(difference) / standard_error
    return 0.0 if abs(difference) <= 1e-9 * max(1.0, abs(scale)) else math.inf


def moment_z_scores(
    draws: dict[str, np.ndarray], reference: dict[str, Reference]
) -> dict[str, tuple[float, float]]:
    """Per quantity, the z-scores (z_mean, z_sd) of a run's mean and sd against the reference.

    With x the pooled draws (chains, draws) of one quantity, mean and sd their sample moments and
    ESS NumPyro's multi-chain effective sample size::

        z_mean = |mean − ref.mean| / √(MCSE_mean² + ref.mcse_mean²),  MCSE_mean = sd / √ESS(x)
        z_sd   = |sd − ref.sd|     / √(MCSE_sd² + ref.mcse_sd²),
                 MCSE_sd = sd(y) / √ESS(y) / (2 sd),  y = (x − mean)²   (delta method)

    A constant quantity (sd 0, ESS undefined) scores 0 where it equals the reference, else inf.

    Args:
        draws: ``{name: (num_chains, num_draws)}`` (`SuiteTarget.extract`'s output).
        reference: The target's reference; every key must be in ``draws``.

    Returns:
        ``{name: (z_mean, z_sd)}`` for the keys of ``reference``.
    """
    scores = {}
    for name, ref in reference.items():
        x = np.asarray(draws[name], dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"draws[{name!r}] must have shape (num_chains, num_draws), got {x.shape}")
        mean, sd = float(x.mean()), float(x.std(ddof=1))
        if sd > 0 and np.all(np.isfinite(x)):
            mcse_mean = sd / math.sqrt(_ess(x))
            y = (x - mean) ** 2
            mcse_sd = float(y.std(ddof=1)) / math.sqrt(_ess(y)) / (2 * sd)
        else:
            mcse_mean = mcse_sd = 0.0
        z_mean = _z(mean - ref.mean, math.hypot(mcse_mean, ref.mcse_mean), ref.mean)
        z_sd = _z(sd - ref.sd, math.hypot(mcse_sd, ref.mcse_sd), ref.sd)
        scores[name] = (z_mean, z_sd)
    return scores


def min_moment_ess(draws: dict[str, np.ndarray]) -> float:
    """min over quantities of min(ESS of x, ESS of (x − mean)²); constant quantities are skipped.

    Returns nan when every quantity is constant (nothing to estimate).
    """
    values = []
    for x in draws.values():
        x = np.asarray(x, dtype=np.float64)
        values += [_ess(x), _ess((x - x.mean()) ** 2)]
    finite = [v for v in values if not math.isnan(v)]
    return min(finite) if finite else math.nan
