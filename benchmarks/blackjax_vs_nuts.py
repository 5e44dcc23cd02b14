"""L2HMC against BlackJAX's NUTS and HMC in one BlackJAX pipeline: ESS per gradient and steps per second.

For each target, every sampler goes through the same pipeline: an adaptation from one position
(``blackjax.window_adaptation`` for NUTS and HMC, `l2hmc_adaptation` for L2HMC), then
``blackjax.util.run_inference_algorithm`` over ``num_chains`` vmapped chains started at the adapted
state. The samplers:

- ``nuts``: ``blackjax.nuts`` with window adaptation (diagonal mass matrix, dense with ``--dense-mass``);
- ``hmc``: ``blackjax.hmc`` with M leapfrog steps, window adaptation of ε and the mass matrix;
- ``l2hmc``: trained L2HMC with M learned leapfrog steps (`l2hmc_adaptation`: HMC warm start of ε and
  a diagonal, or with ``--dense-mass`` dense, preconditioner, then ``--num-train-steps`` iterations
  of Algorithm 1 with Adam at ``--learning-rate``);
- ``l2hmc-hmc-limit``: the same trained dynamics with zeroed networks, i.e. HMC with the trained ε
  and the warm start's preconditioner: what the networks add over plain HMC with the same metric.

Reported per sampler: the ESS (minimum over coordinates of ``blackjax.diagnostics.effective_sample_size``),
gradient evaluations (sum of ``info.num_integration_steps``: M per transition for HMC and L2HMC, the
tree size for NUTS), ESS per gradient, transitions per second summed over the chains (sampling only,
compiled ahead of time), ESS per second, the adaptation's wall time (compilation included), the
acceptance rate and the largest |mean − truth| / MCSE as a sanity check.

Usage::

    python benchmarks/blackjax_vs_nuts.py --targets correlated_gaussian german_credit \\
        --num-chains 8 --num-samples 2000 --num-warmup 1000 --num-train-steps 1000 \\
        --learning-rate 1e-4 [--dense-mass] --output results.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the helpers are `benchmarks._...`


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", nargs="+", default=["correlated_gaussian", "german_credit"])
    parser.add_argument("--samplers", nargs="+", default=["nuts", "hmc", "l2hmc", "l2hmc-hmc-limit"])
    parser.add_argument("--num-chains", type=int, default=8)
    parser.add_argument("--num-samples", type=int, default=2000)
    parser.add_argument("--num-warmup", type=int, default=1000, help="window adaptation steps (NUTS, HMC)")
    parser.add_argument("--num-train-steps", type=int, default=1000, help="L2HMC training iterations")
    parser.add_argument("--num-leapfrog-steps", type=int, default=10, help="M for HMC and L2HMC")
    parser.add_argument("--num-particles", type=int, default=64, help="L2HMC training chains")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="Adam's learning rate for L2HMC")
    parser.add_argument(
        "--dense-mass", action="store_true", help="dense mass matrices (NUTS, HMC) and preconditioner (L2HMC)"
    )
    parser.add_argument("--float64", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--data-dir",
        default=None,
        help="German credit folder (default: $L2HMC_PPL_GERMAN_CREDIT, else ../shared/data/german_credit)",
    )
    parser.add_argument("--output", help="write the results as JSON here")
    return parser


if __name__ == "__main__":
    build_parser().parse_args()  # answer --help (and reject bad options) before the slow imports below

import blackjax  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks._common import german_credit_dir  # noqa: E402
from l2hmc_ppl import TrainConfig  # noqa: E402
from l2hmc_ppl.blackjax import l2hmc, l2hmc_adaptation  # noqa: E402
from l2hmc_ppl.targets import get_target  # noqa: E402


@dataclass(frozen=True)
class BenchmarkTarget:
    name: str
    dim: int
    logdensity_fn: object
    mean: np.ndarray
    covariance: np.ndarray


def correlated_gaussian(dim: int = 10, correlation: float = 0.9) -> BenchmarkTarget:
    """N(μ, Σ) with AR(1) correlation ``correlation`` and scales log-spaced over [0.3, 3]."""
    scales = np.logspace(np.log10(0.3), np.log10(3.0), dim)
    lags = np.abs(np.subtract.outer(np.arange(dim), np.arange(dim)))
    covariance = scales[:, None] * correlation**lags * scales[None, :]
    mean = np.linspace(-1.0, 1.0, dim)
    precision = np.linalg.inv(covariance)

    def logdensity_fn(x):
        centred = x - jnp.asarray(mean, x.dtype)
        return -0.5 * centred @ jnp.asarray(precision, x.dtype) @ centred

    return BenchmarkTarget(f"correlated_gaussian_{dim}d", dim, logdensity_fn, mean, covariance)


def load_target(name: str, data_dir: str | None = None) -> BenchmarkTarget:
    if name == "correlated_gaussian":
        return correlated_gaussian()
    options = {"data_dir": german_credit_dir(data_dir)} if name == "german_credit" else {}
    target = get_target(name, **options)
    return BenchmarkTarget(target.name, target.dim, target.logdensity_fn, target.mean, target.covariance)


def adapt(sampler_name, rng_key, target, initial_position, args):
    """Run the adaptation; returns the tuned ``SamplingAlgorithm`` and the adapted state."""
    logdensity_fn = target.logdensity_fn
    if sampler_name == "nuts":
        warmup = blackjax.window_adaptation(
            blackjax.nuts, logdensity_fn, is_mass_matrix_diagonal=not args.dense_mass
        )
        algorithm = blackjax.nuts
    elif sampler_name == "hmc":
        warmup = blackjax.window_adaptation(
            blackjax.hmc,
            logdensity_fn,
            is_mass_matrix_diagonal=not args.dense_mass,
            num_integration_steps=args.num_leapfrog_steps,
        )
        algorithm = blackjax.hmc
    else:
        training = TrainConfig(dense_mass=args.dense_mass, learning_rate=args.learning_rate)
        warmup = l2hmc_adaptation(
            logdensity_fn,
            config=training,
            num_leapfrog_steps=args.num_leapfrog_steps,
            num_particles=args.num_particles,
        )
        algorithm = l2hmc
    num_steps = args.num_train_steps if sampler_name == "l2hmc" else args.num_warmup
    (state, parameters), _ = warmup.run(rng_key, initial_position, num_steps=num_steps)
    if sampler_name == "hmc":
        parameters = dict(parameters, num_integration_steps=args.num_leapfrog_steps)
    return algorithm(logdensity_fn, **parameters), state, parameters


def sample(rng_key, sampler, state, num_chains, num_samples):
    """Vmapped chains from the adapted state; returns draws, infos and the sampling time (compiled)."""
    states = jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (num_chains, *x.shape)), state)

    def run(keys, states):
        def one_chain(key, state):
            _, (positions, info) = blackjax.util.run_inference_algorithm(
                key,
                sampler,
                num_samples,
                initial_state=state,
                transform=lambda s, i: (s.position, (i.acceptance_rate, i.num_integration_steps)),
            )
            return positions, info

        return jax.vmap(one_chain)(keys, states)

    keys = jax.random.split(rng_key, num_chains)
    compiled = jax.jit(run).lower(keys, states).compile()
    start = time.perf_counter()
    positions, info = jax.block_until_ready(compiled(keys, states))
    return positions, info, time.perf_counter() - start


def summarise(target, positions, info, seconds, adaptation_seconds):
    positions = np.asarray(positions, np.float64)
    acceptance, num_steps = (np.asarray(x) for x in info)
    if not np.all(np.isfinite(positions)) or float(acceptance.mean()) == 0.0:
        # e.g. an adaptation that diverged (non-finite mass matrix): report it, not NaN diagnostics
        return dict(
            failed=True, acceptance_rate=float(acceptance.mean()), adaptation_seconds=adaptation_seconds
        )
    num_chains, num_samples, _ = positions.shape
    ess = np.asarray(blackjax.diagnostics.effective_sample_size(positions))
    rhat = np.asarray(blackjax.diagnostics.potential_scale_reduction(positions))
    mcse = positions.reshape(-1, target.dim).std(0, ddof=1) / np.sqrt(ess)
    num_gradients = float(num_steps.sum())
    return dict(
        min_ess=float(ess.min()),
        median_ess=float(np.median(ess)),
        num_gradients=num_gradients,
        gradients_per_step=num_gradients / (num_chains * num_samples),
        ess_per_gradient=float(ess.min()) / num_gradients,
        steps_per_second=num_chains * num_samples / seconds,
        ess_per_second=float(ess.min()) / seconds,
        sampling_seconds=seconds,
        adaptation_seconds=adaptation_seconds,
        acceptance_rate=float(acceptance.mean()),
        max_rhat=float(rhat.max()),
        max_mean_z=float(np.max(np.abs(positions.mean((0, 1)) - target.mean) / mcse)),
        failed=False,
    )


def benchmark_target(target, args):
    results = {}
    initial_position = jnp.zeros(target.dim, jnp.result_type(float))
    key_adapt, key_sample = jax.random.split(jax.random.key(args.seed))
    l2hmc_parameters = l2hmc_state = None
    for sampler_name in args.samplers:
        start = time.perf_counter()
        if sampler_name == "l2hmc-hmc-limit":
            if l2hmc_parameters is None:
                raise ValueError("l2hmc-hmc-limit needs l2hmc earlier in --samplers")
            sampler, state = (
                l2hmc(target.logdensity_fn, l2hmc_parameters["dynamics"].as_hmc_limit()),
                l2hmc_state,
            )
            adaptation_seconds = 0.0
        else:
            sampler, state, parameters = adapt(sampler_name, key_adapt, target, initial_position, args)
            jax.block_until_ready(state)
            adaptation_seconds = time.perf_counter() - start
            if sampler_name == "l2hmc":
                l2hmc_parameters, l2hmc_state = parameters, state
        positions, info, seconds = sample(key_sample, sampler, state, args.num_chains, args.num_samples)
        results[sampler_name] = summarise(target, positions, info, seconds, adaptation_seconds)
        print(f"  {sampler_name:16s} done", flush=True)
    return results


def print_table(name, results):
    print(f"\n### {name}\n")
    print(
        "| sampler | min ESS | grads/step | ESS/grad | steps/s | ESS/s | accept | max R-hat | max |z| "
        "| adaptation s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for sampler_name, r in results.items():
        if r.get("failed"):
            print(f"| {sampler_name} | failed: no accepted transition (the adaptation diverged) |")
            continue
        print(
            f"| {sampler_name} | {r['min_ess']:.0f} | {r['gradients_per_step']:.1f} "
            f"| {r['ess_per_gradient']:.2e} "
            f"| {r['steps_per_second']:.0f} | {r['ess_per_second']:.0f} | {r['acceptance_rate']:.2f} "
            f"| {r['max_rhat']:.3f} | {r['max_mean_z']:.1f} | {r['adaptation_seconds']:.0f} |"
        )


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.float64:
        jax.config.update("jax_enable_x64", True)

    setup = dict(vars(args), device=str(jax.devices()[0]), jax=jax.__version__, blackjax=blackjax.__version__)
    setup["machine"] = platform.processor() or platform.machine()
    print(json.dumps(setup))
    all_results = {}
    for name in args.targets:
        target = load_target(name, args.data_dir)
        print(f"{target.name} (d = {target.dim})", flush=True)
        all_results[target.name] = benchmark_target(target, args)
        print_table(target.name, all_results[target.name])
    if args.output:
        with open(args.output, "w") as file:
            json.dump(dict(setup=setup, results=all_results), file, indent=1)
    return all_results


if __name__ == "__main__":
    main()
