"""train: Algorithm 1 end to end, robustness, selection, continuing, checkpoints, interrupts, inputs."""

import os
import subprocess
import sys
import textwrap

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import l2hmc_ppl
from l2hmc_ppl import L2HMCDynamics, TrainConfig, train
from l2hmc_ppl.diagnostics import paper_ess
from l2hmc_ppl.targets import scg
from tests.exact_targets import ExactTarget
from tests.stats import Z_THRESHOLD, max_abs_z, tree_max_abs_diff

NUM_LEAPFROG_STEPS = 10
QUIET = dict(progress_bar=False)


def _chains(dynamics, target, seed, num_chains=256, num_steps=400):
    """Run chains from exact draws; return samples of shape (steps, chains, dim)."""

    @jax.jit
    def run(key):
        key_init, key_run = jax.random.split(key)
        states = l2hmc_ppl.init_chains(target.sample(key_init, num_chains), target.logdensity_fn)
        return l2hmc_ppl.run_chains(key_run, target.logdensity_fn, dynamics, states, num_steps)[1]

    return np.asarray(run(jax.random.key(seed)))


def _ess_per_gradient(dynamics, target, seed, num_groups=8):
    """ESS per gradient (paper estimator) over independent groups of chains: mean and its SE."""
    groups = np.split(_chains(dynamics, target, seed), num_groups, axis=1)
    values = np.array([paper_ess(g, target.mean, target.covariance) for g in groups]) / NUM_LEAPFROG_STEPS
    return values.mean(), values.std(ddof=1) / np.sqrt(num_groups)


# ------------------------------------------------------------------------------------------------
# The algorithm


def test_same_results_as_the_previous_engine():
    """The rebuilt engine computes what the previous one did (paper objective, no warm start, no
    selection): the first iteration bit for bit, 40 iterations to 1e-10 (float rounding differs
    only in the order of operations). Values from l2hmc_ppl 0.1.0 on this seed."""
    target = scg()
    dynamics = L2HMCDynamics(2, num_leapfrog_steps=5, step_size=0.1, key=jax.random.key(0))
    positions = target.sample(jax.random.key(1), 32)
    config = TrainConfig(
        objective="paper", warm_start=False, keep_best=False, burn_in_weight=0.5, chunk_size=40, **QUIET
    )
    expected = {
        1: (28.61484236987536, 185.7727131263994, 11.287524091799263),
        40: (-302.23771235160996, 186.30481896025626, 36.66559201705266),
    }
    for num_steps, (loss_sum, weight_sum, position_sum) in expected.items():
        trained, history = train(
            jax.random.key(2), target.logdensity_fn, dynamics, positions, config, num_steps=num_steps
        )
        weights = sum(
            float(jnp.sum(jnp.abs(leaf))) for leaf in jax.tree_util.tree_leaves(trained) if leaf.dtype != bool
        )
        np.testing.assert_allclose(
            [float(np.sum(history.loss)), weights, float(jnp.sum(history.final_state.position))],
            [loss_sum, weight_sum, position_sum],
            rtol=1e-10,
        )


@pytest.fixture(scope="module")
def trained_on_scg():
    target = scg()
    dynamics = L2HMCDynamics(2, num_leapfrog_steps=NUM_LEAPFROG_STEPS, step_size=0.1, key=jax.random.key(0))
    positions = target.sample(jax.random.key(1), 200)
    # paper-faithful: the comparison is with the untrained HMC limit
    config = TrainConfig(num_steps=1500, objective="paper", warm_start=False, keep_best=False, **QUIET)
    trained, history = train(jax.random.key(2), target.logdensity_fn, dynamics, positions, config)
    return target, dynamics, trained, history


