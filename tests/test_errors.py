"""Bad input and faults at every entry point: one test (or parametrized case) per row of docs/errors.md.

Each bad input must be refused at the boundary with an exception whose message names the argument,
its value (or the problem) and what is expected; each fault must lose nothing. Rows already covered
elsewhere (the dynamics' constructor, TrainConfig, save/load on untrusted files, several NumPyro and
training inputs) are not repeated here: the page names the test that covers them.

Everything here is cheap (no test trains for more than a few tens of iterations, at dimension 2)
except the two trainings that need a compiled step: the checkpoint fault and the target whose
gradient overflows.
"""

from __future__ import annotations

import errno
import json
import os

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest
from numpyro.infer import MCMC

import l2hmc_ppl
from l2hmc_ppl import L2HMCDynamics, TrainConfig, default_dynamics, train
from l2hmc_ppl import diagnostics as diag
from l2hmc_ppl.blackjax import l2hmc, l2hmc_adaptation
from l2hmc_ppl.numpyro import L2HMCKernel
from l2hmc_ppl.training import build_optimizer, init_train_state, save_train_state, serialisation
from tests.stats import tree_max_abs_diff

QUIET = dict(progress_bar=False)
# Training without the warm start or the selection: the cheapest training that still compiles a step.
BARE = dict(warm_start=False, keep_best=False, chunk_size=10, progress_bar=False)


def gaussian(x):
    return -0.5 * jnp.sum(x**2)


def _dynamics(dim=2, **options):
    return L2HMCDynamics(dim, num_leapfrog_steps=2, key=jax.random.key(0), **options)


def _positions(num_chains=8, dim=2, dtype=None):
    return jax.random.normal(jax.random.key(1), (num_chains, dim), dtype)


def _weights(dynamics):
    return eqx.filter(dynamics, eqx.is_inexact_array)


# ------------------------------------------------------------------------------------------------
# L2HMCDynamics, its with_* copies, default_dynamics


@pytest.mark.parametrize(
    ("num_leapfrog_steps", "match"),
    [
        pytest.param(0, "num_leapfrog_steps must be a positive integer, got 0", id="zero"),
        pytest.param(True, "num_leapfrog_steps must be a positive integer, got True", id="bool"),
        pytest.param(2.0, r"num_leapfrog_steps must be a positive integer, got 2\.0", id="float"),
    ],
)
def test_with_num_leapfrog_steps_refuses_a_non_positive_or_non_integer_m(num_leapfrog_steps, match):
    with pytest.raises(ValueError, match=match):
        _dynamics(3).with_num_leapfrog_steps(num_leapfrog_steps, key=jax.random.key(1))


@pytest.mark.parametrize(
    "scale",
    [
        pytest.param(jnp.array([1.0, jnp.nan, 1.0]), id="nan"),
        pytest.param(jnp.array([1.0, 0.0, 1.0]), id="zero"),
        pytest.param(-jnp.eye(3), id="dense-negative-diagonal"),
    ],
)
def test_with_preconditioner_refuses_a_scale_without_a_positive_finite_diagonal(scale):
    with pytest.raises(ValueError, match="preconditioner scale must be finite with a positive diagonal"):
        _dynamics(3).with_preconditioner(jnp.zeros(3), scale)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        pytest.param(dict(step_size=-1.0), "step_size must be a positive finite number, got -1.0", id="step"),
        pytest.param(
            dict(num_leapfrog_steps=True), "num_leapfrog_steps must be a positive integer, got True", id="m"
        ),
        pytest.param(
            dict(step_size_jitter=1.0), r"step_size_jitter must be in \[0, 1\), got 1.0", id="jitter"
        ),
    ],
)
def test_default_dynamics_checks_its_options(options, match):
    with pytest.raises(ValueError, match=match):
        default_dynamics(3, key=jax.random.key(0), **options)


# ------------------------------------------------------------------------------------------------
# init, build_kernel, propose


def test_init_refuses_an_empty_position():
    with pytest.raises(ValueError, match="the initial position is empty"):
        l2hmc_ppl.init({}, gaussian)


