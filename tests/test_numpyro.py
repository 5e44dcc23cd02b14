"""Tests of the NumPyro adapter: ``MCMC(L2HMCKernel(model))`` on real NumPyro programs.

Statistical checks compare posterior moments with a reference (closed form, the German credit
reference file, posteriordb's gold standard, or another run) within Z Monte Carlo standard errors,
sd/√ESS with NumPyro's multi-chain ESS, never a hand-picked tolerance; every checked quantity also
needs an ESS floor, so that a stuck chain fails as "did not mix". Trainings are compiled once per
module and shared: the other tests reuse the trained dynamics (``dynamics=``), which skips training.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
import textwrap
from contextlib import redirect_stdout
from pathlib import Path

import arviz as az
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from jax.flatten_util import ravel_pytree
from numpyro.infer import MCMC, NUTS, Predictive

import l2hmc_ppl
from benchmarks.suite_targets import get_target, min_moment_ess, moment_z_scores
from l2hmc_ppl import L2HMCDynamics
from l2hmc_ppl.numpyro import L2HMCKernel, L2HMCKernelState, get_dynamics
from l2hmc_ppl.targets import resolve_german_credit_dir
from l2hmc_ppl.training import load, save
from tests.conftest import DATA_ROOT, needs_posteriordb
from tests.mutants import dropped_log_det, randomize_heads
from tests.stats import MIN_ESS, Z_THRESHOLD, mcmc_moment_z_scores, mean_and_mcse

REPO_ROOT = Path(__file__).resolve().parents[1]

# ------------------------------------------------------------------------------------------------
# Models (module level, so that MCMC objects pickle)

EIGHT_SCHOOLS_Y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
EIGHT_SCHOOLS_SIGMA = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])


def eight_schools(sigma, y=None):
    """Non-centred eight schools (Rubin 1981; Gelman et al., BDA3 §5.5)."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("schools", sigma.shape[0]):
        theta_raw = numpyro.sample("theta_raw", dist.Normal(0.0, 1.0))
        theta = numpyro.deterministic("theta", mu + tau * theta_raw)
        numpyro.sample("obs", dist.Normal(theta, sigma), obs=y)


SCALE_PRIOR = 1.5
DIRICHLET_PRIOR = np.array([1.0, 2.0, 3.0])
CATEGORY_COUNTS = np.array([3.0, 0.0, 5.0])


def constrained_model(counts):
    """A HalfNormal scale (prior only) and a Dirichlet simplex with multinomial counts (conjugate)."""
    scale = numpyro.sample("scale", dist.HalfNormal(SCALE_PRIOR))
    numpyro.deterministic("variance", scale**2)
    probs = numpyro.sample("probs", dist.Dirichlet(jnp.asarray(DIRICHLET_PRIOR)))
    numpyro.factor("counts", jnp.sum(counts * jnp.log(probs)))


def discrete_model():
    component = numpyro.sample("component", dist.Bernoulli(0.3))
    numpyro.sample("x", dist.Normal(component, 1.0))


def logistic_regression(features, labels=None):
    """Bayesian logistic regression: N(0, 1) prior on weights and bias, Bernoulli-logit likelihood."""
    weights = numpyro.sample("weights", dist.Normal(0.0, 1.0).expand([features.shape[1]]).to_event(1))
    bias = numpyro.sample("bias", dist.Normal(0.0, 1.0))
    numpyro.sample("obs", dist.Bernoulli(logits=features @ weights + bias), obs=labels)


# A target on a pytree {"a": (2,), "b": ()}, given as a potential: a correlated Gaussian pair and an
# independent, skewed Gumbel(0, 1) scalar (mean: Euler's γ, variance π²/6).
POTENTIAL_MEAN = {"a": np.array([1.0, -2.0]), "b": np.array(np.euler_gamma)}
POTENTIAL_VAR = {"a": np.array([4.0, 0.25 + 0.25 * 4.0]), "b": np.array(np.pi**2 / 6)}


def pytree_potential(z):
    a = z["a"] - POTENTIAL_MEAN["a"]
    # a₀ ~ N(0, 4), a₁ | a₀ ~ N(a₀/2, 1/4)
    return 0.5 * (a[0] ** 2 / 4.0 + (a[1] - 0.5 * a[0]) ** 2 / 0.25) + z["b"] + jnp.exp(-z["b"])


# ------------------------------------------------------------------------------------------------
# Moment checks with Monte Carlo standard errors (tests/stats.py)


def assert_moments_match_truth(draws, true_mean, true_variance, name):
    """Mean and variance of ``draws`` (chains, samples, ...) within Z MCSE of the truth."""
    mean_z, var_z, min_ess = mcmc_moment_z_scores(draws, true_mean, true_variance)
    assert min_ess > MIN_ESS, f"{name}: did not mix (ESS {min_ess:.0f})"
    assert np.max(np.abs(mean_z)) < Z_THRESHOLD, f"{name}: mean z-scores {mean_z}"
    assert np.max(np.abs(var_z)) < Z_THRESHOLD, f"{name}: variance z-scores {var_z}"