def test_training_beats_untrained_hmc_limit(trained_on_scg):
    target, dynamics, trained, history = trained_on_scg
    assert history.loss.shape == (1500,) and history.num_skipped == 0 and history.stop_reason == "completed"
    untrained_mean, untrained_se = _ess_per_gradient(dynamics.as_hmc_limit(), target, seed=3)
    trained_mean, trained_se = _ess_per_gradient(trained, target, seed=3)
    z = (trained_mean - untrained_mean) / np.hypot(trained_se, untrained_se)
    print(f"ESS/grad untrained {untrained_mean:.2e} ± {untrained_se:.1e}")
    print(f"ESS/grad trained {trained_mean:.2e} ± {trained_se:.1e}")
    assert z > Z_THRESHOLD
    # the history shows the mechanism: the expected squared jump grew
    assert history.squared_jump_distance[-100:].mean() > 5 * history.squared_jump_distance[:100].mean()


@pytest.mark.parametrize("num_transitions", [1, 5])
def test_trained_weights_keep_the_target_invariant(trained_on_scg, num_transitions):
    target, _, trained, _ = trained_on_scg
    exact = ExactTarget(target.logdensity_fn, target.sample, target.mean, np.diag(target.covariance))
    keys = jax.random.split(jax.random.key(4), 2)
    states = l2hmc_ppl.init_chains(exact.sample(keys[0], 2**16), exact.logdensity_fn)
    states, _, infos = jax.jit(l2hmc_ppl.run_chains, static_argnums=(1, 4))(
        keys[1], exact.logdensity_fn, trained, states, num_transitions
    )
    assert float(infos.acceptance_rate.mean()) > 0.05
    assert max_abs_z(states.position, exact.mean, exact.variance) < Z_THRESHOLD


def test_warm_start_annealing_and_burn_in_term():
    target = scg()
    dynamics = L2HMCDynamics(2, num_leapfrog_steps=4, key=jax.random.key(0))
    trained, history = train(
        jax.random.key(1),
        target.logdensity_fn,
        dynamics,
        target.sample(jax.random.key(2), 32),
        num_steps=130,
        chunk_size=50,  # 130 is not a multiple: the last chunk's tail is skipped
        num_warm_start_steps=48,
        burn_in_weight=1.0,
        temperature_schedule=l2hmc_ppl.exponential_annealing(5.0, 1.0, 0.9, 10),
        max_grad_norm=10.0,
        **QUIET,
    )
    assert history.loss.shape == (130,)
    np.testing.assert_allclose(history.temperature[:10], 5.0)
    assert float(history.temperature[-1]) < 5.0
    # 16 blocks of 48 / 16 = 3 transitions (too few to choose M: M stays 4)
    assert history.warm_start is not None and history.warm_start.acceptance_rate.shape == (48,)
    assert trained.num_leapfrog_steps == 4
    assert np.all(np.isfinite(history.loss))
    # dense_mass='auto': a dense (Cholesky) preconditioner in 2-d
    assert trained.dense_preconditioner and trained.preconditioner_scale.shape == (2, 2)
    assert history.final_state.position.shape == (32, 2)
    assert int(history.train_state.step) == 130


# ------------------------------------------------------------------------------------------------
# Robustness


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
        keep_best=False,
        **QUIET,
    )
    assert all(
        bool(jnp.all(jnp.isfinite(leaf)))
        for leaf in jax.tree_util.tree_leaves(eqx.filter(trained, eqx.is_inexact_array))
    )
    assert int(history.num_nonfinite_samples.sum()) > 0  # the NaN region was hit...
    assert history.num_skipped == 0  # ...and the other samples still trained the sampler
    assert np.all(np.isfinite(history.loss))
    assert tree_max_abs_diff(trained.position_net, dynamics.position_net) > 0


def test_early_stopping_rule_stops_after_patience_chunks_without_a_gain():
    from l2hmc_ppl.training.train import EarlyStopping

    def chunk(score):  # mean jumps (2, dim) whose slowest coordinate and moment scores `score`
        return np.array([[score, 2.0, 3.0], [4.0, score + 1.0, 9.0]])

    chunks = [chunk(s) for s in (1.0, 1.2, 1.22, 1.5, 1.52, 1.55)]
    rule = EarlyStopping(patience=2, min_gain=0.05)
    # 1.22 and 1.52 are within 5% of the best so far; 1.55 is the second stalled chunk in a row
    assert [rule.update(j) for j in chunks] == [False, False, False, False, False, True]
    never = EarlyStopping(patience=None, min_gain=0.05)
    assert not any(never.update(j) for j in chunks * 3)
    # a coordinate that never moved (NaN: no accepted proposal) scores 0, which is no progress
    stuck = EarlyStopping(patience=1, min_gain=0.05)
    assert [stuck.update(np.where(np.eye(2, 3) > 0, np.nan, j)) for j in chunks[:2]] == [False, True]