def test_the_kernel_refuses_a_batch_of_positions_without_vmap():
    state = l2hmc_ppl.init(jnp.zeros((4, 3)), gaussian)
    with pytest.raises(ValueError, match=r"has 12 coordinates .*dim=3; a batch of chains needs jax.vmap"):
        l2hmc_ppl.build_kernel()(jax.random.key(0), state, gaussian, _dynamics(3))


def test_the_kernel_refuses_conditioned_dynamics_without_aux():
    dynamics = L2HMCDynamics(3, aux_size=2, key=jax.random.key(0))
    state = l2hmc_ppl.init(jnp.zeros(3), gaussian)
    with pytest.raises(ValueError, match="built with aux_size, so it needs an aux input"):
        l2hmc_ppl.build_kernel()(jax.random.key(0), state, gaussian, dynamics)


# ------------------------------------------------------------------------------------------------
# TrainConfig (the options not covered by tests/training/test_config.py)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        pytest.param(
            dict(num_steps=10.0),
            ValueError,
            r"num_steps must be a positive integer, got 10\.0",
            id="float-steps",
        ),
        pytest.param(
            dict(decay_steps=0), ValueError, "decay_steps must be a positive integer, got 0", id="decay-steps"
        ),
        pytest.param(
            dict(learning_rate_warmup_steps=-1),
            ValueError,
            "learning_rate_warmup_steps must be a non-negative integer, got -1",
            id="warmup",
        ),
        pytest.param(
            dict(checkpoint_every=0),
            ValueError,
            "checkpoint_every must be a positive integer, got 0",
            id="ckpt",
        ),
        pytest.param(
            dict(max_consecutive_failures=0),
            ValueError,
            "max_consecutive_failures must be a positive integer, got 0",
            id="failures",
        ),
        pytest.param(
            dict(early_stopping_patience=0),
            ValueError,
            "early_stopping_patience must be a positive integer, got 0",
            id="patience-0",
        ),
        pytest.param(
            dict(early_stopping_patience="never"),
            ValueError,
            "early_stopping_patience must be a positive integer, got 'never'",
            id="patience-str",
        ),
        pytest.param(
            dict(early_stopping_min_gain=-0.1),
            ValueError,
            "early_stopping_min_gain must be a non-negative finite number, got -0.1",
            id="min-gain",
        ),
        pytest.param(
            dict(learning_rate="1e-3"),
            ValueError,
            "learning_rate must be a positive finite number, got '1e-3'",
            id="str-lr",
        ),
        pytest.param(
            dict(max_grad_norm=0.0),
            ValueError,
            "max_grad_norm must be a positive finite number, got 0.0",
            id="clip-0",
        ),
        pytest.param(
            dict(max_grad_norm=float("inf")),
            ValueError,
            "max_grad_norm must be a positive finite number, got inf",
            id="clip-inf",
        ),
        pytest.param(
            dict(target_acceptance_rate=0.0),
            ValueError,
            r"target_acceptance_rate must be in \(0, 1\).*got 0.0",
            id="accept-0",
        ),
        pytest.param(
            dict(objective="paper", loss_scale=(1.0, float("nan"))),
            ValueError,
            "loss_scale must be a positive finite number, got .*nan",
            id="scale-nan",
        ),
        pytest.param(
            dict(dense_mass="yes"),
            ValueError,
            "dense_mass must be True, False or 'auto', got 'yes'",
            id="dense",
        ),
        pytest.param(
            dict(progress_bar="no"), TypeError, "progress_bar must be True or False, got 'no'", id="bar"
        ),
        pytest.param(
            dict(initial_distribution=3),
            TypeError,
            "initial_distribution must be callable or None, got 3",
            id="q",
        ),
    ],
)
def test_train_config_names_the_option_its_value_and_the_expectation(options, error, match):
    with pytest.raises(error, match=match):
        TrainConfig(**options)