def assert_same_moments(draws, reference_draws, name):
    """First and second moments of two runs agree within Z combined MCSE."""
    for power in (1, 2):
        mean, mcse, ess = mean_and_mcse(np.asarray(draws) ** power)
        ref_mean, ref_mcse, ref_ess = mean_and_mcse(np.asarray(reference_draws) ** power)
        assert np.min(ess) > MIN_ESS, f"{name}: did not mix (ESS {np.min(ess):.0f} for moment {power})"
        assert np.min(ref_ess) > MIN_ESS, f"{name}: reference did not mix"
        z = (mean - ref_mean) / np.sqrt(mcse**2 + ref_mcse**2)
        assert np.max(np.abs(z)) < Z_THRESHOLD, f"{name}: moment {power} z-scores {z}"


def _tree_equal(a, b) -> bool:
    return all(
        bool(jnp.array_equal(x, y))
        for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True)
    )


# ------------------------------------------------------------------------------------------------
# Shared (compiled once) runs

EXTRA_FIELDS = ("accept_prob", "log_det_jacobian", "num_steps", "energy", "potential_energy", "step_size")


@pytest.fixture(scope="module")
def eight_schools_run():
    """Trained L2HMC on eight schools: two sequential chains (one compilation of the training)."""
    kernel = L2HMCKernel(eight_schools, num_particles=32)
    mcmc = MCMC(
        kernel, num_warmup=200, num_samples=1000, num_chains=2, chain_method="sequential", progress_bar=False
    )
    mcmc.warmup(jax.random.key(0), EIGHT_SCHOOLS_SIGMA, y=EIGHT_SCHOOLS_Y)
    mcmc.run(jax.random.key(1), EIGHT_SCHOOLS_SIGMA, y=EIGHT_SCHOOLS_Y, extra_fields=EXTRA_FIELDS)
    return mcmc


@pytest.fixture(scope="module")
def trained_dynamics(eight_schools_run):
    return get_dynamics(eight_schools_run, chain=1)


@needs_posteriordb
def test_eight_schools_matches_the_reference_posterior(eight_schools_run):
    """Means and sds of mu, tau and theta against posteriordb's gold standard (same model and data)."""
    target = get_target("eight_schools_noncentered", DATA_ROOT)
    np.testing.assert_array_equal(target.model_kwargs["y"], EIGHT_SCHOOLS_Y)
    np.testing.assert_array_equal(target.model_kwargs["sigma"], EIGHT_SCHOOLS_SIGMA)
    samples = eight_schools_run.get_samples(group_by_chain=True)
    draws = {"mu": samples["mu"], "tau": samples["tau"]}
    draws |= {f"theta[{j + 1}]": samples["theta"][..., j] for j in range(EIGHT_SCHOOLS_Y.size)}
    ess = min_moment_ess(draws)
    assert ess > MIN_ESS, f"did not mix (min ESS {ess:.0f})"
    for name, (z_mean, z_sd) in moment_z_scores(draws, target.reference).items():
        assert z_mean < Z_THRESHOLD and z_sd < Z_THRESHOLD, f"{name}: z {z_mean:.2f} (mean), {z_sd:.2f} (sd)"


def test_training_happened_once_for_all_chains_and_sampling_is_frozen(eight_schools_run):
    state = eight_schools_run.last_state
    assert isinstance(state, L2HMCKernelState)
    assert state.training.loss.shape == (2, 200)
    assert np.all(np.isfinite(state.training.loss))
    # The sampler is trained once, on the particles, and every chain samples with it ...
    first, second = get_dynamics(eight_schools_run, 0), get_dynamics(eight_schools_run, 1)
    assert _tree_equal(first, second)
    # ... each chain starting from its own trained particle: different states after warm-up.
    assert not np.array_equal(
        np.asarray(eight_schools_run.post_warmup_state.z["mu"][0]),
        np.asarray(eight_schools_run.post_warmup_state.z["mu"][1]),
    )
    # Sampling did not change the dynamics: the post-warmup dynamics are the final ones.
    assert _tree_equal(eight_schools_run.post_warmup_state.dynamics, state.dynamics)
    # The chains sample with the trained heads, or with the tuned HMC (zero heads) when the
    # selection found that it mixes better.
    at_hmc_limit = _tree_equal(first.position_net, first.as_hmc_limit().position_net)
    assert at_hmc_limit == bool(state.training.kept_tuned_hmc[0])
    step_sizes = eight_schools_run.get_extra_fields(group_by_chain=True)["step_size"]
    assert np.all(step_sizes == step_sizes[:, :1])