def test_training_stops_once_the_score_levels_off_when_asked():
    target = scg()
    dynamics = L2HMCDynamics(2, num_leapfrog_steps=2, key=jax.random.key(0))
    positions = target.sample(jax.random.key(1), 32)
    config = TrainConfig(num_steps=200, chunk_size=20, num_warm_start_steps=64, **QUIET)
    assert config.early_stopping_patience is None  # off by default: the full schedule
    _, history = train(
        jax.random.key(2), target.logdensity_fn, dynamics, positions, config, early_stopping_patience=2
    )
    done = history.loss.shape[0]
    assert history.stop_reason == "converged" and done < 200 and done % 20 == 0
    assert int(history.train_state.step) == done


def test_a_training_that_cannot_progress_stops_and_falls_back_with_a_warning():
    def logdensity_fn(x):  # finite only in a tiny ball: every proposal fails
        return jnp.where(jnp.sum(x**2) < 1e-6, -jnp.sum(x**2), jnp.nan)

    dynamics = L2HMCDynamics(2, num_leapfrog_steps=2, step_size=1.0, key=jax.random.key(0))
    with pytest.warns(UserWarning, match="training stopped after 10 of 100 iterations.*no finite gradient"):
        trained, history = train(
            jax.random.key(1),
            logdensity_fn,
            dynamics,
            jnp.zeros((8, 2)),
            num_steps=100,
            warm_start=False,
            chunk_size=10,
            max_consecutive_failures=5,
            **QUIET,
        )
    assert history.stop_reason == "failures" and history.num_skipped == 10
    assert (
        tree_max_abs_diff(
            eqx.filter(trained, eqx.is_inexact_array), eqx.filter(dynamics, eqx.is_inexact_array)
        )
        == 0
    )


def test_an_optimizer_that_makes_nan_weights_is_undone_and_reported():
    logdensity_fn = lambda x: -0.5 * jnp.sum(x**2)  # noqa: E731
    dynamics = L2HMCDynamics(2, num_leapfrog_steps=2, key=jax.random.key(0))
    with pytest.warns(UserWarning, match="skipped 30 of 30 updates"):
        trained, history = train(
            jax.random.key(1), logdensity_fn, dynamics, jnp.zeros((8, 2)), num_steps=30, warm_start=False,
            optimizer=optax.sgd(float("nan")), **QUIET,
        )  # fmt: skip
    assert all(
        bool(jnp.all(jnp.isfinite(leaf)))
        for leaf in jax.tree_util.tree_leaves(eqx.filter(trained, eqx.is_inexact_array))
    )


def test_keep_best_returns_the_start_when_training_made_it_worse():
    logdensity_fn = lambda x: -0.5 * jnp.sum(x**2 / jnp.array([1.0, 0.1]))  # noqa: E731
    dynamics = L2HMCDynamics(2, num_leapfrog_steps=4, step_size=0.3, key=jax.random.key(0)).as_hmc_limit()
    positions = jax.random.normal(jax.random.key(1), (64, 2))
    with pytest.warns(UserWarning, match="mixes worse than the tuned HMC it started from"):
        returned, history = train(
            jax.random.key(2),
            logdensity_fn,
            dynamics,
            positions,
            num_steps=20,
            optimizer=optax.sgd(50.0),
            warm_start=False,
            **QUIET,
        )  # fmt: skip  (a deliberately destructive update)
    assert bool(history.selection.kept_initial) and history.initial_esjd > history.final_esjd
    assert (
        tree_max_abs_diff(
            eqx.filter(returned, eqx.is_inexact_array), eqx.filter(dynamics, eqx.is_inexact_array)
        )
        == 0
    )
    # the trained (worse) dynamics stay available to continue from
    assert (
        tree_max_abs_diff(
            eqx.filter(history.train_state.dynamics, eqx.is_inexact_array),
            eqx.filter(dynamics, eqx.is_inexact_array),
        )
        > 0
    )