@pytest.mark.parametrize("entry_point", ["train", "L2HMCKernel", "l2hmc_adaptation"])
def test_a_bad_training_option_is_refused_by_every_entry_point_before_any_work(entry_point):
    calls = {
        "train": lambda: train(jax.random.key(0), gaussian, _dynamics(), _positions(), learning_rate=-1.0),
        "L2HMCKernel": lambda: L2HMCKernel(potential_fn=gaussian, learning_rate=-1.0),
        "l2hmc_adaptation": lambda: l2hmc_adaptation(gaussian, learning_rate=-1.0),
    }
    with pytest.raises(ValueError, match="learning_rate must be a positive finite number, got -1.0"):
        calls[entry_point]()


# ------------------------------------------------------------------------------------------------
# train: targets, continuing, resuming, checkpoints


def test_a_target_with_no_finite_region_at_the_starting_points_is_an_error_naming_the_chains():
    def nowhere_finite(x):
        return jnp.sum(jnp.log(-jnp.abs(x) - 1.0))  # NaN everywhere

    with pytest.raises(ValueError, match=r"initial_positions: .*not finite at chain\(s\) 0, 1, .*\(8 of 8\)"):
        train(jax.random.key(0), nowhere_finite, _dynamics(), _positions(), num_steps=10, **BARE)


def steep(x):
    """A Gaussian of standard deviation 1e-15: its gradient is about 1e30 at the starting points."""
    return -1e30 * jnp.sum(x**2)


def test_a_target_whose_gradient_overflows_skips_every_update_and_warns():
    # float32 (JAX's default precision): every proposal overflows, so no update has a finite gradient
    dynamics = _dynamics(dtype=jnp.float32)
    with pytest.warns(UserWarning, match="skipped 10 of 10 updates because their gradient was not finite"):
        trained, history = train(
            jax.random.key(2), steep, dynamics, _positions(dtype=jnp.float32), num_steps=10, **BARE
        )
    assert history.stop_reason == "completed" and history.num_skipped == 10
    assert tree_max_abs_diff(_weights(trained), _weights(dynamics)) == 0  # nothing broke the weights


def _train_state(config):
    """The TrainState a bare training of `gaussian` starts from (built without running a step)."""
    chains = l2hmc_ppl.init_chains(_positions(), gaussian)
    return init_train_state(jax.random.key(3), _dynamics(), chains, build_optimizer(config))


def test_continuing_from_a_train_state_takes_no_positions_and_no_checkpoint(tmp_path):
    state = _train_state(TrainConfig(**BARE))
    with pytest.raises(ValueError, match="continuing from a TrainState takes neither initial_positions"):
        train(jax.random.key(0), gaussian, state, _positions(), num_steps=10, **BARE)
    with pytest.raises(ValueError, match="continuing from a TrainState takes neither .*nor resume_from"):
        train(jax.random.key(0), gaussian, state, num_steps=10, resume_from=tmp_path / "run.ckpt", **BARE)


def test_continuing_from_a_train_state_under_jit_is_a_clear_error():
    state = _train_state(TrainConfig(**BARE))
    with pytest.raises(TypeError, match="continuing training from a TrainState cannot run under jax.jit"):
        jax.jit(lambda s: train(jax.random.key(0), gaussian, s, num_steps=10, **BARE)[0])(state)


def test_resume_from_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        train(
            jax.random.key(0),
            gaussian,
            _dynamics(),
            _positions(),
            num_steps=10,
            resume_from=tmp_path / "missing.ckpt",
            **BARE,
        )


def test_resume_from_a_file_that_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "dynamics.l2hmc"
    l2hmc_ppl.save(path, _dynamics())  # a dynamics file, not a training checkpoint
    with pytest.raises(ValueError, match=r"dynamics.l2hmc is not an l2hmc_ppl training checkpoint"):
        train(jax.random.key(0), gaussian, _dynamics(), _positions(), num_steps=10, resume_from=path, **BARE)


