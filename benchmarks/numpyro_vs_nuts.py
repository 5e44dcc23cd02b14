"""``MCMC(L2HMCKernel(model))`` against ``MCMC(NUTS(model))``: ESS per gradient and wall time.

Both samplers run through NumPyro's own ``MCMC`` driver, in the same process, with the same
``num_warmup``, ``num_samples``, ``num_chains`` and ``chain_method``. The models are German credit
logistic regression (25 coefficients, reference moments in ``../shared/data/german_credit``) and
the non-centred eight schools (10 unconstrained coordinates, a HalfCauchy scale). Samplers:

- ``nuts``: ``NUTS(model)`` with its defaults (step-size and diagonal mass-matrix adaptation);
- ``l2hmc``: ``L2HMCKernel(model)`` with its defaults (one training shared by the chains: warm
  start, then ``num_warmup`` iterations of Algorithm 1 on the particles, then the selection; every
  chain starts at its own trained particle; sampling with the default step-size jitter);
- ``l2hmc-fixed-step``: the trained dynamics of chain 0 of ``l2hmc``, sampled with
  ``step_size_jitter=0`` (the paper's fixed-ε kernel); its warmup is only burn-in;
- ``l2hmc-hmc-limit``: the same dynamics with zeroed networks, i.e. HMC with the warm start's ε and
  preconditioner and the same jitter as ``l2hmc`` (what training adds over its own starting
  point); its warmup is only burn-in.

Reported per sampler:

- wall time of the warmup (``mcmc.warmup``: compilation, adaptation or training, burn-in) and of the
  sampling (``mcmc.run`` from the post-warmup state, compilation included: NumPyro compiles its
  loop on every run), and the time of the sampling transitions alone: ``num_samples`` transitions
  of each chain in one compiled ``lax.scan`` of ``kernel.sample``, timed after compilation;
- gradient evaluations while sampling: the sum of ``num_steps`` (the NUTS tree sizes; M per
  transition for L2HMC), and during warmup (for L2HMC counted as forward gradients only:
  particles × M per warm-start and per training iteration, plus M per burn-in transition; the
  backward pass through each training trajectory costs a few more);
- ESS: ``numpyro.diagnostics.effective_sample_size`` over all chains, minimum and median over the
  coordinates of the latent sites (constrained, as ``print_summary`` shows them), of x (the mean)
  and of (x − x̄)² (the variance); ESS per gradient and per second (of compiled transitions) use the
  minimum for the mean;
- the acceptance rate, the number of divergences and, for German credit, the largest
  |mean − reference| / MCSE.

Usage::

    python benchmarks/numpyro_vs_nuts.py --models german_credit eight_schools \\
        --num-warmup 1000 --num-samples 2000 --num-chains 4 --output numpyro_vs_nuts.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the helpers are `benchmarks._...`

SAMPLERS = ("nuts", "l2hmc", "l2hmc-fixed-step", "l2hmc-hmc-limit")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=["german_credit", "eight_schools"])
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=SAMPLERS)
    parser.add_argument("--num-warmup", type=int, default=1000)
    parser.add_argument("--num-samples", type=int, default=2000)
    parser.add_argument("--num-chains", type=int, default=4)
    parser.add_argument("--chain-method", default="sequential")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--float32", action="store_true", help="run in float32 (default float64)")
    parser.add_argument(
        "--data-dir",
        default=None,
        help="German credit folder (default: $L2HMC_PPL_GERMAN_CREDIT, else ../shared/data/german_credit)",
    )
    parser.add_argument("--output", default=None, help="write the records as JSON here")
    return parser


if __name__ == "__main__":
    build_parser().parse_args()  # answer --help (and reject bad options) before the slow imports below

import jax  # noqa: E402
import numpy as np  # noqa: E402
import numpyro  # noqa: E402
import numpyro.distributions as dist  # noqa: E402
from jax.flatten_util import ravel_pytree  # noqa: E402
from numpyro.diagnostics import effective_sample_size  # noqa: E402
from numpyro.infer import MCMC, NUTS  # noqa: E402

from benchmarks._common import german_credit_dir  # noqa: E402
from l2hmc_ppl.numpyro import L2HMCKernel, get_dynamics  # noqa: E402
from l2hmc_ppl.targets import resolve_german_credit_dir  # noqa: E402


def logistic_regression(features, labels=None):
    """Bayesian logistic regression, prior N(0, 1) on the weights and the bias."""
    weights = numpyro.sample("weights", dist.Normal(0.0, 1.0).expand([features.shape[1]]).to_event(1))
    bias = numpyro.sample("bias", dist.Normal(0.0, 1.0))
    numpyro.sample("obs", dist.Bernoulli(logits=features @ weights + bias), obs=labels)


def eight_schools(sigma, y=None):
    """Non-centred eight schools."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("schools", sigma.shape[0]):
        theta_raw = numpyro.sample("theta_raw", dist.Normal(0.0, 1.0))
        theta = numpyro.deterministic("theta", mu + tau * theta_raw)
        numpyro.sample("obs", dist.Normal(theta, sigma), obs=y)


