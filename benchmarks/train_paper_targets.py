"""Training speed of L2HMC on the paper's four targets, and where the time goes.

Trains with the paper's settings (SPEC §5: 5000 iterations, 200 chains, M = 10, λ² = 0.1, λ_b = 0 on
ICG and SCG and 1 on Rough Well and MoG, n_h = 10 on the 2-d targets and 100 on the ICG, temperature
annealing 5 → 1 on the MoG, no warm start) and reports, per target:

- the total wall time of :func:`l2hmc_ppl.train`, split into compilation (tracing, lowering and XLA,
  measured with ``jax.monitoring`` events) and running, with iterations per second both ways;
- the CPU time of the process (on a machine shared with other jobs the wall time is inflated by the
  contention; the CPU time is not);
- a component profile, each function jitted separately on the same 200 chains: one gradient of
  log p (the target), one forward proposal batch (M learned leapfrog steps, no gradient with respect
  to θ), and one value-and-gradient of the training loss (the work of one iteration), with their
  compile times and the median run time of repeated calls.

Usage::

    nice -n 10 python benchmarks/train_paper_targets.py                  # all four targets
    python benchmarks/train_paper_targets.py --targets scg --num-steps 1000 --out results/
    python benchmarks/train_paper_targets.py --targets scg --trace /tmp/trace  # jax.profiler trace

Results of a run on the project's 2-core machine are in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import equinox as eqx
import jax

from l2hmc_ppl.benchmarks.config import get_target_config
from l2hmc_ppl.benchmarks.samplers import Stopwatch, build_l2hmc, train_l2hmc
from l2hmc_ppl.core.kernel import L2HMCState, init, propose
from l2hmc_ppl.targets import get_target
from l2hmc_ppl.training.loss import esjd_loss

__all__ = ["main", "profile_components", "time_training"]

PAPER_TARGETS = ("icg", "scg", "rough_well", "mog")


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _median_seconds(fn, *args, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_training(name: str, num_steps: int | None = None, seed: int = 0) -> dict:
    """Train with the paper's configuration for ``name`` and time it (wall, CPU, compile, run).

    Args:
        name: one of the paper's targets.
        num_steps: training iterations (default: the paper's 5000).
        seed: PRNG seed.

    Returns:
        A JSON-ready dict of the configuration and the timings.
    """
    target = get_target(name)
    config = get_target_config(name).paper
    if num_steps is not None:
        config = dataclasses.replace(config, num_train_steps=num_steps)
    load_before = os.getloadavg()
    _, history, timing = train_l2hmc(jax.random.key(seed), target, config, num_chains=200)
    return {
        "target": name,
        "config": config.describe(),
        "num_steps": config.num_train_steps,
        "wall": timing.wall,
        "cpu": timing.cpu,
        "compile": timing.compile,
        "run": timing.run,
        "iterations_per_second": config.num_train_steps / timing.wall,
        "iterations_per_second_excluding_compile": config.num_train_steps / max(timing.run, 1e-9),
        "final_acceptance_rate": float(history.acceptance_rate[-100:].mean()),
        "final_step_size": float(history.step_size[-1]),
        "load_average_before": list(load_before),
        "load_average_after": list(os.getloadavg()),
    }


def profile_components(name: str, repeats: int = 20, seed: int = 0) -> dict:
    """Compile and run times of the pieces of one training iteration, jitted separately.

    - ``logdensity_grad``: ∇ log p on the 200 chains (what the target costs);
    - ``proposal``: the forward proposal batch (M learned leapfrog steps with M gradients each chain);
    - ``loss_value_and_grad``: the training loss and its gradient with respect to θ (through the
      trajectory, ∇U included), with the burn-in term when λ_b > 0: one iteration's work.

    Args:
        name: a target with a benchmark configuration.
        repeats: timed calls per component (the median is reported).
        seed: PRNG seed.

    Returns:
        ``{component: {"compile": s, "run": median s per call}}`` plus the ratio of the loss gradient
        to the forward proposal.
    """
    target = get_target(name)
    config = get_target_config(name).paper
    key_dynamics, key_positions, key_call = jax.random.split(jax.random.key(seed), 3)
    dynamics = build_l2hmc(key_dynamics, target.dim, config)
    positions = jax.random.normal(key_positions, (200, target.dim))
    states = jax.vmap(init, (0, None))(positions, target.logdensity_fn)
    params, static = eqx.partition(dynamics, dynamics.trainable_filter())
    batch_propose = jax.vmap(propose, (0, 0, None, None))

    def grad_logdensity(positions):
        return jax.vmap(jax.grad(target.logdensity_fn))(positions)

    def forward(key, states, dynamics):
        return batch_propose(jax.random.split(key, 200), states, target.logdensity_fn, dynamics)

    def loss(params, key, states):
        dynamics = eqx.combine(params, static)
        key_chains, key_fresh, key_draws = jax.random.split(key, 3)

        def batch_loss(key, states):
            proposals = batch_propose(jax.random.split(key, 200), states, target.logdensity_fn, dynamics)
            return esjd_loss(
                states.position, proposals.state.position, proposals.acceptance_probability, config.loss_scale
            )

        losses = batch_loss(key_chains, states)
        if config.burn_in_weight:
            fresh = jax.random.normal(key_draws, positions.shape)
            logdensity, grad = jax.vmap(jax.value_and_grad(target.logdensity_fn))(fresh)
            losses = losses + config.burn_in_weight * batch_loss(
                key_fresh, L2HMCState(fresh, logdensity, grad)
            )
        return losses.mean()

    components = {
        "logdensity_grad": (jax.jit(grad_logdensity), (positions,)),
        "proposal": (jax.jit(forward), (key_call, states, dynamics)),
        "loss_value_and_grad": (jax.jit(jax.value_and_grad(loss)), (params, key_call, states)),
    }
    result = {}
    for component, (fn, args) in components.items():
        with Stopwatch() as timing:
            jax.block_until_ready(fn(*args))
        result[component] = {"compile": timing.compile, "run": _median_seconds(fn, *args, repeats=repeats)}
    result["loss_grad_over_proposal"] = result["loss_value_and_grad"]["run"] / result["proposal"]["run"]
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
            "loss value+grad: compile s / run ms | grad ÷ proposal |",
            "|---|---|---|---|---|",
        ]
        for name, p in profiles.items():
            cells = [
                f"{p[c]['compile']:.2f} / {1e3 * p[c]['run']:.2f}"
                for c in ("logdensity_grad", "proposal", "loss_value_and_grad")
            ]
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {p['loss_grad_over_proposal']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (``--help`` for the options)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", default=",".join(PAPER_TARGETS), help="comma-separated targets")
    parser.add_argument("--num-steps", type=int, default=None, help="training iterations (default 5000)")
    parser.add_argument("--no-profile", action="store_true", help="skip the component profile")
    parser.add_argument("--out", default=None, help="folder for train_timings.json and train_timings.md")
    parser.add_argument("--trace", default=None, help="write a jax.profiler trace of the training here")
    args = parser.parse_args(argv)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]

    machine = {"uptime_start": _uptime(), "cpu_count": os.cpu_count(), "jax": jax.__version__}
    print(f"# {machine['uptime_start']}", file=sys.stderr, flush=True)
    training, profiles = [], {}
    for name in targets:
        if args.trace:
            with jax.profiler.trace(str(Path(args.trace) / name)):
                result = time_training(name, args.num_steps)
        else:
            result = time_training(name, args.num_steps)
        training.append(result)
        print(
            f"{name}: {result['wall']:.1f}s wall ({result['compile']:.1f}s compiling), "
            f"{result['cpu']:.1f}s CPU, {result['iterations_per_second']:.1f} it/s",
            file=sys.stderr,
            flush=True,
        )
        if not args.no_profile:
            profiles[name] = profile_components(name)
    machine["uptime_end"] = _uptime()
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
