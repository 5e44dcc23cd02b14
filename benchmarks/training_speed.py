"""Training speed: what compiling costs, how fast training runs, and NumPyro warm-up against NUTS.

In one process (so that every figure is measured under the same load):

1. ``train`` on the paper's 2-d strongly correlated Gaussian (SCG), 200 chains, M = 10, three calls
   with the same inputs: the first (compiles), a second with the same settings, and a third with
   another ``num_steps``. For each: wall seconds and the seconds JAX spent tracing, lowering and
   compiling (``jax.monitoring`` events), and the number of XLA compilations. Goals: the second and
   third calls compile less than 5% of the first.
2. Training iterations per second: a fourth call, already compiled, timed without its warm start.
3. ``MCMC(L2HMCKernel(model)).warmup`` against ``MCMC(NUTS(model)).warmup`` on German credit
   (logistic regression, 25 coefficients), 4 chains, sequential, ``--num-warmup`` iterations each,
   NUTS first: wall seconds, and their ratio (goal: L2HMC ≤ 2× NUTS).

``--early-stopping-patience 2`` runs the L2HMC warm-up with the opt-in early stopping of training.

JAX's persistent compilation cache is on by default (``--compilation-cache``): a second run of this
script then compiles (almost) nothing, which is what a user sees; measure the cold figures with
``--compilation-cache ''``.

``--baseline-checkout DIR`` (a checkout of an earlier commit, e.g. ``git worktree add /tmp/old
a02d7f2``, the engine before ``TrainState``) also times the first and second SCG ``train`` call of
that engine, in a subprocess started by this run, right after this engine's calls, so that both
are measured under the same load (its keyword API: ``train(..., num_steps=N)``).

    python benchmarks/training_speed.py --compilation-cache '' --baseline-checkout /tmp/old \
        --output training_speed.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the helpers are `benchmarks._...`


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--train-steps", type=int, default=500, help="training iterations of each SCG call")
    parser.add_argument("--train-chains", type=int, default=200, help="persistent training chains (SCG)")
    parser.add_argument("--num-warmup", type=int, default=1000, help="NumPyro warm-up iterations per chain")
    parser.add_argument("--num-chains", type=int, default=4, help="NumPyro chains (run sequentially)")
    parser.add_argument(
        "--parts", nargs="+", default=["train", "numpyro"], choices=["train", "numpyro"], help="what to run"
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="German credit folder (default: $L2HMC_PPL_GERMAN_CREDIT, else ../shared/data/german_credit)",
    )
    parser.add_argument(
        "--compilation-cache",
        default=None,
        metavar="DIR",
        help="JAX's persistent compilation cache (default: ~/.cache/l2hmc_ppl/jax); '' turns it off",
    )
    parser.add_argument(
        "--baseline-checkout",
        default=None,
        metavar="DIR",
        help="a checkout of the engine before TrainState (keyword train API): also time its SCG calls",
    )
    parser.add_argument(
        "--early-stopping-patience",
        type=int,
        default=None,
        help="L2HMCKernel's early_stopping_patience (default: off, as in TrainConfig)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of all the random keys")
    parser.add_argument("--output", default=None, help="write the figures as JSON here")
    return parser


if __name__ == "__main__":
    build_parser().parse_args()  # answer --help (and reject bad options) before the slow imports below

import json  # noqa: E402
import subprocess  # noqa: E402

import jax  # noqa: E402

import l2hmc_ppl  # noqa: E402
from benchmarks._common import _COMPILE_EVENTS, Stopwatch, german_credit_dir, log, machine_info, write_json  # noqa: E402

_BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"
_num_compiles = 0


def _count_compiles(event: str, duration: float, **_) -> None:
    global _num_compiles
    if event == _BACKEND_COMPILE:
        _num_compiles += 1


def timed_train(rng_key, target, dynamics, positions, config) -> dict:
    """One ``train`` call: wall and compile seconds, XLA compilations, and its history."""
    compiles_before = _num_compiles
    with Stopwatch() as timing:
        trained, history = l2hmc_ppl.train(rng_key, target.logdensity_fn, dynamics, positions, config)
        jax.block_until_ready(trained)
    return {**timing.as_dict(), "compilations": _num_compiles - compiles_before, "history": history}


def measure_training(args) -> dict:
    from l2hmc_ppl.targets import scg

    target = scg()
    keys = jax.random.split(jax.random.key(args.seed), 6)
    positions = target.sample(keys[0], args.train_chains)
    config = l2hmc_ppl.TrainConfig(num_steps=args.train_steps, progress_bar=False)
    results = {}
    calls = [
        ("first call", config),
        ("second call, same settings", config),
        ("third call, another num_steps", config.replace(num_steps=args.train_steps // 2)),
    ]
    # The same inputs each time: the warm start chooses M from the data, and with another seed it
    # may choose another M, which is another program (its masks have another shape).
    key = keys[1]
    for name, call_config in calls:
        dynamics = l2hmc_ppl.L2HMCDynamics(target.dim, num_leapfrog_steps=10, key=key)
        result = timed_train(key, target, dynamics, positions, call_config)
        result["num_leapfrog_steps"] = int(result.pop("history").warm_start.num_leapfrog_steps)
        results[name] = result
        log(f"train, {name}: {result['wall']:.1f} s wall, {result['compile']:.1f} s compiling "
            f"({result['compilations']} XLA compilations, M = {result['num_leapfrog_steps']})")  # fmt: skip
    first = results["first call"]["compile"]
    for name in ("second call, same settings", "third call, another num_steps"):
        results[name]["compile_fraction_of_first"] = results[name]["compile"] / first
    # Iterations per second of the compiled training loop alone: no warm start, no selection.
    loop_config = config.replace(warm_start=False, keep_best=False)
    dynamics = l2hmc_ppl.L2HMCDynamics(target.dim, num_leapfrog_steps=10, key=keys[4])
    timed_train(keys[4], target, dynamics, positions, loop_config)  # compiles the loop without warm start
    loop = timed_train(keys[5], target, dynamics, positions, loop_config)
    results["iterations_per_second"] = args.train_steps / loop["wall"]
    log(f"training loop: {results['iterations_per_second']:.1f} iterations/s "
        f"({args.train_chains} chains, M = 10)")  # fmt: skip
    return results


# Runs in a fresh interpreter with the baseline checkout first on sys.path; prints one JSON line.
_BASELINE_SCRIPT = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
import jax
import l2hmc_ppl
from l2hmc_ppl.targets import scg
assert l2hmc_ppl.__file__.startswith(sys.argv[1]), l2hmc_ppl.__file__
events = tuple(json.loads(sys.argv[5]))  # the compile events of benchmarks/_common.py
compile_seconds = [0.0]
def listen(event, duration, **_):
    if event in events:
        compile_seconds[0] += duration
jax.monitoring.register_event_duration_secs_listener(listen)
num_steps, num_chains, seed = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
target = scg()
keys = jax.random.split(jax.random.key(seed), 6)
positions = target.sample(keys[0], num_chains)
out = {}
for name, key in (("first call", keys[1]), ("second call, same settings", keys[1])):
    dynamics = l2hmc_ppl.L2HMCDynamics(target.dim, num_leapfrog_steps=10, key=key)
    before, start = compile_seconds[0], time.perf_counter()
    trained, _ = l2hmc_ppl.train(key, target.logdensity_fn, dynamics, positions, num_steps=num_steps,
                                 progress_bar=False)
    jax.block_until_ready(trained)
    out[name] = {"wall": time.perf_counter() - start, "compile": compile_seconds[0] - before}
print(json.dumps(out))
"""


