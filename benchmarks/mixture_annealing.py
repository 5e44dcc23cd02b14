"""How the temperature schedule decides whether L2HMC learns to jump between mixture modes.

Trains L2HMC with the paper's settings (M = 10, n_h = 10, λ² = 0.1, λ_b = 1, Adam 10⁻³, 200 chains
from N(0, I)) under one temperature schedule, then

- runs the trained sampler from the training chains' final states at each ``--eval-temperatures``
  (the target tempered to p^{1/T}) and counts the mode switches, and
- evaluates it with the benchmark's protocol at T = 1 (200 chains from exact draws, 2000 steps).

``--initial-temperature 20 --decay-every 50 --steps 10000`` is the benchmark's tuned MoG
configuration; ``--initial-temperature 5`` the paper's; ``--decay-rate 1`` trains at a fixed
temperature. See docs/benchmarks.md, "The mixtures".

Usage: ``python benchmarks/mixture_annealing.py [--target mog] [--initial-temperature 20] ...``
"""

from __future__ import annotations

import argparse
import dataclasses

import jax
import numpy as np

from l2hmc_ppl.benchmarks.config import L2HMCConfig
from l2hmc_ppl.benchmarks.metrics import evaluate_run, mode_statistics
from l2hmc_ppl.benchmarks.samplers import sample_l2hmc, train_l2hmc
from l2hmc_ppl.targets import get_target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="mog", help="a mixture: mog, mog2, mog6, mog2_unequal")
    parser.add_argument("--initial-temperature", type=float, default=20.0)
    parser.add_argument("--decay-rate", type=float, default=0.98, help="1 trains at a fixed temperature")
    parser.add_argument("--decay-every", type=int, default=50)
    parser.add_argument("--steps", type=int, default=10000, help="training iterations")
    parser.add_argument("--eval-temperatures", type=float, nargs="*", default=[])
    parser.add_argument("--eval-steps", type=int, default=1000, help="steps of each tempered evaluation")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    target = get_target(args.target)
    if target.modes is None:
        parser.error(f"{args.target} is not a mixture")
    config = L2HMCConfig(
        "study",
        num_train_steps=args.steps,
        burn_in_weight=1.0,
        annealing=(args.initial_temperature, args.decay_rate, args.decay_every),
    )
    key_train, key_draws, key_eval = jax.random.split(jax.random.key(args.seed), 3)
    print(f"{args.target}: training {config.describe()}, seed {args.seed}")
    dynamics, history, timing = train_l2hmc(key_train, target, config, num_chains=200)
    temperature = np.asarray(history.temperature)
    jump = np.asarray(history.squared_jump_distance)
    acceptance = np.asarray(history.acceptance_rate)
    window = max(1, args.steps // 10)
    for start in range(0, args.steps, window):
        part = slice(start, start + window)
        print(
            f"  iterations {start:5d}+: T {temperature[start]:6.2f}, "
            f"acceptance {acceptance[part].mean():.3f}, ESJD (δA) {jump[part].mean():7.3f}"
        )
    print(f"  trained ε {float(history.step_size[-1]):.3f}, training took {timing.wall:.0f} s")

    final_positions = history.final_state.position
    for eval_temperature in args.eval_temperatures:
        tempered = dataclasses.replace(
            target, logdensity_fn=lambda x, t=eval_temperature: target.logdensity_fn(x) / t
        )
        run = sample_l2hmc(key_eval, tempered, dynamics, final_positions, args.eval_steps)
        stats = mode_statistics(run.samples, target.modes)
        print(
            f"  at T = {eval_temperature:g} from the training chains, {args.eval_steps} steps: acceptance "
            f"{run.acceptance_rate:.3f}, {stats['chains_switching']} / 200 chains switch, "
            f"{stats['mean_switches_per_chain']:.3g} switches per chain"
        )

    run = sample_l2hmc(key_eval, target, dynamics, target.sample(key_draws, 200), 2000)
    metrics = evaluate_run(run, target, max_lag_gradients=1)
    stats = metrics["modes"]
    print(
        f"  T = 1, 200 chains from exact draws, 2000 steps: acceptance {metrics['acceptance_rate']:.3f}, "
        f"ESS/step {metrics['ess_per_step']:.3g}, ESS/step (x²) {metrics['second_moment_ess_per_step']:.3g}, "
        f"{stats['chains_visiting_all_modes']} / 200 chains visit every mode, "
        f"{stats['mean_switches_per_chain']:.4g} switches per chain "
        f"(fewest {stats['min_switches_per_chain']})"
    )


if __name__ == "__main__":
    main()