# ------------------------------------------------------------------------------------------------
# Continuing, checkpoints, interrupts


def _logdensity(x):
    return -0.5 * jnp.sum(x**2 / jnp.array([1.0, 4.0]))


def _short_training(**options):
    dynamics = L2HMCDynamics(2, num_leapfrog_steps=3, key=jax.random.key(0))
    positions = jax.random.normal(jax.random.key(1), (16, 2))
    config = TrainConfig(num_steps=60, chunk_size=20, num_warm_start_steps=16, keep_best=False, **QUIET)
    return dynamics, positions, config.replace(**options)


def test_continuing_from_the_train_state_equals_training_straight_through():
    dynamics, positions, config = _short_training()
    straight, _ = train(jax.random.key(2), _logdensity, dynamics, positions, config)
    first, history = train(jax.random.key(2), _logdensity, dynamics, positions, config, num_steps=40)
    assert int(history.train_state.step) == 40
    continued, rest = train(jax.random.key(99), _logdensity, history.train_state, config=config)
    assert rest.loss.shape == (20,) and history.warm_start is not None and rest.warm_start is None
    assert (
        tree_max_abs_diff(
            eqx.filter(continued, eqx.is_inexact_array), eqx.filter(straight, eqx.is_inexact_array)
        )
        == 0
    )


def test_checkpoints_are_written_and_resume_equals_training_straight_through(tmp_path):
    path = tmp_path / "run.ckpt"
    dynamics, positions, config = _short_training(checkpoint_path=str(path), checkpoint_every=1)
    straight, _ = train(jax.random.key(2), _logdensity, dynamics, positions, config)
    assert path.exists() and not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    partial, _ = train(jax.random.key(2), _logdensity, dynamics, positions, config, num_steps=40)
    resumed, rest = train(jax.random.key(2), _logdensity, dynamics, positions, config, resume_from=path)
    assert rest.loss.shape == (20,)
    assert (
        tree_max_abs_diff(
            eqx.filter(resumed, eqx.is_inexact_array), eqx.filter(straight, eqx.is_inexact_array)
        )
        == 0
    )
    # Another network width (M may differ: the checkpoint's M, read from its header, is resumed).
    with pytest.raises(ValueError, match="does not hold a training state of this structure"):
        train(
            jax.random.key(2),
            _logdensity,
            L2HMCDynamics(2, num_leapfrog_steps=3, hidden_size=7, key=jax.random.key(0)),
            positions,
            config,
            resume_from=path,
        )


def test_ctrl_c_returns_what_was_trained_and_leaves_a_checkpoint(tmp_path, monkeypatch):
    import importlib

    train_module = importlib.import_module("l2hmc_ppl.training.train")
    calls = {"n": 0}
    real_run_chunk = train_module.run_chunk

    def interrupted_on_the_third_chunk(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_run_chunk(*args, **kwargs)

    monkeypatch.setattr(train_module, "run_chunk", interrupted_on_the_third_chunk)
    path = tmp_path / "run.ckpt"
    dynamics, positions, config = _short_training(checkpoint_path=str(path), checkpoint_every=10)
    with pytest.warns(UserWarning, match="interrupted after 40 of 60 iterations"):
        trained, history = train(jax.random.key(2), _logdensity, dynamics, positions, config)
    assert history.stop_reason == "interrupted" and history.loss.shape == (40,)
    assert int(history.train_state.step) == 40
    assert (
        tree_max_abs_diff(
            eqx.filter(trained, eqx.is_inexact_array),
            eqx.filter(history.train_state.dynamics, eqx.is_inexact_array),
        )
        == 0
    )
    from l2hmc_ppl.training import load_train_state

    assert int(load_train_state(path, history.train_state).step) == 40


# ------------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize(
    ("positions", "error", "match"),
    [
        (jnp.zeros((4, 3)), ValueError, "3 coordinates per chain.*dim=2"),
        (jnp.zeros((0, 2)), ValueError, "initial_positions holds no chains"),
        (jnp.zeros(2), ValueError, "have 1 coordinates per chain"),
        (jnp.zeros((4, 2), jnp.int32), TypeError, "initial_positions must be floating-point"),
        (
            jnp.array([[0.0, 0.0], [jnp.nan, 0.0], [0.0, 0.0]]),
            ValueError,
            "not finite at chain\\(s\\) 1 \\(1 of 3\\)",
        ),
        (None, ValueError, "initial_positions .*are required"),
    ],
)
def test_bad_positions_get_a_clear_error(positions, error, match):
    dynamics = L2HMCDynamics(2, key=jax.random.key(0))
    with pytest.raises(error, match=match):
        train(jax.random.key(0), lambda x: -0.5 * jnp.sum(x**2), dynamics, positions, num_steps=1, **QUIET)