@pytest.mark.parametrize("damage", ["truncated", "newer-version"])
def test_resume_from_a_damaged_or_newer_checkpoint(tmp_path, damage):
    path = tmp_path / "run.ckpt"
    save_train_state(path, _train_state(TrainConfig(**BARE)))
    header, body = path.read_bytes().split(b"\n", 1)
    if damage == "truncated":
        path.write_bytes(header + b"\n" + body[: len(body) // 2])
        match = "does not hold a training state of this structure .*or is corrupted"
    else:
        path.write_bytes(json.dumps(json.loads(header) | {"format_version": 99}).encode() + b"\n" + body)
        match = "checkpoint format version 99, this l2hmc_ppl reads version 1"
    with pytest.raises(ValueError, match=match):
        train(jax.random.key(0), gaussian, _dynamics(), _positions(), num_steps=10, resume_from=path, **BARE)


def test_a_checkpoint_that_cannot_be_written_keeps_the_previous_one_to_resume_from(tmp_path, monkeypatch):
    """A full disk at the second checkpoint: the error propagates, the first checkpoint is intact,
    no temporary file is left, and training resumes from it to the end."""
    path = tmp_path / "run.ckpt"
    config = TrainConfig(num_steps=30, checkpoint_path=str(path), checkpoint_every=1, **BARE)
    real_serialise = eqx.tree_serialise_leaves
    writes = []

    def full_disk_on_the_second_checkpoint(file, pytree):
        writes.append(pytree)
        if len(writes) == 2:
            file.write(b"\x93NUMPY partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_serialise(file, pytree)

    monkeypatch.setattr(serialisation.eqx, "tree_serialise_leaves", full_disk_on_the_second_checkpoint)
    with pytest.raises(OSError) as error:
        train(jax.random.key(2), gaussian, _dynamics(), _positions(), config)
    assert error.value.errno == errno.ENOSPC
    assert sorted(os.listdir(tmp_path)) == ["run.ckpt"]  # no temporary file left behind
    monkeypatch.undo()
    _, rest = train(jax.random.key(2), gaussian, _dynamics(), _positions(), config, resume_from=path)
    assert rest.loss.shape == (20,)  # the checkpoint held iteration 10 of 30
    assert int(rest.train_state.step) == 30 and rest.stop_reason == "completed"


# ------------------------------------------------------------------------------------------------
# warm_start


def test_warm_start_needs_at_least_16_steps():
    chains = l2hmc_ppl.init_chains(_positions(), gaussian)
    with pytest.raises(ValueError, match="the warm start needs at least 16 steps, got num_steps=8"):
        l2hmc_ppl.warm_start(jax.random.key(0), gaussian, _dynamics(), chains, num_steps=8)


# ------------------------------------------------------------------------------------------------
# save / load


def test_save_with_its_arguments_swapped(tmp_path):
    with pytest.raises(TypeError, match="expected an l2hmc_ppl.L2HMCDynamics, got str"):
        l2hmc_ppl.save(_dynamics(), str(tmp_path / "dynamics.l2hmc"))


# ------------------------------------------------------------------------------------------------
# NumPyro: L2HMCKernel and MCMC


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        pytest.param(
            dict(num_training_steps=-1),
            ValueError,
            "num_training_steps must be a non-negative integer, got -1",
            id="steps",
        ),
        pytest.param(
            dict(divergence_threshold=0.0),
            ValueError,
            "divergence_threshold must be a positive finite number, got 0.0",
            id="div",
        ),
        pytest.param(
            dict(config={"num_steps": 3}), TypeError, "config must be a TrainConfig, got dict", id="config"
        ),
        pytest.param(
            dict(step_size=0.0), ValueError, "step_size must be a positive finite number, got 0.0", id="step"
        ),
        pytest.param(
            dict(num_leapfrog_steps=0),
            ValueError,
            "num_leapfrog_steps must be a positive integer, got 0",
            id="m",
        ),
        pytest.param(
            dict(target_acceptance_rate=1.5),
            ValueError,
            r"target_acceptance_rate must be in \(0, 1\)",
            id="accept",
        ),
        pytest.param(
            dict(lerning_rate=1e-3), TypeError, r"unknown training option\(s\) \['lerning_rate'\]", id="typo"
        ),
    ],
)
def test_l2hmc_kernel_checks_its_options_when_built(options, error, match):
    with pytest.raises(error, match=match):
        L2HMCKernel(potential_fn=gaussian, **options)


def test_a_model_without_any_sample_site_gets_a_clear_error():
    def no_sites():
        numpyro.deterministic("z", jnp.ones(2))

    mcmc = MCMC(L2HMCKernel(no_sites, dynamics=_dynamics()), num_warmup=1, num_samples=1, progress_bar=False)
    with pytest.raises(ValueError, match="the model has no latent sample sites"):
        mcmc.run(jax.random.key(0))


# ------------------------------------------------------------------------------------------------
# BlackJAX: l2hmc and l2hmc_adaptation


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_l2hmc_step_refuses_a_position_of_the_wrong_dimension(jit):
    sampler = l2hmc(gaussian, _dynamics())
    state = l2hmc(gaussian, _dynamics(3)).init(jnp.zeros(3))  # `init` itself refuses a wrong dimension
    step = jax.jit(sampler.step) if jit else sampler.step
    with pytest.raises(ValueError, match="the position has 3 coordinates .*built for dim=2"):
        step(jax.random.key(0), state)


def test_l2hmc_init_refuses_a_non_finite_position():
    with pytest.raises(RuntimeError, match="the log density is not finite at the initial position"):
        l2hmc(gaussian, _dynamics()).init(jnp.array([0.0, jnp.nan]))


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        pytest.param(
            dict(dynamics="trained"),
            TypeError,
            r"dynamics must be an L2HMCDynamics or None \(e.g. .*\), got str",
            id="dynamics",
        ),
        pytest.param(
            dict(config={"num_steps": 3}), TypeError, "config must be a TrainConfig, got dict", id="config"
        ),
        pytest.param(
            dict(particle_spread=-1.0),
            ValueError,
            "particle_spread must be a non-negative finite number, got -1.0",
            id="spread",
        ),
        pytest.param(
            dict(particle_spread=float("nan")),
            ValueError,
            "particle_spread must be a non-negative finite number, got nan",
            id="spread-nan",
        ),
        pytest.param(
            dict(max_grad_norm=-1.0),
            ValueError,
            "max_grad_norm must be a positive finite number, got -1.0",
            id="clip",
        ),
    ],
)
def test_l2hmc_adaptation_checks_its_options_when_built(options, error, match):
    with pytest.raises(error, match=match):
        l2hmc_adaptation(gaussian, **options)


