"""Training: the loss, Algorithm 1, the warm start, save/load, robustness and sharding."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import blackjax.mcmc.integrators as integrators
import blackjax.mcmc.metrics as metrics
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import l2hmc_ppl
from l2hmc_ppl import L2HMCDynamics, esjd_loss, load, save, train
from l2hmc_ppl.diagnostics import paper_ess
from l2hmc_ppl.targets import scg
from tests.helpers import Z_THRESHOLD, max_abs_z, randomize_heads, tree_max_abs_diff
from tests.test_invariance import ExactTarget, transitioned_draws

NUM_LEAPFROG_STEPS = 10


def test_loss_matches_numpy():
    rng = np.random.default_rng(0)
    x, x_new = rng.normal(size=(2, 6, 3))
    acceptance = rng.uniform(size=6)
    for scale in (0.1, 2.0):
        jump = np.sum((x - x_new) ** 2, axis=1) * acceptance
        expected = scale / (jump + 1e-4) - jump / scale
        np.testing.assert_allclose(esjd_loss(x, x_new, acceptance, scale), expected, rtol=1e-12)
    per_dim = np.array([0.5, 1.0, 4.0])
    jump = np.sum((x - x_new) ** 2 / per_dim, axis=1) * acceptance
    np.testing.assert_allclose(esjd_loss(x, x_new, acceptance, per_dim), 1 / (jump + 1e-4) - jump, rtol=1e-12)
    # A non-finite proposal counts as no move, not as NaN.
    x_new[0, 0] = np.nan
    assert np.all(np.isfinite(esjd_loss(x, x_new, acceptance, 0.1)))


def _chains(dynamics, target, seed, num_chains=256, num_steps=400):
    """Run chains from exact draws; return samples of shape (steps, chains, dim)."""
    kernel = l2hmc_ppl.build_kernel()

    @jax.jit
    def run(key):
        key_init, key_run = jax.random.split(key)
        states = jax.vmap(l2hmc_ppl.init, (0, None))(
            target.sample(key_init, num_chains), target.logdensity_fn
        )

        def step(states, key):
            keys = jax.random.split(key, num_chains)
            states, _ = jax.vmap(kernel, (0, 0, None, None))(keys, states, target.logdensity_fn, dynamics)
            return states, states.position

        return jax.lax.scan(step, states, jax.random.split(key_run, num_steps))[1]

    return np.asarray(run(jax.random.key(seed)))


def _ess_per_gradient(dynamics, target, seed, num_groups=8):
    """ESS per gradient (paper estimator) over independent groups of chains: mean and its SE."""
    samples = _chains(dynamics, target, seed)
    groups = np.split(samples, num_groups, axis=1)
    values = np.array([paper_ess(g, target.mean, target.covariance) for g in groups]) / NUM_LEAPFROG_STEPS
    return values.mean(), values.std(ddof=1) / np.sqrt(num_groups)


@pytest.fixture(scope="module")
def trained_on_scg():
    target = scg()
    dynamics = L2HMCDynamics(2, num_leapfrog_steps=NUM_LEAPFROG_STEPS, step_size=0.1, key=jax.random.key(0))
    positions = target.sample(jax.random.key(1), 200)
    trained, history = train(
        jax.random.key(2),
        target.logdensity_fn,
        dynamics,
        positions,
        num_steps=1500,
        warm_start=False,  # paper-faithful: the comparison is with the untrained HMC limit
        progress_bar=False,
    )
    return target, dynamics, trained, history


def test_training_beats_untrained_hmc_limit(trained_on_scg):
    target, dynamics, trained, history = trained_on_scg
    assert history.loss.shape == (1500,) and history.num_skipped == 0
    untrained_mean, untrained_se = _ess_per_gradient(dynamics.as_hmc_limit(), target, seed=3)
    trained_mean, trained_se = _ess_per_gradient(trained, target, seed=3)
    z = (trained_mean - untrained_mean) / np.hypot(trained_se, untrained_se)
    print(
        f"ESS/grad untrained {untrained_mean:.2e} ± {untrained_se:.1e}, "
        f"trained {trained_mean:.2e} ± {trained_se:.1e}"
    )
    assert z > Z_THRESHOLD
    # the history shows the mechanism: the expected squared jump grew
    assert history.squared_jump_distance[-100:].mean() > 5 * history.squared_jump_distance[:100].mean()


@pytest.mark.parametrize("num_transitions", [1, 5])
def test_trained_weights_keep_the_target_invariant(trained_on_scg, num_transitions):
    target, _, trained, _ = trained_on_scg
    exact = ExactTarget(target.logdensity_fn, target.sample, target.mean, np.diag(target.covariance))
    draws, acceptance = transitioned_draws(exact, trained, num_transitions)
    assert float(acceptance) > 0.05
    assert max_abs_z(draws, exact.mean, exact.variance) < Z_THRESHOLD


def test_warm_start_is_tuned_hmc_with_the_adapted_mass_matrix():
    target = scg()
    dynamics = L2HMCDynamics(2, num_leapfrog_steps=5, key=jax.random.key(0))
    states = jax.vmap(l2hmc_ppl.init, (0, None))(target.sample(jax.random.key(1), 64), target.logdensity_fn)
    adapted, _, info = l2hmc_ppl.warm_start(
        jax.random.key(2), target.logdensity_fn, dynamics, states, num_steps=80, dense_mass=True
    )
    assert adapted.dense_preconditioner
    hmc = adapted.as_hmc_limit()
    np.testing.assert_allclose(
        hmc.preconditioner_scale @ hmc.preconditioner_scale.T, info.covariance, rtol=1e-10
    )

    # One proposal of the kernel against BlackJAX's velocity Verlet with inverse mass L Lᵀ.
    state = l2hmc_ppl.init(jnp.array([3.0, 2.0]), target.logdensity_fn)
    key = jax.random.key(5)
    proposal = l2hmc_ppl.propose(key, state, target.logdensity_fn, hmc)
    key_momentum, _ = jax.random.split(key)
    whitened_momentum = jax.random.normal(key_momentum, (2,))
    chol = hmc.preconditioner_scale
    momentum = jnp.linalg.solve(chol.T, whitened_momentum)  # p = L⁻ᵀ v, so ½|v|² = ½ pᵀ L Lᵀ p
    metric = metrics.gaussian_euclidean(chol @ chol.T)
    step = integrators.velocity_verlet(target.logdensity_fn, metric.kinetic_energy)
    step_size = float(proposal.direction) * hmc.step_size  # a backward proposal integrates with −ε
    integrator_state = integrators.IntegratorState(
        state.position, momentum, state.logdensity, state.logdensity_grad
    )
    for _ in range(hmc.num_leapfrog_steps):
        integrator_state = step(integrator_state, step_size)
    np.testing.assert_allclose(proposal.state.position, integrator_state.position, rtol=1e-10)
    energy_change = (
        -integrator_state.logdensity
        + metric.kinetic_energy(integrator_state.momentum)
        - (-state.logdensity + metric.kinetic_energy(momentum))
    )
    np.testing.assert_allclose(proposal.energy_change, energy_change, rtol=1e-8, atol=1e-10)
    assert float(proposal.log_det_jacobian) == 0.0


def test_training_with_warm_start_and_annealing_runs():
    target = scg()
    dynamics = L2HMCDynamics(2, num_leapfrog_steps=4, key=jax.random.key(0))
    trained, history = train(
        jax.random.key(1),
        target.logdensity_fn,
        dynamics,
        target.sample(jax.random.key(2), 32),
        num_steps=130,
        chunk_size=50,  # 130 is not a multiple: the last chunk is masked
        warm_start=True,
        num_warm_start_steps=40,
        burn_in_weight=1.0,
        temperature_schedule=l2hmc_ppl.exponential_annealing(5.0, 1.0, 0.9, 10),
        max_grad_norm=10.0,
        progress_bar=False,
    )
    assert history.loss.shape == (130,)
    np.testing.assert_allclose(history.temperature[:10], 5.0)
    assert float(history.temperature[-1]) < 5.0
    assert history.warm_start is not None and history.warm_start.acceptance_rate.shape == (40,)
    assert np.all(np.isfinite(history.loss))
    assert trained.preconditioner_scale.shape == (2,)
    assert history.final_state.position.shape == (32, 2)


def test_nan_region_trains_without_nan_weights():
    def logdensity_fn(x):  # NaN for x[0] > 1.5: a target that misbehaves outside its region
        return jnp.where(x[0] > 1.5, jnp.nan, -0.5 * jnp.sum(x**2))

    dynamics = L2HMCDynamics(2, num_leapfrog_steps=5, step_size=0.5, key=jax.random.key(0))
    positions = jax.random.uniform(jax.random.key(1), (32, 2), minval=-1.0, maxval=1.0)
    trained, history = train(
        jax.random.key(2),
        logdensity_fn,
        dynamics,
        positions,
        num_steps=150,
        warm_start=False,
        progress_bar=False,
    )
    leaves = jax.tree_util.tree_leaves(trained)
    assert all(
        bool(jnp.all(jnp.isfinite(leaf))) for leaf in leaves if jnp.issubdtype(leaf.dtype, jnp.floating)
    )
    assert int(history.num_nonfinite_samples.sum()) > 0  # the NaN region was hit...
    assert history.num_skipped == 0  # ...and the other samples still trained the sampler
    assert np.all(np.isfinite(history.loss))
    assert tree_max_abs_diff(trained.position_net, dynamics.position_net) > 0


def test_hopeless_target_stops_with_advice():
    def logdensity_fn(x):  # finite only in a tiny ball: every proposal fails
        return jnp.where(jnp.sum(x**2) < 1e-6, -jnp.sum(x**2), jnp.nan)

    dynamics = L2HMCDynamics(2, num_leapfrog_steps=2, step_size=1.0, key=jax.random.key(0))
    with pytest.raises(FloatingPointError, match="smaller initial step size"):
        train(
            jax.random.key(1),
            logdensity_fn,
            dynamics,
            jnp.zeros((8, 2)),
            num_steps=100,
            warm_start=False,
            chunk_size=10,
            max_consecutive_failures=5,
            progress_bar=False,
        )


def test_bad_training_input():
    dynamics = L2HMCDynamics(2, key=jax.random.key(0))
    logdensity_fn = lambda x: -0.5 * jnp.sum(x**2)  # noqa: E731
    with pytest.raises(ValueError, match="dim=2"):
        train(jax.random.key(0), logdensity_fn, dynamics, jnp.zeros((4, 3)), num_steps=1, progress_bar=False)
    with pytest.raises(ValueError, match="num_steps"):
        train(jax.random.key(0), logdensity_fn, dynamics, jnp.zeros((4, 2)), num_steps=0, progress_bar=False)
    with pytest.raises(ValueError, match="loss_scale"):
        train(
            jax.random.key(0), logdensity_fn, dynamics, jnp.zeros((4, 2)), num_steps=1, loss_scale=jnp.ones(3)
        )


@pytest.mark.parametrize("dense", [False, True])
def test_save_load_round_trip_is_bit_exact(tmp_path, dense):
    dynamics = randomize_heads(
        L2HMCDynamics(3, num_hidden_layers=2, aux_size=4, key=jax.random.key(0)), jax.random.key(1)
    )
    if dense:
        dynamics = dynamics.with_preconditioner(
            jnp.ones(3), jnp.array([[1.0, 0, 0], [0.5, 2.0, 0], [0.1, 0.2, 3.0]])
        )
    path = tmp_path / "dynamics.l2hmc"
    save(path, dynamics)
    loaded = load(path, like=dynamics)
    assert jax.tree_util.tree_structure(loaded) == jax.tree_util.tree_structure(dynamics)
    for a, b in zip(jax.tree_util.tree_leaves(loaded), jax.tree_util.tree_leaves(dynamics), strict=True):
        assert a.dtype == b.dtype and bool(jnp.all(a == b))


def test_bad_files_give_clear_errors(tmp_path):
    dynamics = L2HMCDynamics(3, key=jax.random.key(0))
    path = tmp_path / "dynamics.l2hmc"
    save(path, dynamics)
    data = path.read_bytes()
    truncated = tmp_path / "truncated.l2hmc"
    truncated.write_bytes(data[: len(data) - 40])
    with pytest.raises(ValueError, match="truncated or corrupted"):
        load(truncated)
    other = tmp_path / "other.bin"
    other.write_bytes(b"\x00\x01 not a dynamics file")
    with pytest.raises(ValueError, match="not an l2hmc_ppl dynamics file"):
        load(other)
    with pytest.raises(ValueError, match="different architecture.*hidden_size"):
        load(path, like=L2HMCDynamics(3, hidden_size=20, key=jax.random.key(0)))
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "missing.l2hmc")


SHARDING_SCRIPT = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_enable_x64", True)
    import l2hmc_ppl
    assert jax.device_count() == 4, jax.devices()
    logdensity_fn = lambda x: -0.5 * jnp.sum(x**2 / jnp.array([1.0, 0.1]))
    dynamics = l2hmc_ppl.L2HMCDynamics(2, num_leapfrog_steps=4, key=jax.random.key(0))
    positions = jax.random.normal(jax.random.key(1), (16, 2))
    kwargs = dict(num_steps=30, num_warm_start_steps=20, progress_bar=False)
    mesh = jax.make_mesh((4,), ("chains",))
    key = jax.random.key(2)
    plain, plain_history = l2hmc_ppl.train(key, logdensity_fn, dynamics, positions, **kwargs)
    sharded, sharded_history = l2hmc_ppl.train(key, logdensity_fn, dynamics, positions, mesh=mesh, **kwargs)
    assert len(sharded_history.final_state.position.sharding.device_set) == 4
    pairs = zip(jax.tree_util.tree_leaves(plain), jax.tree_util.tree_leaves(sharded))
    diffs = [float(jnp.max(jnp.abs(a - b))) for a, b in pairs if a.dtype != bool]
    print("MAXDIFF", max(diffs), float(jnp.max(jnp.abs(plain_history.loss - sharded_history.loss))))
    """
)