def load_model(name, data_dir=None):
    """``(model, args, kwargs, reference)``; reference: flat mean/std in z's ravel order, or None."""
    if name == "german_credit":
        folder = resolve_german_credit_dir(german_credit_dir(data_dir))
        features = np.load(folder / "features.npy").astype(np.float64)
        labels = np.load(folder / "labels.npy").astype(np.float64).reshape(-1)
        features = (features - features.mean(0)) / features.std(0)
        with open(folder / "reference_moments.json") as file:
            moments = json.load(file)
        # z = {"bias", "weights"} ravels as (bias, weights); the file lists the weights, then the bias.
        mean, std = np.asarray(moments["mean"]), np.asarray(moments["std"])
        reference = (np.roll(mean, 1), np.roll(std, 1))
        return logistic_regression, (features, labels), {}, reference
    if name == "eight_schools":
        y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
        sigma = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])
        return eight_schools, (sigma,), {"y": y}, None
    raise ValueError(f"unknown model {name!r}")


def _flat_chains(z):
    """Draws ``{site: (chains, samples, ...)}`` → ``(chains, samples, dim)`` (sites in sorted order)."""
    return np.asarray(jax.vmap(jax.vmap(lambda tree: ravel_pytree(tree)[0]))(z))


def _block(tree):
    return jax.block_until_ready(tree)


def run_sampler(sampler_name, model, args, kwargs, options, l2hmc_runs):
    """Warm up and sample one sampler; returns the record and the MCMC object."""
    if sampler_name == "nuts":
        kernel = NUTS(model)
    elif sampler_name == "l2hmc":
        kernel = L2HMCKernel(model)
    elif sampler_name == "l2hmc-fixed-step":
        trained = get_dynamics(l2hmc_runs["l2hmc"], chain=0)
        kernel = L2HMCKernel(model, dynamics=trained.with_step_size_jitter(0.0))
    elif sampler_name == "l2hmc-hmc-limit":
        trained = get_dynamics(l2hmc_runs["l2hmc"], chain=0)
        kernel = L2HMCKernel(model, dynamics=trained.as_hmc_limit())
    else:
        raise ValueError(sampler_name)
    mcmc = MCMC(
        kernel,
        num_warmup=options.num_warmup,
        num_samples=options.num_samples,
        num_chains=options.num_chains,
        chain_method=options.chain_method,
        progress_bar=False,
    )
    key_warmup, key_sample = jax.random.split(jax.random.key(options.seed))
    fields = ("num_steps", "accept_prob", "diverging")

    start = time.perf_counter()
    mcmc.warmup(key_warmup, *args, collect_warmup=True, extra_fields=("num_steps",), **kwargs)
    _block(mcmc.post_warmup_state)
    warmup_seconds = time.perf_counter() - start
    warmup_steps = np.asarray(mcmc.get_extra_fields()["num_steps"])

    post_warmup = mcmc.post_warmup_state
    start = time.perf_counter()
    mcmc.run(key_sample, *args, extra_fields=fields, **kwargs)
    _block(mcmc.get_samples())
    sample_seconds = time.perf_counter() - start
    extra = mcmc.get_extra_fields(group_by_chain=True)
    samples = mcmc.get_samples(group_by_chain=True)
    last_state = mcmc.last_state
    transition_seconds = _time_transitions(kernel, post_warmup, args, kwargs, options)

    latent = {site: samples[site] for site in last_state.z}  # deterministic sites left out
    draws = _flat_chains(latent)
    num_gradients = int(np.sum(extra["num_steps"]))
    ess_mean = np.asarray(effective_sample_size(draws))
    centred = (draws - draws.reshape(-1, draws.shape[-1]).mean(0)) ** 2
    ess_variance = np.asarray(effective_sample_size(centred))
    if sampler_name == "nuts":
        warmup_gradients = int(np.sum(warmup_steps))
    else:
        warmup_gradients = _l2hmc_warmup_gradients(kernel, mcmc, options)
    record = {
        "sampler": sampler_name,
        "warmup_seconds": warmup_seconds,
        "sample_seconds": sample_seconds,
        "transition_seconds": transition_seconds,
        "warmup_gradients": warmup_gradients,
        "sample_gradients": num_gradients,
        "min_ess": float(ess_mean.min()),
        "median_ess": float(np.median(ess_mean)),
        "min_ess_variance": float(ess_variance.min()),
        "median_ess_variance": float(np.median(ess_variance)),
        "min_ess_per_gradient": float(ess_mean.min() / num_gradients),
        "min_ess_variance_per_gradient": float(ess_variance.min() / num_gradients),
        "min_ess_per_second": float(ess_mean.min() / transition_seconds),
        "acceptance_rate": float(np.mean(extra["accept_prob"])),
        "divergences": int(np.sum(extra["diverging"])),
        "divergences_per_chain": np.sum(extra["diverging"], axis=1).tolist(),
        "acceptance_rate_per_chain": np.mean(extra["accept_prob"], axis=1).round(3).tolist(),
    }
    return record, mcmc, draws


