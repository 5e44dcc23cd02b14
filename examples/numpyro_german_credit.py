"""L2HMC in NumPyro: German credit logistic regression with ``MCMC(L2HMCKernel(model))``.

The script is the worked example of the docs page "Using L2HMC in NumPyro":

1. an ordinary NumPyro model, sampled by NUTS and by L2HMC through the same ``MCMC`` driver (the only
   change is the kernel);
2. ``print_summary``, and both posteriors' means against the reference moments of the data (in
   units of the Monte Carlo standard error);
3. the trained dynamics: saved to a file, loaded, and reused in a second ``L2HMCKernel`` that skips
   training;
4. ``Predictive`` and ArviZ on the L2HMC draws.

L2HMC trains once, inside the first chain's ``init``, and every chain samples with the result;
progress bars show the warm start, the training and NumPyro's sampling. Takes a few minutes on a
2-core CPU, most of it compiling and running the training; JAX's persistent compilation cache (on
by default, ``--compilation-cache``) saves the compiling on later runs.

The data: ``features.npy``, ``labels.npy`` and ``reference_moments.json`` (UCI Statlog German credit,
numeric version; see ``l2hmc_ppl.targets.german_credit``), in ``--data-dir``.

Usage::

    python examples/numpyro_german_credit.py [--num-warmup 500] [--num-samples 1000] [--num-chains 2]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = os.environ.get("L2HMC_PPL_GERMAN_CREDIT") or str(
    REPO.parent / "shared" / "data" / "german_credit"
)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """The module docstring as written, and every option's default."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=_HelpFormatter)
    parser.add_argument(
        "--num-warmup",
        type=int,
        default=500,
        help="warmup iterations (NUTS: adaptation, per chain; L2HMC: training, once for all chains)",
    )
    parser.add_argument("--num-samples", type=int, default=1000, help="draws per chain")
    parser.add_argument("--num-chains", type=int, default=2, help="chains per sampler")
    parser.add_argument(
        "--chain-method",
        default="sequential",
        choices=["sequential", "parallel", "vectorized"],
        help="how MCMC runs the chains",
    )
    parser.add_argument(
        "--data-dir",
        default=DEFAULT_DATA,
        help="folder with the German credit files (the default is $L2HMC_PPL_GERMAN_CREDIT if set, "
        "else ../shared/data/german_credit beside the repository)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random keys")
    parser.add_argument(
        "--no-progress-bar",
        action="store_true",
        help="hide the progress bars (NumPyro's, and L2HMC's warm start and training)",
    )
    parser.add_argument(
        "--compilation-cache",
        default=None,
        metavar="DIR",
        help="folder of JAX's persistent compilation cache, so that a second run reuses the compiled "
        "programs; if not given, $XDG_CACHE_HOME/l2hmc_ppl/jax or ~/.cache/l2hmc_ppl/jax; '' turns it off",
    )
    return parser


if __name__ == "__main__":
    build_parser().parse_args()  # answer --help (and reject bad options) before the slow imports below

import arviz as az  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402
import numpyro  # noqa: E402
import numpyro.distributions as dist  # noqa: E402
from numpyro.diagnostics import effective_sample_size  # noqa: E402
from numpyro.infer import MCMC, NUTS, Predictive  # noqa: E402

import l2hmc_ppl  # noqa: E402
from l2hmc_ppl.numpyro import L2HMCKernel, get_dynamics  # noqa: E402
from l2hmc_ppl.targets import resolve_german_credit_dir  # noqa: E402


def logistic_regression(features, labels=None):
    """Bayesian logistic regression: N(0, 1) priors on the weights and the bias."""
    weights = numpyro.sample("weights", dist.Normal(0.0, 1.0).expand([features.shape[1]]).to_event(1))
    bias = numpyro.sample("bias", dist.Normal(0.0, 1.0))
    numpyro.sample("obs", dist.Bernoulli(logits=features @ weights + bias), obs=labels)


def load_german_credit(data_dir):
    """Standardised features, 0/1 labels and the reference posterior (weights first, bias last)."""
    folder = resolve_german_credit_dir(data_dir)
    features = np.load(folder / "features.npy").astype(np.float64)
    labels = np.load(folder / "labels.npy").astype(np.float64).reshape(-1)
    features = (features - features.mean(0)) / features.std(0)
    with open(folder / "reference_moments.json") as file:
        reference = json.load(file)
    return features, labels, np.asarray(reference["mean"]), np.asarray(reference["std"])


