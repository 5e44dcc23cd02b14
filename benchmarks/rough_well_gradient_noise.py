"""Signal-to-noise ratio of the L2HMC training gradient with respect to log ε on the Rough Well.

At the paper's starting point (the HMC limit, M = 10), this estimates the gradient of the ESJD loss
(λ² = 0.1) with respect to log ε on many independent batches of exact draws, and reports its mean,
its standard deviation across batches and their ratio. It does so on the Rough Well and on the same
target without its rough term (a standard Gaussian). The comparison explains why paper-faithful
training barely moves ε on the Rough Well (docs/benchmarks.md, "The Rough Well").

Usage::

    python benchmarks/rough_well_gradient_noise.py [--batches 200] [--batch-size 200] [--step-sizes 0.1 0.2]
"""

from __future__ import annotations

import argparse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=200, help="independent batches (default: 200)")
    parser.add_argument(
        "--step-sizes", type=float, nargs="+", default=[0.1, 0.2], help="the ε to probe (default: 0.1 0.2)"
    )
    parser.add_argument("--batch-size", type=int, default=200, help="exact draws per batch (default: 200)")
    return parser


if __name__ == "__main__":
    build_parser().parse_args()  # answer --help (and reject bad options) before the slow imports below

import equinox as eqx  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from l2hmc_ppl import L2HMCDynamics, esjd_loss, init_chains, propose  # noqa: E402
from l2hmc_ppl.targets import rough_well  # noqa: E402

LOSS_SCALE = 0.1  # the paper's λ²


def gradient_samples(logdensity_fn, dynamics, draw, *, num_batches: int, batch_size: int) -> np.ndarray:
    """∂L/∂log ε on ``num_batches`` independent batches of exact draws (one value per batch)."""

    def loss(log_step_size, key, positions):
        dyn = eqx.tree_at(lambda d: d.log_step_size, dynamics, log_step_size)
        states = init_chains(positions, logdensity_fn)
        keys = jax.random.split(key, positions.shape[0])
        proposals = jax.vmap(propose, (0, 0, None, None))(keys, states, logdensity_fn, dyn)
        return esjd_loss(
            positions, proposals.state.position, proposals.acceptance_probability, LOSS_SCALE
        ).mean()

    grad = jax.jit(jax.grad(loss))
    values = []
    for index in range(num_batches):
        key_draws, key_proposal = jax.random.split(jax.random.key(index))
        values.append(float(grad(dynamics.log_step_size, key_proposal, draw(key_draws, batch_size))))
    return np.asarray(values)


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    jax.config.update("jax_enable_x64", True)

    target = rough_well()

    def draw(key, num):
        return target.sample(key, num).astype(jnp.float64)

    logdensity_fns = {
        "rough_well": target.logdensity_fn,
        "gaussian (no rough term)": lambda x: -0.5 * jnp.sum(x**2),
    }
    base = L2HMCDynamics(
        2, num_leapfrog_steps=10, hidden_size=10, key=jax.random.key(0), dtype=jnp.float64
    ).as_hmc_limit()
    print(f"dL/dlog ε at the HMC limit, M = 10, {args.batches} batches of {args.batch_size} exact draws")
    for name, logdensity_fn in logdensity_fns.items():
        for step_size in args.step_sizes:
            values = gradient_samples(
                logdensity_fn,
                base.with_step_size(step_size),
                draw,
                num_batches=args.batches,
                batch_size=args.batch_size,
            )
            mean, sd = values.mean(), values.std(ddof=1)
            print(
                f"{name:26s} ε = {step_size}: mean {mean:11.4g}, sd across batches {sd:11.4g}, "
                f"signal-to-noise {abs(mean) / sd:.3f}"
            )


if __name__ == "__main__":
    main()