def measure_baseline(args) -> dict:
    """The first and second SCG ``train`` calls of the engine in ``--baseline-checkout``."""
    command = [sys.executable, "-c", _BASELINE_SCRIPT, str(Path(args.baseline_checkout).resolve()),
               str(args.train_steps), str(args.train_chains), str(args.seed),
               json.dumps(_COMPILE_EVENTS)]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"the baseline run failed:\n{completed.stderr[-3000:]}")
    results = json.loads(completed.stdout.strip().splitlines()[-1])
    for name, result in results.items():
        log(f"baseline train, {name}: {result['wall']:.1f} s wall, {result['compile']:.1f} s compiling")
    return results


def measure_numpyro(args) -> dict:
    from numpyro.infer import MCMC, NUTS

    from benchmarks.suite_targets import get_target
    from l2hmc_ppl.numpyro import L2HMCKernel

    folder = german_credit_dir(args.data_dir)
    target = get_target("german_credit", folder.parent)
    results = {}
    l2hmc = L2HMCKernel(target.model, early_stopping_patience=args.early_stopping_patience)
    for name, kernel in (("nuts", NUTS(target.model)), ("l2hmc", l2hmc)):
        mcmc = MCMC(
            kernel,
            num_warmup=args.num_warmup,
            num_samples=args.num_warmup,
            num_chains=args.num_chains,
            chain_method="sequential",
            progress_bar=False,
        )
        with Stopwatch() as timing:
            mcmc.warmup(jax.random.key(args.seed), *target.model_args, **target.model_kwargs)
            jax.block_until_ready(mcmc.post_warmup_state)
        results[name] = timing.as_dict()
        log(f"NumPyro warm-up, {name}: {timing.wall:.1f} s wall, {timing.compile:.1f} s compiling")
    results["l2hmc_over_nuts"] = results["l2hmc"]["wall"] / results["nuts"]["wall"]
    log(f"L2HMCKernel warm-up / NUTS warm-up: {results['l2hmc_over_nuts']:.2f}x (goal: <= 2x)")
    return results


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    if args.compilation_cache != "":
        l2hmc_ppl.enable_compilation_cache(args.compilation_cache)
    jax.monitoring.register_event_duration_secs_listener(_count_compiles)
    record = {"machine": machine_info(), "arguments": vars(args)}
    if "train" in args.parts:
        record["train"] = measure_training(args)
        if args.baseline_checkout:
            baseline = measure_baseline(args)
            record["baseline_train"] = baseline
            ratio = record["train"]["first call"]["compile"] / baseline["first call"]["compile"]
            record["train"]["first_call_compile_over_baseline"] = ratio
            log(f"first-call compile, this engine / baseline: {ratio:.2f} (goal: <= 0.5)")
    if "numpyro" in args.parts:
        record["numpyro"] = measure_numpyro(args)
    if args.output:
        write_json(args.output, record)
    return record


if __name__ == "__main__":
    main()
