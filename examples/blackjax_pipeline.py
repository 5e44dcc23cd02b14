"""A BlackJAX NUTS pipeline switched to L2HMC by changing two lines.

The pipeline is the usual one: a warmup (``blackjax.window_adaptation``) from one position, the tuned
sampler, then ``blackjax.util.run_inference_algorithm`` over vmapped chains started at the warmed-up
state, and BlackJAX's diagnostics. The target is Bayesian logistic regression on German credit
(25 coefficients). The script runs the pipeline with NUTS and with L2HMC and compares both with the
reference posterior moments.

Usage::

    python examples/blackjax_pipeline.py [--num-warmup 500] [--num-samples 1000] [--num-chains 4]

It takes a few minutes on a 2-core CPU, most of it compiling and training L2HMC (progress bars show
the warm start and the training). JAX's persistent compilation cache (on by default,
``--compilation-cache``) saves the compiling on later runs. The data: ``features.npy``,
``labels.npy`` and ``reference_moments.json`` (UCI Statlog German credit, numeric version; see
``l2hmc_ppl.targets.german_credit``), in ``--data-dir``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = os.environ.get("L2HMC_PPL_GERMAN_CREDIT") or str(
    REPO.parent / "shared" / "data" / "german_credit"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--num-warmup", type=int, default=500, help="warmup (NUTS) / training (L2HMC) iterations"
    )
    parser.add_argument("--num-samples", type=int, default=1000, help="draws per chain")
    parser.add_argument(
        "--num-chains", type=int, default=4, help="chains, vmapped, all started at the warmed-up state"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the random keys (the same for both samplers)"
    )
    parser.add_argument(
        "--data-dir",
        default=DEFAULT_DATA,
        help="folder with the German credit files (the default is $L2HMC_PPL_GERMAN_CREDIT if set, "
        "else ../shared/data/german_credit beside the repository)",
    )
    parser.add_argument("--no-progress-bar", action="store_true", help="hide L2HMC's training progress bars")
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

import blackjax  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import l2hmc_ppl  # noqa: E402
from l2hmc_ppl.blackjax import l2hmc, l2hmc_adaptation  # noqa: E402
from l2hmc_ppl.targets import german_credit  # noqa: E402


def pipeline(
    rng_key,
    logdensity_fn,
    initial_position,
    *,
    use_l2hmc,
    num_warmup,
    num_chains,
    num_samples,
    progress_bar=True,
):
    """Warmup, then ``num_chains`` vmapped chains; returns draws ``(num_chains, num_samples, dim)``."""
    key_warmup, key_sample = jax.random.split(rng_key)

    if use_l2hmc:  # swapped line 1 of 2: the adaptation
        # Every training option is a TrainConfig field; the defaults are used here.
        warmup = l2hmc_adaptation(logdensity_fn, progress_bar=progress_bar)
    else:
        warmup = blackjax.window_adaptation(blackjax.nuts, logdensity_fn)
    (state, parameters), _ = warmup.run(key_warmup, initial_position, num_steps=num_warmup)

    if use_l2hmc:  # swapped line 2 of 2: the algorithm
        sampler = l2hmc(logdensity_fn, **parameters)
    else:
        sampler = blackjax.nuts(logdensity_fn, **parameters)

    # Everything below is unchanged: start every chain at the warmed-up state and run them in parallel.
    initial_states = jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (num_chains, *x.shape)), state)

    @jax.jit
    def sample_chains(keys, states):
        def one_chain(key, state):
            _, (positions, info) = blackjax.util.run_inference_algorithm(
                key, sampler, num_samples, initial_state=state, transform=lambda s, i: (s.position, i)
            )
            return positions, info.acceptance_rate, info.num_integration_steps

        return jax.vmap(one_chain)(keys, states)

    return sample_chains(jax.random.split(key_sample, num_chains), initial_states)


def report(name, samples, acceptance, num_gradients, seconds, target):
    samples = np.asarray(samples, np.float64)
    ess = np.asarray(blackjax.diagnostics.effective_sample_size(samples))
    rhat = np.asarray(blackjax.diagnostics.potential_scale_reduction(samples))
    mean = samples.mean((0, 1))
    mcse = samples.reshape(-1, samples.shape[-1]).std(0, ddof=1) / np.sqrt(ess)
    z = np.abs(mean - target.mean) / mcse
    print(f"\n{name}  ({seconds:.1f} s including warmup and compilation)")
    print(f"  acceptance rate          {float(np.mean(acceptance)):.3f}")
    print(f"  gradients per draw       {float(np.mean(num_gradients)):.1f}")
    num_draws = samples.shape[0] * samples.shape[1]
    print(f"  ESS (min / median)       {ess.min():.0f} / {np.median(ess):.0f} of {num_draws}")
    print(f"  ESS per gradient (min)   {ess.min() / float(np.sum(num_gradients)):.2e}")
    print(f"  max R-hat                {rhat.max():.3f}")
    print(f"  max |mean - ref| / MCSE  {z.max():.2f}")
    reference_sd = np.sqrt(target.covariance[-1, -1])
    print(f"  intercept: {mean[-1]:+.3f} (reference {target.mean[-1]:+.3f} ± {reference_sd:.3f})")


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    if args.compilation_cache != "":
        l2hmc_ppl.enable_compilation_cache(args.compilation_cache)
    target = german_credit(args.data_dir)
    initial_position = jnp.zeros(target.dim)
    print(
        f"German credit logistic regression, d = {target.dim}; {args.num_chains} chains x "
        f"{args.num_samples} draws"
    )
    for name, use_l2hmc in (("NUTS (window adaptation)", False), ("L2HMC (trained)", True)):
        print(f"\n{name}: {args.num_warmup} warmup iterations, then sampling ...", flush=True)
        start = time.perf_counter()
        samples, acceptance, num_gradients = pipeline(
            jax.random.key(args.seed),
            target.logdensity_fn,
            initial_position,
            use_l2hmc=use_l2hmc,
            num_warmup=args.num_warmup,
            num_chains=args.num_chains,
            num_samples=args.num_samples,
            progress_bar=not args.no_progress_bar,
        )
        jax.block_until_ready(samples)
        report(name, samples, acceptance, num_gradients, time.perf_counter() - start, target)


if __name__ == "__main__":
    main()
