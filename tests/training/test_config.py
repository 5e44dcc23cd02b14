"""TrainConfig: every option checked at the boundary, hashable, one compiled step per equal config."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from l2hmc_ppl import TrainConfig, exponential_annealing
from l2hmc_ppl.training import build_optimizer


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        (dict(num_steps=0), ValueError, "num_steps must be a positive integer, got 0"),
        (dict(num_steps=True), ValueError, "num_steps must be a positive integer, got True"),
        (dict(objective="esjd"), ValueError, "objective must be one of"),
        (dict(learning_rate=-1e-3), ValueError, "learning_rate must be a positive finite number, got -0.001"),
        (
            dict(learning_rate=float("nan")),
            ValueError,
            "learning_rate must be a positive finite number, got nan",
        ),
        (
            dict(learning_rate=float("inf")),
            ValueError,
            "learning_rate must be a positive finite number, got inf",
        ),
        (dict(loss_scale=0.0), ValueError, "loss_scale must be a positive finite number, got 0.0"),
        (dict(loss_scale=-0.1), ValueError, "loss_scale must be a positive finite number"),
        (dict(loss_scale=(1.0, 2.0)), ValueError, "per-coordinate loss_scale needs objective='paper'"),
        (dict(max_grad_norm=-1.0), ValueError, "max_grad_norm must be a positive finite number"),
        (dict(target_acceptance_rate=1.5), ValueError, r"target_acceptance_rate must be in \(0, 1\)"),
        (dict(burn_in_weight=-1.0), ValueError, "burn_in_weight must be a non-negative finite number"),
        (dict(decay_rate=0.0), ValueError, r"decay_rate must be in \(0, 1\]"),
        (dict(num_warm_start_steps=8), ValueError, "num_warm_start_steps must be at least 16"),
        (dict(chunk_size=0), ValueError, "chunk_size must be a positive integer"),
        (dict(warm_start="yes"), TypeError, "warm_start must be True or False"),
        (dict(optimizer="adam"), TypeError, "optimizer must be an optax.GradientTransformation"),
        (dict(temperature_schedule=5.0), TypeError, "temperature_schedule must be callable"),
    ],
)
def test_bad_options_name_the_option_and_the_value(options, error, match):
    with pytest.raises(error, match=match):
        TrainConfig(**options)


def test_replace_checks_and_refuses_unknown_options():
    config = TrainConfig()
    assert config.replace(num_steps=5).num_steps == 5
    with pytest.raises(TypeError, match=r"unknown training option\(s\) \['num_step'\]"):
        config.replace(num_step=5)
    with pytest.raises(ValueError, match="learning_rate"):
        config.replace(learning_rate=0.0)


def test_configs_are_plain_and_hashable():
    config = TrainConfig(learning_rate=np.float32(2e-3), loss_scale=jnp.ones(3), objective="paper")
    assert isinstance(config.learning_rate, float) and config.loss_scale == (1.0, 1.0, 1.0)
    assert hash(config) == hash(
        TrainConfig(learning_rate=np.float32(2e-3), loss_scale=(1.0,) * 3, objective="paper")
    )
    assert (
        TrainConfig().resolved_loss_scale == 1.0 and TrainConfig(objective="paper").resolved_loss_scale == 0.1
    )
    assert exponential_annealing(5.0, 1.0, 0.9, 10) == exponential_annealing(5.0, 1.0, 0.9, 10)


def test_equal_options_give_the_same_optimizer_object():
    """The compiled training step is keyed by the optimizer: equal configs must not recompile."""
    assert build_optimizer(TrainConfig()) is build_optimizer(TrainConfig())
    assert build_optimizer(TrainConfig(max_grad_norm=1.0)) is not build_optimizer(TrainConfig())
    custom = optax.sgd(0.1)
    assert build_optimizer(TrainConfig(optimizer=custom)) is build_optimizer(TrainConfig(optimizer=custom))