def z_scores(mcmc, reference_mean):
    """(posterior mean − reference) / MCSE for the 25 coefficients (MCSE = sd/√ESS)."""
    samples = mcmc.get_samples(group_by_chain=True)
    draws = np.concatenate([samples["weights"], samples["bias"][..., None]], axis=-1)
    ess = np.asarray(effective_sample_size(draws))
    flat = draws.reshape(-1, draws.shape[-1])
    return (flat.mean(0) - reference_mean) / (flat.std(0, ddof=1) / np.sqrt(ess)), ess


def run(kernel, args, options, rng_key):
    mcmc = MCMC(
        kernel,
        num_warmup=options.num_warmup,
        num_samples=options.num_samples,
        num_chains=options.num_chains,
        chain_method=options.chain_method,
        progress_bar=not options.no_progress_bar,
    )
    start = time.perf_counter()
    mcmc.run(rng_key, *args, extra_fields=("accept_prob",))
    jax.block_until_ready(mcmc.get_samples())
    return mcmc, time.perf_counter() - start


def main():
    options = build_parser().parse_args()
    if options.compilation_cache != "":
        l2hmc_ppl.enable_compilation_cache(options.compilation_cache)
    jax.config.update("jax_enable_x64", True)

    features, labels, reference_mean, _ = load_german_credit(options.data_dir)
    args = (features, labels)
    key_nuts, key_l2hmc, key_reuse, key_predict = jax.random.split(jax.random.key(options.seed), 4)
    progress_bar = not options.no_progress_bar

    # 1. The same MCMC driver, two kernels.
    print("NUTS: warmup (step size and mass matrix), then sampling")
    nuts, nuts_seconds = run(NUTS(logistic_regression), args, options, key_nuts)
    print("L2HMC: warmup = warm start and training, once for all chains, then sampling")
    kernel = L2HMCKernel(logistic_regression, progress_bar=progress_bar)
    l2hmc, l2hmc_seconds = run(kernel, args, options, key_l2hmc)

    # 2. Summaries, and both posteriors against the reference.
    print("\nL2HMC:")
    l2hmc.print_summary(exclude_deterministic=True)
    for name, mcmc, seconds in (("NUTS", nuts, nuts_seconds), ("L2HMC", l2hmc, l2hmc_seconds)):
        z, ess = z_scores(mcmc, reference_mean)
        acceptance = np.mean(mcmc.get_extra_fields()["accept_prob"])
        print(
            f"{name:6s} {seconds:6.1f} s (warmup + sampling, compilation included), "
            f"acceptance {acceptance:.2f}, min ESS {ess.min():6.0f}, "
            f"max |mean − reference| / MCSE = {np.abs(z).max():.2f} over the 25 coefficients"
        )

    # 3. The trained dynamics: save, load, and sample again without training.
    trained = get_dynamics(l2hmc, chain=0)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "german_credit.l2hmc"
        l2hmc_ppl.save(path, trained)
        loaded = l2hmc_ppl.load(path)
    print("L2HMC with the saved dynamics: no training, warmup only burns the chains in")
    reused_kernel = L2HMCKernel(logistic_regression, dynamics=loaded, progress_bar=progress_bar)
    reused, reused_seconds = run(reused_kernel, args, options, key_reuse)
    z, ess = z_scores(reused, reference_mean)
    print(
        f"reused dynamics (no training): {reused_seconds:.1f} s, min ESS {ess.min():.0f}, "
        f"max |z| = {np.abs(z).max():.2f}"
    )

    # 4. Posterior predictive and ArviZ.
    predictive = Predictive(logistic_regression, l2hmc.get_samples())(key_predict, features)
    accuracy = np.mean((predictive["obs"].mean(0) > 0.5) == labels)
    print(f"posterior predictive accuracy on the training data: {accuracy:.3f}")
    data = az.from_numpyro(l2hmc)
    print(az.summary(data, var_names=["bias"], kind="diagnostics"))


if __name__ == "__main__":
    main()