def test_fields_and_print_summary(eight_schools_run):
    fields = eight_schools_run.get_extra_fields(group_by_chain=True)
    assert set(fields) == {"diverging", *EXTRA_FIELDS}
    assert fields["diverging"].dtype == bool and fields["diverging"].shape == (2, 1000)
    assert np.all((fields["accept_prob"] >= 0) & (fields["accept_prob"] <= 1))
    assert np.all(np.isfinite(fields["log_det_jacobian"]))
    # M is the warm start's choice: every transition takes the trained dynamics' M leapfrog steps.
    assert np.all(fields["num_steps"] == eight_schools_run.last_state.dynamics.num_leapfrog_steps)
    assert 0.2 < float(np.mean(fields["accept_prob"])) <= 1.0
    output = io.StringIO()
    with redirect_stdout(output):
        eight_schools_run.print_summary()
    text = output.getvalue()
    assert "Number of divergences" in text and "theta_raw[7]" in text and "r_hat" in text
    assert "theta[" not in text  # deterministic sites are excluded, as with NUTS


def test_diagnostics_string(eight_schools_run):
    state = jax.tree_util.tree_map(lambda x: x[0], eight_schools_run.last_state)
    kernel = eight_schools_run.sampler
    sampling = kernel.get_diagnostics_str(state)
    assert "acc. prob=" in sampling and "step size=" in sampling and "train loss" not in sampling
    warming_up = kernel.get_diagnostics_str(state._replace(i=jnp.asarray(3)))
    assert "train loss=" in warming_up


def test_predictive_and_deterministic_sites(eight_schools_run):
    samples = eight_schools_run.get_samples()
    theta = samples["mu"][:, None] + samples["tau"][:, None] * samples["theta_raw"]
    np.testing.assert_allclose(samples["theta"], theta, rtol=1e-12, atol=1e-12)
    assert np.all(samples["tau"] > 0)
    predictive = Predictive(eight_schools, samples)(jax.random.key(3), EIGHT_SCHOOLS_SIGMA)
    assert predictive["obs"].shape == (2000, 8)
    # Posterior predictive draws are theta + N(0, sigma²): check the mean of obs − theta is 0.
    residual = (predictive["obs"] - samples["theta"]) / EIGHT_SCHOOLS_SIGMA
    assert np.max(np.abs(residual.mean(0) * np.sqrt(residual.shape[0]))) < Z_THRESHOLD


def test_arviz_from_numpyro(eight_schools_run):
    data = az.from_numpyro(eight_schools_run)
    assert set(data.posterior.data_vars) >= {"mu", "tau", "theta_raw", "theta"}
    assert data.posterior["theta_raw"].shape == (2, 1000, 8)
    assert {"diverging", "acceptance_rate", "lp", "energy"} <= set(data.sample_stats.data_vars)
    assert "obs" in data.log_likelihood
    summary = az.summary(data, var_names=["mu", "tau"])
    assert np.all(summary["r_hat"] < 1.05)


def test_pickle_and_resume_without_retraining(eight_schools_run, monkeypatch):
    restored = pickle.loads(pickle.dumps(eight_schools_run))
    for site, values in eight_schools_run.get_samples().items():
        np.testing.assert_array_equal(restored.get_samples()[site], values)
    kernel = restored.sampler
    assert kernel._potential_fn_gen is None  # the model closures were dropped

    def fail(*args, **kwargs):
        raise AssertionError("resuming must not call init (it would train again)")

    monkeypatch.setattr(kernel, "init", fail)
    restored.post_warmup_state = restored.last_state
    restored.run(jax.random.key(4), EIGHT_SCHOOLS_SIGMA, y=EIGHT_SCHOOLS_Y)
    new = restored.get_samples(group_by_chain=True)
    assert new["theta"].shape == (2, 1000, 8)  # postprocess_fn rebuilt from the model
    assert np.all(np.asarray(restored.last_state.i) == 200 + 1000 + 1000)
    assert _tree_equal(restored.last_state.dynamics, eight_schools_run.last_state.dynamics)
    old = eight_schools_run.get_samples(group_by_chain=True)
    assert not np.array_equal(new["mu"], old["mu"])
    # The continuation samples the same posterior.
    assert_same_moments(new["theta_raw"], old["theta_raw"], "resumed theta_raw")


def test_chain_methods_agree_with_given_dynamics(trained_dynamics):
    """With ``dynamics=`` there is no training; every chain method draws the same chains."""
    draws = {}
    for chain_method in ("sequential", "vectorized"):
        kernel = L2HMCKernel(eight_schools, dynamics=trained_dynamics)
        mcmc = MCMC(
            kernel, num_warmup=20, num_samples=50, num_chains=2, chain_method=chain_method, progress_bar=False
        )
        mcmc.run(jax.random.key(5), EIGHT_SCHOOLS_SIGMA, y=EIGHT_SCHOOLS_Y)
        draws[chain_method] = mcmc.get_samples(group_by_chain=True)
        assert mcmc.last_state.training.loss.shape == (2, 0)  # no training
        assert _tree_equal(get_dynamics(mcmc, 1), trained_dynamics)
    for site, values in draws["sequential"].items():
        np.testing.assert_allclose(draws["vectorized"][site], values, rtol=1e-9, atol=1e-9)


