"""Cost of one L2HMC transition relative to one BlackJAX HMC transition with the same M.

Both kernels are jitted, vmapped over a batch of chains and run inside one ``lax.scan`` of
transitions, in the same process; the figure reported is the ratio of wall times (min over repeats),
never an absolute timing to assert on. Also prints the largest invertibility and log-determinant
errors of the learned leapfrog (float64, random order-one heads) for the record.

Usage: ``python benchmarks/kernel_speed.py [--chains 200] [--steps 200]``
"""

from __future__ import annotations

import argparse
import time

import blackjax
import jax
import jax.numpy as jnp
import numpy as np

import l2hmc_ppl
from l2hmc_ppl import L2HMCDynamics
from l2hmc_ppl.targets import icg, scg


def _time(fn, *args, repeats=5):
    jax.block_until_ready(fn(*args))  # compile
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - start)
    return best


def compare(target, hidden_size, num_chains, num_steps, num_leapfrog_steps=10, step_size=0.05):
    dynamics = L2HMCDynamics(
        target.dim,
        num_leapfrog_steps=num_leapfrog_steps,
        hidden_size=hidden_size,
        step_size=step_size,
        key=jax.random.key(0),
    )
    positions = target.sample(jax.random.key(1), num_chains)
    l2hmc_kernel = l2hmc_ppl.build_kernel()
    hmc = blackjax.hmc(target.logdensity_fn, step_size, jnp.ones(target.dim), num_leapfrog_steps)

    def run(init_fn, step_fn):
        @jax.jit
        def go(key):
            states = jax.vmap(init_fn)(positions)

            def one(states, key):
                keys = jax.random.split(key, num_chains)
                states, info = jax.vmap(step_fn)(keys, states)
                return states, info.acceptance_rate.mean()

            return jax.lax.scan(one, states, jax.random.split(key, num_steps))[1]

        return go

    l2hmc_run = run(
        lambda p: l2hmc_ppl.init(p, target.logdensity_fn),
        lambda k, s: l2hmc_kernel(k, s, target.logdensity_fn, dynamics),
    )
    hmc_run = run(hmc.init, hmc.step)
    key = jax.random.key(2)
    t_l2hmc = _time(l2hmc_run, key)
    t_hmc = _time(hmc_run, key)
    return t_l2hmc, t_hmc


def exactness_errors():
    from tests.helpers import randomize_heads  # test helper: random order-one heads

    dim = 5

    def logdensity_fn(x):
        return -0.25 * jnp.sum(x**4) - 0.5 * jnp.sum(x**2) + 0.3 * x[0] * x[1]

    worst_inverse, worst_log_det_sum, worst_autodiff = 0.0, 0.0, 0.0
    for seed in range(10):
        dynamics = L2HMCDynamics(
            dim, num_leapfrog_steps=4, hidden_size=8, step_size=0.2, key=jax.random.key(seed)
        )
        dynamics = randomize_heads(dynamics, jax.random.key(seed + 50), scale=0.5)
        x, v = jax.random.normal(jax.random.key(seed + 99), (2, dim))
        for direction in (1.0, -1.0):
            there = l2hmc_ppl.learned_leapfrog(
                dynamics, logdensity_fn, x, v, jax.grad(logdensity_fn)(x), direction
            )
            back = l2hmc_ppl.learned_leapfrog(
                dynamics, logdensity_fn, there.position, there.momentum, there.logdensity_grad, -direction
            )
            error = max(
                float(jnp.max(jnp.abs(back.position - x))), float(jnp.max(jnp.abs(back.momentum - v)))
            )
            worst_inverse = max(worst_inverse, error)
            worst_log_det_sum = max(
                worst_log_det_sum, abs(float(there.log_det_jacobian + back.log_det_jacobian))
            )

            def phase_map(xi, direction=direction, dynamics=dynamics):
                out = l2hmc_ppl.learned_leapfrog(
                    dynamics, logdensity_fn, xi[:dim], xi[dim:], jax.grad(logdensity_fn)(xi[:dim]), direction
                )
                return jnp.concatenate([out.position, out.momentum])

            _, autodiff = jnp.linalg.slogdet(jax.jacfwd(phase_map)(jnp.concatenate([x, v])))
            worst_autodiff = max(worst_autodiff, abs(float(there.log_det_jacobian - autodiff)))
    return worst_inverse, worst_log_det_sum, worst_autodiff


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains", type=int, default=200)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args(argv)
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
    print(f"  max |log det − slogdet(jacfwd)|          {autodiff:.2e}")


if __name__ == "__main__":
    main()
