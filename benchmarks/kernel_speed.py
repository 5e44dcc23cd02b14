"""Cost of one L2HMC transition relative to one BlackJAX HMC transition with the same M.

Both kernels run in the library's one vmapped scan over chains (``l2hmc_ppl.run_chains``), jitted,
in the same process; the figure reported is the ratio of wall times (min over repeats), never an
absolute timing to assert on. Also prints the largest invertibility and log-determinant errors of
the learned leapfrog (float64, random order-one heads) for the record.

Usage: ``python benchmarks/kernel_speed.py [--chains 200] [--steps 200]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `benchmarks._...` and `tests.mutants`


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains", type=int, default=200, help="chains per batch (default: 200)")
    parser.add_argument("--steps", type=int, default=200, help="transitions per chain (default: 200)")
    return parser


if __name__ == "__main__":
    build_parser().parse_args()  # answer --help (and reject bad options) before the slow imports below

import blackjax  # noqa: E402
import equinox as eqx  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import l2hmc_ppl  # noqa: E402
from benchmarks._samplers import hmc_kernel  # noqa: E402
from l2hmc_ppl import L2HMCDynamics  # noqa: E402
from l2hmc_ppl.targets import icg, scg  # noqa: E402

_run_chains = eqx.filter_jit(l2hmc_ppl.run_chains)


def _best_seconds(fn, repeats: int = 5) -> float:
    """The fastest of ``repeats`` calls of ``fn()``, after one call that compiles."""
    jax.block_until_ready(fn())
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - start)
    return best


def compare(target, hidden_size, num_chains, num_steps, num_leapfrog_steps=10, step_size=0.05):
    """Best wall seconds of ``num_steps`` transitions of ``num_chains`` chains: (L2HMC, HMC)."""
    dynamics = L2HMCDynamics(
        target.dim,
        num_leapfrog_steps=num_leapfrog_steps,
        hidden_size=hidden_size,
        step_size=step_size,
        key=jax.random.key(0),
    )
    positions = target.sample(jax.random.key(1), num_chains)
    key = jax.random.key(2)
    logdensity_fn = target.logdensity_fn
    l2hmc_states = l2hmc_ppl.init_chains(positions, logdensity_fn)
    hmc_states = jax.vmap(blackjax.hmc.init, (0, None))(positions, logdensity_fn)
    hmc_params = (jnp.asarray(step_size, positions.dtype), jnp.ones(target.dim, positions.dtype))
    kernel = hmc_kernel(num_leapfrog_steps)
    t_l2hmc = _best_seconds(lambda: _run_chains(key, logdensity_fn, dynamics, l2hmc_states, num_steps))
    t_hmc = _best_seconds(
        lambda: _run_chains(key, logdensity_fn, hmc_params, hmc_states, num_steps, kernel=kernel)
    )
    return t_l2hmc, t_hmc


def exactness_errors():
    """Largest |backward(forward(ξ)) − ξ|, |log det forward + log det backward| and |log det − slogdet|."""
    from tests.mutants import randomize_heads  # test helper: random order-one heads

    dim = 5

    def logdensity_fn(x):
        return -0.25 * jnp.sum(x**4) - 0.5 * jnp.sum(x**2) + 0.3 * x[0] * x[1]

    @eqx.filter_jit
    def leapfrog(dynamics, position, momentum, direction):
        logdensity, grad = jax.value_and_grad(logdensity_fn)(position)
        return l2hmc_ppl.learned_leapfrog(
            dynamics, logdensity_fn, position, momentum, logdensity, grad, direction
        )

    @eqx.filter_jit
    def autodiff_log_det(dynamics, position, momentum, direction):
        def phase_map(xi):
            out = leapfrog(dynamics, xi[:dim], xi[dim:], direction)
            return jnp.concatenate([out.position, out.momentum])

        return jnp.linalg.slogdet(jax.jacrev(phase_map)(jnp.concatenate([position, momentum])))[1]

    worst_inverse, worst_log_det_sum, worst_autodiff = 0.0, 0.0, 0.0
    for seed in range(10):
        dynamics = L2HMCDynamics(
            dim, num_leapfrog_steps=4, hidden_size=8, step_size=0.2, key=jax.random.key(seed)
        )
        dynamics = randomize_heads(dynamics, jax.random.key(seed + 50), scale=0.5)
        x, v = jax.random.normal(jax.random.key(seed + 99), (2, dim))
        for direction in (1.0, -1.0):
            there = leapfrog(dynamics, x, v, direction)
            back = leapfrog(dynamics, there.position, there.momentum, -direction)
            error = max(
                float(jnp.max(jnp.abs(back.position - x))), float(jnp.max(jnp.abs(back.momentum - v)))
            )
            worst_inverse = max(worst_inverse, error)
            worst_log_det_sum = max(
                worst_log_det_sum, abs(float(there.log_det_jacobian + back.log_det_jacobian))
            )
            autodiff = autodiff_log_det(dynamics, x, v, direction)
            worst_autodiff = max(worst_autodiff, abs(float(there.log_det_jacobian - autodiff)))
    return worst_inverse, worst_log_det_sum, worst_autodiff


def main(argv=None):
    args = build_parser().parse_args(argv)
    device = jax.devices()[0].device_kind
    print(f"JAX {jax.__version__} on {device}; {args.chains} chains x {args.steps} transitions")
    print(f"{'target':<10}{'n_h':>5}{'L2HMC s':>10}{'HMC s':>10}{'ratio':>8}")
    for target, hidden in ((scg(), 10), (icg(), 100)):
        t_l2hmc, t_hmc = compare(target, hidden, args.chains, args.steps)
        print(f"{target.name:<10}{hidden:>5}{t_l2hmc:>10.3f}{t_hmc:>10.3f}{t_l2hmc / t_hmc:>8.2f}")
    jax.config.update("jax_enable_x64", True)
    inverse, log_det_sum, autodiff = exactness_errors()
    print("float64, 10 random order-one weight draws, both directions, quartic 5-d target:")
    print(f"  max |backward(forward(ξ)) − ξ|           {inverse:.2e}")
    print(f"  max |log det forward + log det backward| {log_det_sum:.2e}")
    print(f"  max |log det − slogdet(jacrev)|          {autodiff:.2e}")


if __name__ == "__main__":
    main()
