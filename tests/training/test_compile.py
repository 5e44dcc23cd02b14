"""Compile once: a second training of the same target and shapes compiles nothing, nor does another
``num_steps``. Counted with ``jax.monitoring`` (XLA backend compilations)."""

import jax
import jax.numpy as jnp
import pytest

import l2hmc_ppl
from l2hmc_ppl import L2HMCDynamics, TrainConfig


class CompileCounter:
    """Counts XLA compilations while active (``jax.monitoring``'s backend-compile events)."""

    EVENT = "/jax/core/compile/backend_compile_duration"

    def __init__(self):
        self.count, self.active = 0, False
        jax.monitoring.register_event_duration_secs_listener(self._listen)

    def _listen(self, event, duration, **_):
        if self.active and event == self.EVENT:
            self.count += 1

    def __enter__(self):
        self.count, self.active = 0, True
        return self

    def __exit__(self, *_):
        self.active = False


@pytest.fixture(scope="module")
def counter():
    return CompileCounter()


def logdensity_fn(x):
    return -0.5 * jnp.sum(x**2 / jnp.array([1.0, 4.0, 0.25]))


@pytest.mark.parametrize("objective", ["moments", "paper"])
def test_second_training_and_another_num_steps_compile_nothing(counter, objective):
    config = TrainConfig(
        num_steps=30, chunk_size=10, num_warm_start_steps=32, objective=objective, progress_bar=False
    )
    positions = jax.random.normal(jax.random.key(1), (16, 3))
    with counter:
        l2hmc_ppl.train(
            jax.random.key(2), logdensity_fn, L2HMCDynamics(3, key=jax.random.key(0)), positions, config
        )
    assert counter.count > 0  # the first call compiled its pieces
    with counter:
        trained, history = l2hmc_ppl.train(
            jax.random.key(3), logdensity_fn, L2HMCDynamics(3, key=jax.random.key(7)), positions, config
        )
        jax.block_until_ready(trained)
    assert counter.count == 0
    with counter:
        l2hmc_ppl.train(
            jax.random.key(4),
            logdensity_fn,
            L2HMCDynamics(3, key=jax.random.key(8)),
            positions,
            config,
            num_steps=47,
        )
    assert counter.count == 0