def test_parallel_falls_back_to_sequential_on_one_device(trained_dynamics):
    if jax.local_device_count() > 1:
        pytest.skip("more than one device")
    with pytest.warns(UserWarning, match="not enough devices"):
        mcmc = MCMC(
            L2HMCKernel(eight_schools, dynamics=trained_dynamics), num_warmup=1, num_samples=2, num_chains=2
        )
    assert mcmc.chain_method == "sequential"


def test_single_chain_and_reuse_of_saved_dynamics(trained_dynamics, tmp_path):
    path = tmp_path / "eight_schools.eqx"
    save(path, trained_dynamics)
    loaded = load(path)
    runs = []
    for dynamics in (trained_dynamics, loaded):
        mcmc = MCMC(
            L2HMCKernel(eight_schools, dynamics=dynamics), num_warmup=50, num_samples=100, progress_bar=False
        )
        mcmc.run(jax.random.key(6), EIGHT_SCHOOLS_SIGMA, y=EIGHT_SCHOOLS_Y)
        runs.append(mcmc.get_samples(group_by_chain=True))
        assert mcmc.get_samples(group_by_chain=True)["mu"].shape == (1, 100)
        assert jnp.ndim(mcmc.last_state.i) == 0 and int(mcmc.last_state.i) == 150
    for site, values in runs[0].items():
        np.testing.assert_array_equal(runs[1][site], values)


def test_first_half_of_warmup_burns_in_with_the_hmc_limit(trained_dynamics):
    """Zero networks (log|det J| = 0 exactly) for the first half of warmup, the learned ones after."""
    learned = randomize_heads(trained_dynamics, jax.random.key(13), scale=0.1)
    mcmc = MCMC(
        L2HMCKernel(eight_schools, dynamics=learned),
        num_warmup=20,
        num_samples=1,
        progress_bar=False,
    )
    mcmc.warmup(
        jax.random.key(12),
        EIGHT_SCHOOLS_SIGMA,
        y=EIGHT_SCHOOLS_Y,
        collect_warmup=True,
        extra_fields=("log_det_jacobian",),
    )
    log_det = mcmc.get_extra_fields()["log_det_jacobian"]
    assert np.all(log_det[:10] == 0.0) and np.all(log_det[10:] != 0.0)


def test_dynamics_in_the_core_kernel(eight_schools_run, trained_dynamics):
    """The trained dynamics work in the pure-JAX (BlackJAX-style) kernel on the flattened position."""
    kernel = eight_schools_run.sampler
    potential_fn = kernel.get_potential_fn((EIGHT_SCHOOLS_SIGMA,), {"y": EIGHT_SCHOOLS_Y})
    last = jax.tree_util.tree_map(lambda x: x[1], eight_schools_run.last_state)
    flat, unravel = ravel_pytree(last.z)

    def logdensity_fn(x):
        return -potential_fn(unravel(x))

    state = l2hmc_ppl.init(flat, logdensity_fn)
    np.testing.assert_allclose(state.logdensity, -last.potential_energy, rtol=1e-12)
    step = jax.jit(l2hmc_ppl.build_kernel(), static_argnums=2)
    _, info = step(jax.random.key(7), state, logdensity_fn, trained_dynamics)
    assert 0.0 <= float(info.acceptance_rate) <= 1.0


def _run_constrained_model(dynamics, seed, integrator=l2hmc_ppl.learned_leapfrog, **run_kwargs):
    """Two vectorized chains of 300 warm-up and 3000 kept transitions on `constrained_model`."""
    mcmc = MCMC(
        L2HMCKernel(constrained_model, dynamics=dynamics, integrator=integrator),
        num_warmup=300,
        num_samples=3000,
        num_chains=2,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.key(seed), CATEGORY_COUNTS, **run_kwargs)
    return mcmc


def _constrained_posterior_moments():
    """Exact posterior mean and variance of each site: the scale keeps its HalfNormal prior, the
    simplex is Dirichlet(α + counts)."""
    alpha = DIRICHLET_PRIOR + CATEGORY_COUNTS
    total = alpha.sum()
    return {
        "scale": (SCALE_PRIOR * np.sqrt(2 / np.pi), SCALE_PRIOR**2 * (1 - 2 / np.pi)),
        "probs": (alpha / total, alpha * (total - alpha) / (total**2 * (total + 1))),
    }