def test_l2hmc_adaptation_refuses_bad_options_for_the_dynamics_it_builds():
    # Checked when the adaptation is built, before `run` builds the dynamics.
    with pytest.raises(ValueError, match="step_size must be a positive finite number, got 0.0"):
        l2hmc_adaptation(gaussian, step_size=0.0, **QUIET).run(jax.random.key(0), jnp.zeros(2), 10)


def test_l2hmc_adaptation_run_under_jit_is_a_clear_error():
    warmup = l2hmc_adaptation(gaussian, **QUIET)
    with pytest.raises(
        TypeError, match=r"run is a Python training loop and cannot run under jax.vmap or jax.jit"
    ):
        jax.jit(lambda key, x: warmup.run(key, x, 10))(jax.random.key(0), jnp.zeros(2))


@pytest.mark.parametrize(
    ("position", "num_steps", "match"),
    [
        pytest.param(jnp.zeros(2), 0, "num_steps must be a positive integer, got 0", id="no-steps"),
        pytest.param(
            jnp.zeros((0, 2)), 10, r"position holds no chains \(leading axis of size 0\)", id="no-chains"
        ),
        pytest.param(
            jnp.array([[0.0, 0.0], [jnp.nan, 0.0], [0.0, 1.0]]),
            10,
            r"not finite at chain\(s\) 1 \(1 of 3\)",
            id="one-nan-chain",
        ),
    ],
)
def test_l2hmc_adaptation_run_checks_its_input(position, num_steps, match):
    with pytest.raises(ValueError, match=match):
        l2hmc_adaptation(gaussian, **QUIET).run(jax.random.key(0), position, num_steps)


# ------------------------------------------------------------------------------------------------
# diagnostics


SAMPLES = np.random.default_rng(0).normal(size=(50, 4, 2))


