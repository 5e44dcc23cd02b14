"""Training speed of L2HMC on the paper's four targets, and where the time goes.

Trains with the paper's settings (paper §5.1: 5000 iterations, 200 chains, M = 10, λ² = 0.1, λ_b = 0 on
ICG and SCG and 1 on Rough Well and MoG, n_h = 10 on the 2-d targets and 100 on the ICG, temperature
annealing 5 → 1 on the MoG, no warm start) and reports, per target:

- the total wall time of :func:`l2hmc_ppl.train`, split into compilation (tracing, lowering and XLA,
  measured with ``jax.monitoring`` events) and running, with iterations per second both ways;
- the CPU time of the process (on a machine shared with other jobs the wall time is inflated by the
  contention; the CPU time is not);
- a component profile, each function jitted separately on the same 200 chains: one gradient of
  log p (the target), one forward proposal batch (M learned leapfrog steps, no gradient with respect
  to θ), and one step of the library's training (loss, its gradient through the trajectories, the
  Adam update: the work of one iteration), with their compile times and the median run time of
  repeated calls.

Usage::

    nice -n 10 python benchmarks/train_paper_targets.py                  # all four targets
    python benchmarks/train_paper_targets.py --targets scg --num-steps 1000 --out results/
    python benchmarks/train_paper_targets.py --targets scg --trace /tmp/trace  # jax.profiler trace

Results of a run on the project's 2-core machine are in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the helpers are `benchmarks._...`

__all__ = ["main", "profile_components", "time_training"]

PAPER_TARGETS = ("icg", "scg", "rough_well", "mog")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", default=",".join(PAPER_TARGETS), help="comma-separated targets")
    parser.add_argument("--num-steps", type=int, default=None, help="training iterations (default 5000)")
    parser.add_argument("--num-chains", type=int, default=200, help="training chains (default 200)")
    parser.add_argument("--no-profile", action="store_true", help="skip the component profile")
    parser.add_argument("--out", default=None, help="folder for train_timings.json and train_timings.md")
    parser.add_argument("--trace", default=None, help="write a jax.profiler trace of the training here")
    return parser


if __name__ == "__main__":
    build_parser().parse_args()  # answer --help (and reject bad options) before the slow imports below

import equinox as eqx  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from benchmarks._common import Stopwatch, uptime  # noqa: E402
from benchmarks._paper.config import get_target_config  # noqa: E402
from benchmarks._samplers import build_dynamics, train_l2hmc  # noqa: E402
from l2hmc_ppl import init_chains, propose  # noqa: E402
from l2hmc_ppl.targets import get_target  # noqa: E402
from l2hmc_ppl.training import StepOptions, init_train_state, step  # noqa: E402


def _median_seconds(fn, *args, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_training(name: str, num_steps: int | None = None, num_chains: int = 200, seed: int = 0) -> dict:
    """Train with the paper's configuration for ``name`` and time it (wall, CPU, compile, run).

    Args:
        name: one of the paper's targets.
        num_steps: training iterations (default: the paper's 5000).
        num_chains: training chains, started from N(0, I) (the paper's 200).
        seed: PRNG seed.

    Returns:
        A JSON-ready dict of the configuration and the timings.
    """
    target = get_target(name)
    config = get_target_config(name).paper
    if num_steps is not None:
        config = config.replace_training(num_steps=num_steps)
    key_start, key_train = jax.random.split(jax.random.key(seed))
    positions = jax.random.normal(key_start, (num_chains, target.dim))
    load_before = os.getloadavg()
    _, history, timing = train_l2hmc(key_train, target.logdensity_fn, config, positions)
    num_steps = config.train.num_steps
    return {
        "target": name,
        "config": config.describe(),
        "num_steps": num_steps,
        "wall": timing.wall,
        "cpu": timing.cpu,
        "compile": timing.compile,
        "run": timing.run,
        "iterations_per_second": num_steps / timing.wall,
        "iterations_per_second_excluding_compile": num_steps / max(timing.run, 1e-9),
        "final_acceptance_rate": float(history.acceptance_rate[-100:].mean()),
        "final_step_size": float(history.step_size[-1]),
        "load_average_before": list(load_before),
        "load_average_after": list(os.getloadavg()),
    }


def profile_components(name: str, num_chains: int = 200, repeats: int = 20, seed: int = 0) -> dict:
    """Compile and run times of the pieces of one training iteration, jitted separately.

    - ``logdensity_grad``: ∇ log p on the chains (what the target costs);
    - ``proposal``: the forward proposal batch (M learned leapfrog steps with M gradients each chain);
    - ``training_step``: one iteration of the library's training step
      (:func:`l2hmc_ppl.training.step`): the loss and its gradient with respect to θ (through the
      trajectory, ∇U included, with the burn-in term when λ_b > 0) and the Adam update.

    Args:
        name: a target with a benchmark configuration.
        num_chains: chains of the batch.
        repeats: timed calls per component (the median is reported).
        seed: PRNG seed.

    Returns:
        ``{component: {"compile": s, "run": median s per call}}`` plus the ratio of the training
        step to the forward proposal.
    """
    target = get_target(name)
    config = get_target_config(name).paper
    logdensity_fn = target.logdensity_fn
    key_dynamics, key_positions, key_call = jax.random.split(jax.random.key(seed), 3)
    dynamics = build_dynamics(key_dynamics, target.dim, config)
    positions = jax.random.normal(key_positions, (num_chains, target.dim))
    states = init_chains(positions, logdensity_fn)
    options = StepOptions.from_config(config.train)
    train_state = init_train_state(key_call, dynamics, states, options.optimizer)
    loss_scale = jnp.asarray(config.train.resolved_loss_scale, dynamics.log_step_size.dtype)

    def grad_logdensity(positions):
        return jax.vmap(jax.grad(logdensity_fn))(positions)

    def forward(key, states, dynamics):
        keys = jax.random.split(key, num_chains)
        return jax.vmap(propose, (0, 0, None, None))(keys, states, logdensity_fn, dynamics)

    def training_step(train_state, loss_scale):
        return step(train_state, logdensity_fn, options, loss_scale)

    components = {
        "logdensity_grad": (jax.jit(grad_logdensity), (positions,)),
        "proposal": (eqx.filter_jit(forward), (key_call, states, dynamics)),
        "training_step": (eqx.filter_jit(training_step), (train_state, loss_scale)),
    }
    result = {}
    for component, (fn, args) in components.items():
        with Stopwatch() as timing:
            jax.block_until_ready(fn(*args))
        result[component] = {"compile": timing.compile, "run": _median_seconds(fn, *args, repeats=repeats)}
    result["step_over_proposal"] = result["training_step"]["run"] / result["proposal"]["run"]
    return result


def _markdown(training: list[dict], profiles: dict[str, dict]) -> str:
    lines = [
        "| target | setting | steps | wall s | CPU s | compile s | run s | it/s | it/s excl. compile |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in training:
        lines.append(
            f"| {r['target']} | {r['config']} | {r['num_steps']} | {r['wall']:.1f} | {r['cpu']:.1f} | "
            f"{r['compile']:.1f} | {r['run']:.1f} | {r['iterations_per_second']:.1f} | "
            f"{r['iterations_per_second_excluding_compile']:.1f} |"
        )
    if profiles:
        lines += [
            "",
            "| target | ∇log p: compile s / run ms | proposal: compile s / run ms | "
            "training step: compile s / run ms | step ÷ proposal |",
            "|---|---|---|---|---|",
        ]
        for name, p in profiles.items():
            cells = [
                f"{p[c]['compile']:.2f} / {1e3 * p[c]['run']:.2f}"
                for c in ("logdensity_grad", "proposal", "training_step")
            ]
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {p['step_over_proposal']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (``--help`` for the options)."""
    args = build_parser().parse_args(argv)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]

    machine = {"uptime_start": uptime(), "cpu_count": os.cpu_count(), "jax": jax.__version__}
    print(f"# {machine['uptime_start']}", file=sys.stderr, flush=True)
    training, profiles = [], {}
    for name in targets:
        if args.trace:
            with jax.profiler.trace(str(Path(args.trace) / name)):
                result = time_training(name, args.num_steps, args.num_chains)
        else:
            result = time_training(name, args.num_steps, args.num_chains)
        training.append(result)
        print(
            f"{name}: {result['wall']:.1f}s wall ({result['compile']:.1f}s compiling), "
            f"{result['cpu']:.1f}s CPU, {result['iterations_per_second']:.1f} it/s",
            file=sys.stderr,
            flush=True,
        )
        if not args.no_profile:
            profiles[name] = profile_components(name, args.num_chains)
    machine["uptime_end"] = uptime()
    table = _markdown(training, profiles)
    print(table)
    print(f"# {machine['uptime_end']}")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_timings.json").write_text(
            json.dumps({"machine": machine, "training": training, "profiles": profiles}, indent=1)
        )
        (out / "train_timings.md").write_text(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