def test_constrained_sites():
    """HalfNormal scale and Dirichlet simplex: the draws are mapped back to their supports and match
    the closed-form posterior."""
    dynamics = L2HMCDynamics(3, num_leapfrog_steps=5, key=jax.random.key(8)).with_step_size(0.3)
    mcmc = _run_constrained_model(dynamics, 9, extra_fields=("z.probs",))
    samples = mcmc.get_samples(group_by_chain=True)
    assert np.all(samples["scale"] > 0)
    np.testing.assert_allclose(samples["probs"].sum(-1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(samples["variance"], samples["scale"] ** 2, rtol=1e-12)
    unconstrained = mcmc.get_extra_fields(group_by_chain=True)["z.probs"]
    assert unconstrained.shape == (2, 3000, 2)  # stick-breaking: K − 1 coordinates
    for site, (mean, variance) in _constrained_posterior_moments().items():
        assert_moments_match_truth(samples[site], mean, variance, site)


@pytest.mark.parametrize("broken", [False, True], ids=["exact", "log_det_dropped"])
def test_constrained_sites_with_order_one_heads(broken):
    """The adapter is exact for any weights: with heads of order one (far from the HMC limit) the
    constrained posterior is matched; the same check fails with the log-determinant dropped."""
    dynamics = randomize_heads(
        L2HMCDynamics(3, num_leapfrog_steps=5, key=jax.random.key(11)), jax.random.key(12), scale=0.5
    ).with_step_size(0.2)
    integrator = dropped_log_det if broken else l2hmc_ppl.learned_leapfrog
    samples = _run_constrained_model(dynamics, 13, integrator=integrator).get_samples(group_by_chain=True)
    z_scores, ess = [], []
    for site, (mean, variance) in _constrained_posterior_moments().items():
        mean_z, var_z, min_ess = mcmc_moment_z_scores(samples[site], mean, variance)
        z_scores += [np.abs(mean_z).max(), np.abs(var_z).max()]
        ess.append(min_ess)
    if broken:
        assert max(z_scores) > Z_THRESHOLD, f"the log-det mutant passed (max |z| = {max(z_scores):.2f})"
    else:
        assert min(ess) > MIN_ESS, f"did not mix (ESS {min(ess):.0f})"
        assert max(z_scores) < Z_THRESHOLD, f"max |z| = {max(z_scores):.2f}"


def test_potential_fn_pytree_with_training():
    """A ``potential_fn`` on a pytree, trained in vectorized chains, against the closed form."""
    kernel = L2HMCKernel(potential_fn=pytree_potential, num_particles=32, num_leapfrog_steps=5)
    mcmc = MCMC(
        kernel, num_warmup=150, num_samples=2000, num_chains=2, chain_method="vectorized", progress_bar=False
    )
    init_params = {"a": jnp.zeros((2, 2)), "b": jnp.zeros(2)}
    mcmc.run(jax.random.key(10), init_params=init_params)
    samples = mcmc.get_samples(group_by_chain=True)
    assert mcmc.last_state.training.loss.shape == (2, 150)
    assert samples["a"].shape == (2, 2000, 2) and samples["b"].shape == (2, 2000)
    for site in ("a", "b"):
        assert_moments_match_truth(samples[site], POTENTIAL_MEAN[site], POTENTIAL_VAR[site], site)


def _german_credit_data():
    folder = resolve_german_credit_dir()
    features = np.load(folder / "features.npy").astype(np.float64)
    labels = np.load(folder / "labels.npy").astype(np.float64).reshape(-1)
    features = (features - features.mean(0)) / features.std(0)
    with open(folder / "reference_moments.json") as file:
        reference = json.load(file)
    return features, labels, np.asarray(reference["mean"]), np.asarray(reference["std"])


def test_german_credit_against_reference_moments():
    features, labels, mean, std = _german_credit_data()
    mcmc = MCMC(
        L2HMCKernel(logistic_regression, num_particles=32),
        num_warmup=200,
        num_samples=1000,
        progress_bar=False,
    )
    mcmc.run(jax.random.key(11), features, labels)
    samples = mcmc.get_samples(group_by_chain=True)
    # The reference lists the 24 weights, then the bias.
    assert_moments_match_truth(samples["weights"], mean[:24], std[:24] ** 2, "weights")
    assert_moments_match_truth(samples["bias"], mean[24], std[24] ** 2, "bias")


# ------------------------------------------------------------------------------------------------
# Errors


def test_bad_arguments():
    with pytest.raises(ValueError, match="Only one of"):
        L2HMCKernel()
    with pytest.raises(ValueError, match="Only one of"):
        L2HMCKernel(eight_schools, potential_fn=pytree_potential)
    with pytest.raises(TypeError, match="L2HMCDynamics"):
        L2HMCKernel(eight_schools, dynamics="trained")
    with pytest.raises(ValueError, match="num_particles"):
        L2HMCKernel(eight_schools, num_particles=1)
    with pytest.raises(ValueError, match="init_params"):
        MCMC(L2HMCKernel(potential_fn=pytree_potential), num_warmup=1, num_samples=1).run(jax.random.key(0))


def test_discrete_latent_sites_are_refused():
    kernel = L2HMCKernel(discrete_model, dynamics=L2HMCDynamics(1, key=jax.random.key(0)))
    with pytest.raises(ValueError, match="discrete latent site.*component"):
        MCMC(kernel, num_warmup=1, num_samples=1, progress_bar=False).run(jax.random.key(0))


def test_dynamics_of_the_wrong_dimension_are_refused():
    kernel = L2HMCKernel(eight_schools, dynamics=L2HMCDynamics(3, key=jax.random.key(0)))
    with pytest.raises(ValueError, match="dim=3.*10 unconstrained"):
        MCMC(kernel, num_warmup=1, num_samples=1, progress_bar=False).run(
            jax.random.key(0), EIGHT_SCHOOLS_SIGMA, y=EIGHT_SCHOOLS_Y
        )


def test_get_dynamics_errors(eight_schools_run):
    with pytest.raises(IndexError):
        get_dynamics(eight_schools_run, chain=2)
    with pytest.raises(ValueError, match="not run"):
        get_dynamics(MCMC(NUTS(eight_schools), num_warmup=1, num_samples=1))
    with pytest.raises(TypeError):
        get_dynamics(eqx.nn.Identity())


# ------------------------------------------------------------------------------------------------
# Several devices: pmap, in a fresh process (XLA_FLAGS must be set before JAX starts)

_PARALLEL_SCRIPT = textwrap.dedent(
    """
    import sys
    import jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_enable_x64", True)
    assert jax.local_device_count() == 2, jax.devices()
    from numpyro.infer import MCMC
    from l2hmc_ppl.numpyro import L2HMCKernel, get_dynamics

    def pytree_potential(z):
        a = z["a"] - jnp.array([1.0, -2.0])
        return 0.5 * (a[0] ** 2 / 4.0 + (a[1] - 0.5 * a[0]) ** 2 / 0.25) + z["b"] + jnp.exp(-z["b"])

    kernel = L2HMCKernel(potential_fn=pytree_potential, num_particles=16, num_leapfrog_steps=5)
    mcmc = MCMC(kernel, num_warmup=50, num_samples=1000, num_chains=2, chain_method="parallel",
                progress_bar=False)
    mcmc.run(jax.random.key(0), init_params={"a": jnp.zeros((2, 2)), "b": jnp.zeros(2)})
    assert mcmc.chain_method == "parallel"
    # Each device trained its own chain's sampler (sequential chains would share one training).
    assert mcmc.last_state.training.loss.shape == (2, 50)
    get_dynamics(mcmc, chain=1)
    np.savez(sys.argv[1], **mcmc.get_samples(group_by_chain=True))
    print("OK")
    """
)


@pytest.mark.slow
def test_parallel_chains_on_two_devices(tmp_path):
    """``chain_method="parallel"`` trains inside ``pmap`` (one sampler per device) and samples the
    target: the pytree potential's exact moments."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    result = subprocess.run(
        [sys.executable, "-c", _PARALLEL_SCRIPT, str(tmp_path / "draws.npz")],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.strip().endswith("OK")
    draws = np.load(tmp_path / "draws.npz")
    for site in ("a", "b"):
        assert_moments_match_truth(draws[site], POTENTIAL_MEAN[site], POTENTIAL_VAR[site], f"parallel {site}")


# ------------------------------------------------------------------------------------------------
# Models users bring: improper priors, nothing to sample, bad starts; compile once; progress


def improper_normal(y):
    """NumPyro's ``test_improper_normal``-style model: a flat (improper) prior on the location."""
    loc = numpyro.sample("loc", dist.ImproperUniform(dist.constraints.real, (), ()))
    numpyro.sample("obs", dist.Normal(loc, 1.0), obs=y)


def trivial_dirichlet():
    numpyro.sample("x", dist.Dirichlet(jnp.ones(1)))


def only_observed(y):
    numpyro.sample("obs", dist.Normal(0.0, 1.0), obs=y)


def test_improper_uniform_prior_trains_and_samples():
    y = np.array([0.3, -1.2, 0.8, 2.0])
    mcmc = MCMC(
        L2HMCKernel(improper_normal, num_particles=16), num_warmup=100, num_samples=2000, progress_bar=False
    )
    mcmc.run(jax.random.key(20), y)
    # flat prior: loc | y ~ N(mean(y), 1/n)
    assert_moments_match_truth(mcmc.get_samples(group_by_chain=True)["loc"], y.mean(), 1 / y.size, "loc")


def test_a_latent_site_without_unconstrained_coordinates_is_sampled_as_nuts_does():
    mcmc = MCMC(L2HMCKernel(trivial_dirichlet), num_warmup=10, num_samples=20, progress_bar=False)
    mcmc.run(jax.random.key(21))
    np.testing.assert_array_equal(mcmc.get_samples()["x"], np.ones((20, 1)))
    with pytest.raises(ValueError, match="no unconstrained coordinates"):
        get_dynamics(mcmc)


def test_a_model_with_only_observed_sites_gets_a_clear_error():
    with pytest.raises(ValueError, match="no latent sample sites"):
        MCMC(L2HMCKernel(only_observed), num_warmup=1, num_samples=1, progress_bar=False).run(
            jax.random.key(0), 1.0
        )


@pytest.mark.parametrize(
    ("init_params", "num_chains", "error", "match"),
    [
        (
            {"a": jnp.zeros((3, 2)), "b": jnp.zeros(3)},
            2,
            ValueError,
            "leading (axis of size 2|dimension as .num_chains.)",
        ),
        (
            {"a": jnp.zeros(2), "b": jnp.zeros(())},
            2,
            ValueError,
            "leading (axis of size 2|dimension as .num_chains.)",
        ),
        (
            {"a": jnp.array([[0.0, 0.0], [jnp.nan, 0.0]]), "b": jnp.zeros(2)},
            2,
            ValueError,
            r"chain\(s\) 1 \(1 of 2\)",
        ),
        (
            {"a": jnp.array([0.0, jnp.inf]), "b": jnp.zeros(())},
            1,
            ValueError,
            "init_params: the log density or its gradient is not finite at this chain's initial point",
        ),
    ],
)
def test_bad_init_params_get_a_clear_error(init_params, num_chains, error, match):
    kernel = L2HMCKernel(potential_fn=pytree_potential, num_particles=4, num_training_steps=0)
    mcmc = MCMC(
        kernel,
        num_warmup=1,
        num_samples=1,
        num_chains=num_chains,
        chain_method="vectorized",
        progress_bar=False,
    )
    with pytest.raises(error, match=match):
        mcmc.run(jax.random.key(0), init_params=init_params)


def test_init_params_that_are_not_numbers_get_a_clear_error():
    # MCMC.run converts init_params with JAX before the kernel sees them (JAX's TypeError then says
    # "not a valid JAX array type"); the kernel's own init, called directly, names the argument.
    kernel = L2HMCKernel(potential_fn=pytree_potential, num_particles=4, num_training_steps=0)
    with pytest.raises(TypeError, match="init_params must hold real numbers"):
        kernel.init(jax.random.key(0), 1, {"a": np.array(["x", "y"]), "b": np.zeros(())}, (), {})


def test_integer_init_params_are_converted():
    kernel = L2HMCKernel(potential_fn=pytree_potential, dynamics=L2HMCDynamics(3, key=jax.random.key(0)))
    mcmc = MCMC(kernel, num_warmup=2, num_samples=3, progress_bar=False)
    mcmc.run(jax.random.key(0), init_params={"a": jnp.array([1, 2]), "b": jnp.array(0)})
    assert mcmc.get_samples()["a"].dtype == jnp.result_type(float)


def test_chains_after_the_first_reuse_its_training(capsys):
    """Three sequential chains train once (the chunk compiled once), and its progress is shown."""
    import importlib

    run_chunk = importlib.import_module("l2hmc_ppl.training.step").run_chunk._cached
    before = run_chunk._cache_size()
    mcmc = MCMC(
        L2HMCKernel(potential_fn=pytree_potential, num_particles=8, num_leapfrog_steps=3),
        num_warmup=40,
        num_samples=10,
        num_chains=3,
        chain_method="sequential",
        progress_bar=False,
    )
    mcmc.run(jax.random.key(22), init_params={"a": jnp.zeros((3, 2)), "b": jnp.zeros(3)})
    assert mcmc.last_state.training.loss.shape == (3, 40)
    assert run_chunk._cache_size() - before == 1
    assert _tree_equal(get_dynamics(mcmc, 0), get_dynamics(mcmc, 2))
    assert "L2HMC training" in capsys.readouterr().err  # warmup shows the training by default


def test_particles_are_handed_out_farthest_first():
    from l2hmc_ppl.numpyro import _dispersed_order

    points = np.array([[0.0], [1.0], [10.0], [2.0], [9.0], [np.nan], [0.0]])
    # 0 first; then 10 (farthest from 0), 2 (farthest from both), 1 and 9; the duplicate of 0, then NaN
    np.testing.assert_array_equal(_dispersed_order(points), [0, 2, 3, 1, 4, 6, 5])
    np.testing.assert_array_equal(_dispersed_order(np.zeros((1, 3))), [0])


def _mixture_model():
    """The paper's two-mode mixture as a NumPyro model (flat prior, the mixture as a factor)."""
    x = numpyro.sample("x", dist.ImproperUniform(dist.constraints.real_vector, (), (2,)))
    numpyro.factor("mixture", l2hmc_ppl.targets.mog().logdensity_fn(x))


@pytest.mark.parametrize("seed", [7, 9])
def test_chains_start_in_both_modes_of_a_mixture_so_that_r_hat_can_flag_it(seed):
    """No transition crosses between the paper's two modes (x₁ = ±2, sd 0.32). The chains start at
    trained particles (drawn by ``init_to_uniform``). With these seeds the first four particles all
    lie in one mode, so that handing them out in order gave four chains that agree (R̂ ≈ 1) while
    the mean is far off (3 seeds of 16 did). Handed out farthest first, they start the chains in
    both modes, and R̂ flags the posterior as NUTS's chains do."""
    mcmc = MCMC(
        L2HMCKernel(_mixture_model, num_particles=16, progress_bar=False),
        num_warmup=100,
        num_samples=20,
        num_chains=4,
        chain_method="sequential",
        progress_bar=False,
    )
    mcmc.run(jax.random.key(seed))
    draws = np.asarray(mcmc.get_samples(group_by_chain=True)["x"])
    in_right_mode = draws[:, :, 0] > 0
    assert np.all(in_right_mode == in_right_mode[:, :1])  # no chain crossed
    assert 0 < in_right_mode[:, 0].sum() < 4, in_right_mode[:, 0]
    assert numpyro.diagnostics.split_gelman_rubin(draws[..., 0]) > 1.5


def test_later_sequential_chains_of_a_potential_fn_burn_in_from_their_own_init_params():
    """With ``potential_fn`` and sequential chains the particles lie around the first chain's
    initial point only (here all in the mixture's right mode). A later chain started in the left
    basin, off the mode, burns in there with the trained sampler, so the chains disagree and R̂
    flags the mixture; handed a trained particle instead, all four agreed in the right mode."""
    target = l2hmc_ppl.targets.mog()
    mcmc = MCMC(
        L2HMCKernel(potential_fn=lambda z: -target.logdensity_fn(z), num_particles=16, progress_bar=False),
        num_warmup=100,
        num_samples=20,
        num_chains=4,
        chain_method="sequential",
        progress_bar=False,
    )
    init_params = jnp.array([[2.0, 0.0], [-3.5, 1.0], [2.0, 0.0], [2.5, -0.5]])
    mcmc.run(jax.random.key(0), init_params=init_params)
    draws = np.asarray(mcmc.get_samples(group_by_chain=True))
    in_right_mode = draws[:, :, 0] > 0
    np.testing.assert_array_equal(in_right_mode, np.broadcast_to([[True], [False], [True], [True]], (4, 20)))
    # The second chain has reached the left mode, not stayed near its start: every draw is nearer
    # the mode's centre (−2, 0) than the start (1.8 away, 5.7 sds of the component; a draw of the
    # component is that far out with probability e^(−5.7²/2) ≈ 1e-7), and the chain moves.
    start_distance = np.linalg.norm(np.array([-3.5, 1.0]) - [-2.0, 0.0])
    assert np.all(np.linalg.norm(draws[1] - [-2.0, 0.0], axis=1) < start_distance), draws[1]
    assert len(np.unique(draws[1][:, 0])) > 1
    assert not bool(np.asarray(mcmc.last_state.burned_in)[1])
    assert bool(np.asarray(mcmc.last_state.burned_in)[0])
    assert numpyro.diagnostics.split_gelman_rubin(draws[..., 0]) > 1.5


def test_a_chain_that_burns_in_from_far_out_adapts_its_step_size():
    """A chain that burns in during warm-up (with ``dynamics=`` given, as here, or a later
    sequential chain of a ``potential_fn``) starts at its own initial point. The target is
    BlackJAX's linear regression test (y = 3x + noise, 1000 points; the posterior sds are about
    0.03), the chain starts at (coefficient, log scale) = (−0.6, −0.4), over a hundred sds out,
    where the curvature is far larger. With the dynamics' ε (0.05, fine at the posterior) every
    proposal from there was rejected and the chain never moved; with ε adapted by dual averaging
    in the first half of warm-up it reaches the posterior."""
    key_x, key_noise = jax.random.split(jax.random.key(19))
    x = jax.random.normal(key_x, (1000,))
    y = 3.0 * x + jax.random.normal(key_noise, (1000,))

    def potential(z):
        coefficient, log_scale = z[0], z[1]
        log_likelihood = dist.Normal(coefficient * x, jnp.exp(log_scale)).log_prob(y).sum()
        log_prior = dist.Normal(0.0, 5.0).log_prob(coefficient) + dist.Exponential(1.0).log_prob(
            jnp.exp(log_scale)
        )
        return -(log_likelihood + log_prior + log_scale)

    dynamics = l2hmc_ppl.default_dynamics(2, key=jax.random.key(1), step_size=0.05)
    mcmc = MCMC(
        L2HMCKernel(potential_fn=potential, dynamics=dynamics),
        num_warmup=200,
        num_samples=50,
        progress_bar=False,
    )
    mcmc.run(jax.random.key(0), init_params=jnp.array([-0.6, -0.4]))
    draws = np.asarray(mcmc.get_samples())
    assert not bool(mcmc.last_state.burned_in)
    # The posterior is close to normal around the least-squares fit (1000 points, weak priors),
    # with sds σ̂/√Σx² for the coefficient and 1/√(2n) for the log scale (about 0.03 and 0.02).
    # The start is over a hundred of those sds out (in the coefficient); every draw must be within 6
    # of them in each coordinate (a posterior draw is that far out with probability 2e-9).
    coefficient = float(x @ y / (x @ x))
    sigma = float(jnp.sqrt(jnp.mean((y - coefficient * x) ** 2)))
    sds = np.array([sigma / np.sqrt(float(x @ x)), 1.0 / np.sqrt(2 * x.size)])
    z = np.abs(draws - [coefficient, np.log(sigma)]) / sds
    assert np.max(np.abs(np.asarray([-0.6, -0.4]) - [coefficient, np.log(sigma)]) / sds) > 100
    assert np.all(z < 6), f"largest distance from the posterior: {z.max(axis=0)} sds"