def test_paper_ess_refuses_a_covariance_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"covariance must have shape \(2, 2\), got \(3, 3\)"):
        diag.paper_ess(SAMPLES, np.zeros(2), np.eye(3))
    with pytest.raises(ValueError, match=r"variances must have shape \(2,\), got \(3,\)"):
        diag.paper_ess(SAMPLES, np.zeros(2), np.ones(3))


def test_autocorrelation_refuses_a_max_lag_out_of_range():
    with pytest.raises(ValueError, match=r"max_lag must be in \[0, 49\], got 50"):
        diag.autocorrelation(SAMPLES, np.zeros(2), np.eye(2), max_lag=50)


@pytest.mark.parametrize("function", [diag.standard_ess, diag.max_rhat], ids=["standard_ess", "max_rhat"])
def test_multi_chain_diagnostics_need_four_steps(function):
    with pytest.raises(ValueError, match=f"{function.__name__} needs at least 4 steps per chain"):
        function(SAMPLES[:3])


# ------------------------------------------------------------------------------------------------
# Checks added at the boundaries that used to fail deep inside JAX, or silently


def test_replacements_under_jit_are_checked_when_the_program_runs():
    dynamics = _dynamics(2)
    with pytest.raises(Exception, match=r"step_size_jitter must be in \[0, 1\)"):
        jax.block_until_ready(
            eqx.filter_jit(lambda d, j: d.with_step_size_jitter(j))(dynamics, jnp.asarray(1.5))
        )
    with pytest.raises(Exception, match="preconditioner loc must be finite"):
        jax.block_until_ready(
            eqx.filter_jit(lambda d, loc: d.with_preconditioner(loc, jnp.ones(2)))(
                dynamics, jnp.array([jnp.nan, 0.0])
            )
        )


def test_counts_accept_numpy_integers_and_refuse_an_integer_key():
    dynamics = L2HMCDynamics(np.int64(2), num_leapfrog_steps=np.int32(3), key=jax.random.key(0))
    assert dynamics.num_leapfrog_steps == 3 and isinstance(dynamics.num_leapfrog_steps, int)
    with pytest.raises(TypeError, match="key must be a JAX PRNG key"):
        dynamics.with_num_leapfrog_steps(4, key=4)
    with pytest.raises(TypeError, match="rng_key must be a JAX PRNG key"):
        train(7, gaussian, dynamics, _positions(), **BARE, num_steps=1)


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        pytest.param(lambda: l2hmc_ppl.build_kernel(divergence_threshold=-1.0), ValueError,
                     "divergence_threshold must be a positive finite number, got -1.0", id="threshold"),
        pytest.param(lambda: l2hmc_ppl.build_kernel(integrator="leapfrog"), TypeError,
                     "integrator must be callable", id="integrator"),
        pytest.param(lambda: l2hmc_ppl.propose(jax.random.key(0), l2hmc_ppl.init(jnp.zeros(2), gaussian),
                                               gaussian, "dynamics"), TypeError,
                     "dynamics must be an L2HMCDynamics", id="propose-dynamics"),
        pytest.param(lambda: l2hmc_ppl.init(jnp.zeros(0), gaussian), ValueError,
                     r"the initial position is empty \(no coordinates\)", id="zero-size-position"),
        pytest.param(lambda: l2hmc_ppl.init(jnp.zeros(3), lambda x: -0.5 * x**2), ValueError,
                     r"logdensity_fn must return one real number .*got \(3,\)", id="vector-logdensity"),
        pytest.param(lambda: l2hmc_ppl.init_chains(jnp.zeros((4, 3)), lambda x: -0.5 * x**2), ValueError,
                     "logdensity_fn must return one real number", id="vector-logdensity-chains"),
    ],
)  # fmt: skip
def test_the_kernel_checks_its_arguments(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_run_chains_refuses_one_chain_without_a_chain_axis_and_a_bad_num_steps():
    dynamics = _dynamics(2)
    with pytest.raises(ValueError, match="states must be a batch of chains"):
        l2hmc_ppl.run_chains(jax.random.key(0), gaussian, dynamics, l2hmc_ppl.init(jnp.zeros(2), gaussian), 5)
    with pytest.raises(TypeError, match="states must be a batch of chain states with a position"):
        l2hmc_ppl.run_chains(jax.random.key(0), gaussian, dynamics, jnp.zeros((3, 2)), 5)
    chains = l2hmc_ppl.init_chains(jnp.zeros((3, 2)), gaussian)
    with pytest.raises(ValueError, match="num_steps must be a positive integer, got 0"):
        l2hmc_ppl.run_chains(jax.random.key(0), gaussian, dynamics, chains, 0)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        pytest.param(
            dict(initial=1.0, final=5.0), ValueError, "initial must be at least final", id="warming"
        ),
        pytest.param(
            dict(final=0.0), ValueError, "final must be a positive finite number, got 0.0", id="final"
        ),
        pytest.param(dict(decay_rate=1.5), ValueError, r"decay_rate must be in \(0, 1\], got 1.5", id="rate"),
        pytest.param(
            dict(decay_steps=0), ValueError, "decay_steps must be a positive integer, got 0", id="steps"
        ),
    ],
)
def test_exponential_annealing_names_the_bad_argument(options, error, match):
    with pytest.raises(error, match=match):
        l2hmc_ppl.exponential_annealing(**options)


