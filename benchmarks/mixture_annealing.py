"""How the temperature schedule decides whether L2HMC learns to jump between mixture modes.

Trains L2HMC with the paper's settings (M = 10, n_h = 10, the paper's objective with λ² = 0.1,
λ_b = 1, Adam 10⁻³, 200 chains from N(0, I), no warm start) under one temperature schedule, then

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
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the helpers are `benchmarks._...`


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="mog", help="a mixture: mog, mog2, mog6, mog2_unequal")
    parser.add_argument("--initial-temperature", type=float, default=20.0)
    parser.add_argument("--decay-rate", type=float, default=0.98, help="1 trains at a fixed temperature")
    parser.add_argument("--decay-every", type=int, default=50)
    parser.add_argument("--steps", type=int, default=10000, help="training iterations")
    parser.add_argument("--eval-temperatures", type=float, nargs="*", default=[])
    parser.add_argument("--eval-steps", type=int, default=1000, help="steps of each tempered evaluation")
    parser.add_argument("--num-chains", type=int, default=200, help="training and evaluation chains")
    parser.add_argument("--num-eval-steps", type=int, default=2000, help="steps of the evaluation at T = 1")
    parser.add_argument("--seed", type=int, default=0)
    return parser


if __name__ == "__main__":
    build_parser().parse_args()  # answer --help (and reject bad options) before the slow imports below

import jax  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks._paper.metrics import evaluate_run, mode_statistics  # noqa: E402
from benchmarks._samplers import PAPER_TRAINING, L2HMCConfig, run_l2hmc, train_l2hmc  # noqa: E402
from l2hmc_ppl import exponential_annealing  # noqa: E402
from l2hmc_ppl.targets import get_target  # noqa: E402


def main(argv=None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    target = get_target(args.target)
    if target.modes is None:
        parser.error(f"{args.target} is not a mixture")
    schedule = exponential_annealing(args.initial_temperature, 1.0, args.decay_rate, args.decay_every)
    config = L2HMCConfig(
        "study",
        PAPER_TRAINING.replace(num_steps=args.steps, burn_in_weight=1.0, temperature_schedule=schedule),
    )
    key_train, key_start, key_draws, key_eval = jax.random.split(jax.random.key(args.seed), 4)
    print(f"{args.target}: training {config.describe()}, seed {args.seed}")
    training_positions = jax.random.normal(key_start, (args.num_chains, target.dim))
    dynamics, history, timing = train_l2hmc(key_train, target.logdensity_fn, config, training_positions)
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

        def tempered_logdensity(x, temperature=eval_temperature):
            return target.logdensity_fn(x) / temperature

        run = run_l2hmc(key_eval, tempered_logdensity, dynamics, final_positions, args.eval_steps)
        stats = mode_statistics(run.samples, target.modes)
        print(
            f"  at T = {eval_temperature:g} from the training chains, {args.eval_steps} steps: acceptance "
            f"{run.acceptance_rate:.3f}, {stats['chains_switching']} / {args.num_chains} chains switch, "
            f"{stats['mean_switches_per_chain']:.3g} switches per chain"
        )

    initial_positions = target.sample(key_draws, args.num_chains)
    run = run_l2hmc(key_eval, target.logdensity_fn, dynamics, initial_positions, args.num_eval_steps)
    metrics = evaluate_run(run, target, max_lag_gradients=1)
    stats = metrics["modes"]
    print(
        f"  T = 1, {args.num_chains} chains from exact draws, {args.num_eval_steps} steps: acceptance "
        f"{metrics['acceptance_rate']:.3f}, ESS/step {metrics['ess_per_step']:.3g}, "
        f"ESS/step (x²) {metrics['second_moment_ess_per_step']:.3g}, "
        f"{stats['chains_visiting_all_modes']} / {args.num_chains} chains visit every mode, "
        f"{stats['mean_switches_per_chain']:.4g} switches per chain "
        f"(fewest {stats['min_switches_per_chain']})"
    )


if __name__ == "__main__":
    main()