def test_other_bad_arguments_get_a_clear_error():
    dynamics = L2HMCDynamics(2, key=jax.random.key(0))
    logdensity_fn = lambda x: -0.5 * jnp.sum(x**2)  # noqa: E731
    positions = jnp.zeros((4, 2))
    with pytest.raises(ValueError, match="num_steps"):
        train(jax.random.key(0), logdensity_fn, dynamics, positions, num_steps=0)
    with pytest.raises(ValueError, match=r"loss_scale must be a scalar or have shape \(2,\)"):
        train(
            jax.random.key(0),
            logdensity_fn,
            dynamics,
            positions,
            num_steps=1,
            objective="paper",
            loss_scale=(1.0, 2.0, 3.0),
            **QUIET,
        )
    with pytest.raises(TypeError, match="dynamics must be an L2HMCDynamics or a TrainState"):
        train(jax.random.key(0), logdensity_fn, {"weights": 1}, positions, num_steps=1)
    with pytest.raises(TypeError, match="logdensity_fn must be callable"):
        train(jax.random.key(0), 3.0, dynamics, positions, num_steps=1)
    with pytest.raises(TypeError, match="unknown training option"):
        train(jax.random.key(0), logdensity_fn, dynamics, positions, num_step=1)


# ------------------------------------------------------------------------------------------------
# Sharding

SHARDING_SCRIPT = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_enable_x64", True)
    import l2hmc_ppl
    assert jax.device_count() == 4, jax.devices()
    logdensity_fn = lambda x: -0.5 * jnp.sum(x**2 / jnp.array([1.0, 0.1]))
    dynamics = l2hmc_ppl.L2HMCDynamics(2, num_leapfrog_steps=4, key=jax.random.key(0))
    positions = jax.random.normal(jax.random.key(1), (16, 2))
    config = l2hmc_ppl.TrainConfig(num_steps=30, num_warm_start_steps=32, progress_bar=False)
    mesh = jax.make_mesh((4,), ("chains",))
    key = jax.random.key(2)
    plain, plain_history = l2hmc_ppl.train(key, logdensity_fn, dynamics, positions, config)
    sharded, sharded_history = l2hmc_ppl.train(key, logdensity_fn, dynamics, positions, config, mesh=mesh)
    assert len(sharded_history.final_state.position.sharding.device_set) == 4
    pairs = zip(jax.tree_util.tree_leaves(plain), jax.tree_util.tree_leaves(sharded))
    diffs = [float(jnp.max(jnp.abs(a - b))) for a, b in pairs if a.dtype != bool]
    relative = np.abs(plain_history.loss - sharded_history.loss) / np.maximum(1.0, np.abs(plain_history.loss))
    print("MAXDIFF", max(diffs), float(np.max(relative)))
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
    # the reciprocal term λ²/(δA + 10⁻⁴) multiplies a rounding difference in δ by up to 10⁸
    assert weight_diff < 1e-9 and loss_diff < 1e-7