def test_a_checkpoint_path_in_a_missing_folder_is_refused_before_training(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        TrainConfig(checkpoint_path=str(tmp_path / "missing" / "state.l2hmc"))
    with pytest.raises(ValueError, match="is a folder"):
        TrainConfig(checkpoint_path=str(tmp_path))
    with pytest.raises(TypeError, match="checkpoint_path must be None or a file path"):
        TrainConfig(checkpoint_path=3)


def _latent_model():
    numpyro.sample("a", numpyro.distributions.Normal(0.0, 1.0).expand([2]).to_event(1))
    numpyro.sample("b", numpyro.distributions.Normal(0.0, 1.0))


@pytest.mark.parametrize(
    ("init_params", "match"),
    [
        pytest.param({"a": jnp.zeros(2)}, r"the model has \['a', 'b'\], init_params has \['a'\]",
                     id="missing"),
        pytest.param({"a": jnp.zeros(3), "b": jnp.zeros(())},
                     r"init_params\['a'\] must have the shape .*\(2,\)", id="shape"),
    ],
)  # fmt: skip
def test_numpyro_init_params_must_match_the_model(init_params, match):
    kernel = L2HMCKernel(_latent_model, dynamics=L2HMCDynamics(3, key=jax.random.key(0)))
    with pytest.raises(ValueError, match=match):
        MCMC(kernel, num_warmup=1, num_samples=1, progress_bar=False).run(
            jax.random.key(0), init_params=init_params
        )


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        pytest.param(dict(integrator=None), TypeError, "integrator must be callable", id="integrator"),
        pytest.param(dict(init_strategy="uniform"), TypeError, "init_strategy must be callable", id="init"),
        pytest.param(dict(progress_bar="yes"), TypeError, "progress_bar must be True or False", id="bar"),
        pytest.param(
            dict(step_size=-1.0), ValueError, "step_size must be a positive finite number", id="eps"
        ),
    ],
)
def test_l2hmc_kernel_checks_its_options_at_construction(options, error, match):
    with pytest.raises(error, match=match):
        L2HMCKernel(_latent_model, **options)


def test_blackjax_adapter_checks_at_the_boundary():
    with pytest.raises(ValueError, match="num_leapfrog_steps must be a positive integer, got True"):
        l2hmc_adaptation(gaussian, num_leapfrog_steps=True)
    with pytest.raises(ValueError, match="position has no coordinates"):
        l2hmc_adaptation(gaussian, **QUIET).run(jax.random.key(0), jnp.zeros(0))
    with pytest.raises(
        ValueError, match="position: the log density or its gradient is not finite at the initial position"
    ):
        l2hmc_adaptation(gaussian, **QUIET).run(jax.random.key(0), jnp.array([jnp.nan, 0.0]))
    with pytest.raises(ValueError, match="the position has 3 coordinates .* built for dim=2"):
        l2hmc(gaussian, _dynamics(2)).init(jnp.zeros(3))