def _time_transitions(kernel, post_warmup_state, args, kwargs, options) -> float:
    """Seconds for ``num_samples`` compiled transitions of every chain (one after the other, or all
    at once for vectorized chains).

    One ``lax.scan`` of ``kernel.sample`` from the post-warmup state, compiled before timing, so
    that neither NumPyro's per-run compilation nor its driver enters the figure.
    """

    @jax.jit
    def transitions(state):
        def one(state, _):
            return kernel.sample(state, args, kwargs), None

        return jax.lax.scan(one, state, None, length=options.num_samples)[0]

    if options.num_chains == 1 or options.chain_method == "vectorized":
        # no chain axis, or a vectorized kernel, whose sample steps every chain at once
        chains = [post_warmup_state]
    else:
        chains = [
            jax.tree_util.tree_map(lambda x, c=c: x[c], post_warmup_state) for c in range(options.num_chains)
        ]
    _block(transitions(chains[0]))  # compile
    start = time.perf_counter()
    for state in chains:
        _block(transitions(state))
    return time.perf_counter() - start


def _l2hmc_warmup_gradients(kernel, mcmc, options) -> int:
    """Forward gradient evaluations of the L2HMC warmup (training counted forward only)."""
    state = mcmc.post_warmup_state
    num_leapfrog_steps = int(np.ravel(state.num_steps)[0])
    burn_in = options.num_warmup * num_leapfrog_steps
    config = kernel._training_config(options.num_warmup)  # the kernel's own training options
    if config is None:
        return options.num_chains * burn_in
    num_warm_start = config.num_warm_start_steps if config.warm_start else 0
    particles = kernel._num_particles
    per_chain = (num_warm_start + config.num_steps) * particles * num_leapfrog_steps + burn_in
    return options.num_chains * per_chain


def main(argv=None):
    parser = build_parser()
    options = parser.parse_args(argv)
    if not options.float32:
        jax.config.update("jax_enable_x64", True)
    if "l2hmc-hmc-limit" in options.samplers and "l2hmc" not in options.samplers:
        parser.error("l2hmc-hmc-limit reuses the dynamics trained by l2hmc: include l2hmc")

    records = []
    for model_name in options.models:
        model, args, kwargs, reference = load_model(model_name, options.data_dir)
        l2hmc_runs = {}
        for sampler_name in options.samplers:
            record, mcmc, draws = run_sampler(sampler_name, model, args, kwargs, options, l2hmc_runs)
            l2hmc_runs[sampler_name] = mcmc
            if reference is not None:
                mean, _ = reference
                ess = np.asarray(effective_sample_size(draws))
                flat = draws.reshape(-1, draws.shape[-1])
                mcse = flat.std(0, ddof=1) / np.sqrt(ess)
                record["max_abs_z_mean"] = float(np.max(np.abs(flat.mean(0) - mean) / mcse))
            record["model"] = model_name
            records.append(record)
            print(json.dumps(record), flush=True)

    header = (
        "| model | sampler | warmup s | sampling s (compiled transitions) | min ESS (mean) "
        "| min ESS (variance) | min ESS / gradient | min ESS / s | accept | divergences |"
    )
    print()
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for r in records:
        print(
            f"| {r['model']} | {r['sampler']} | {r['warmup_seconds']:.1f} | "
            f"{r['sample_seconds']:.1f} ({r['transition_seconds']:.1f}) | {r['min_ess']:.0f} | "
            f"{r['min_ess_variance']:.0f} | {r['min_ess_per_gradient']:.2e} | "
            f"{r['min_ess_per_second']:.0f} | {r['acceptance_rate']:.2f} | {r['divergences']} |"
        )
    machine = dict(
        platform=platform.platform(),
        processor=platform.processor(),
        jax=jax.__version__,
        numpyro=numpyro.__version__,
        devices=[str(d) for d in jax.devices()],
    )
    print(f"\nmachine: {machine}")
    print(f"settings: {vars(options)}")
    if options.output:
        with open(options.output, "w") as file:
            json.dump(dict(machine=machine, settings=vars(options), records=records), file, indent=1)


if __name__ == "__main__":
    main()