def test_sharded_training_equals_unsharded():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    result = subprocess.run(
        [sys.executable, "-c", SHARDING_SCRIPT], capture_output=True, text=True, env=env, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("MAXDIFF"))
    weight_diff, loss_diff = map(float, line.split()[1:])
    assert weight_diff < 1e-9 and loss_diff < 1e-9


def test_keep_best_returns_the_start_when_training_made_it_worse():
    logdensity_fn = lambda x: -0.5 * jnp.sum(x**2 / jnp.array([1.0, 0.1]))  # noqa: E731
    dynamics = L2HMCDynamics(2, num_leapfrog_steps=4, step_size=0.3, key=jax.random.key(0)).as_hmc_limit()
    positions = jax.random.normal(jax.random.key(1), (64, 2))
    wrecking_optimizer = optax.sgd(50.0)  # a deliberately destructive update
    with pytest.warns(UserWarning, match="returning the starting dynamics"):
        returned, history = train(
            jax.random.key(2),
            logdensity_fn,
            dynamics,
            positions,
            num_steps=20,
            optimizer=wrecking_optimizer,
            warm_start=False,
            progress_bar=False,
        )
    assert history.initial_esjd > history.final_esjd
    assert (
        tree_max_abs_diff(
            eqx.filter(returned, eqx.is_inexact_array), eqx.filter(dynamics, eqx.is_inexact_array)
        )
        == 0.0
    )


@pytest.mark.parametrize("dense_mass", [False, True])
def test_warm_start_compiles_its_adaptation_kernel_once_per_metric(dense_mass):
    """The four phases share one compiled kernel (two with a dense metric, whose structure changes)."""
    import importlib

    warm_start_module = importlib.import_module("l2hmc_ppl.training.warm_start")

    def logdensity_fn(x):  # a fresh function: a new entry in the compiled kernel's cache
        return -0.5 * jnp.sum(x**2 / jnp.array([1.0, 4.0]))

    dynamics = L2HMCDynamics(2, num_leapfrog_steps=2, key=jax.random.key(0))
    positions = jax.random.normal(jax.random.key(1), (8, 2))
    states = jax.vmap(l2hmc_ppl.init, (0, None))(positions, logdensity_fn)
    kernel = warm_start_module._adapt_step_size._cached  # the jax.jit inside eqx.filter_jit
    before = kernel._cache_size()
    l2hmc_ppl.warm_start(
        jax.random.key(2), logdensity_fn, dynamics, states, num_steps=40, dense_mass=dense_mass
    )
    assert kernel._cache_size() - before == (2 if dense_mass else 1)
