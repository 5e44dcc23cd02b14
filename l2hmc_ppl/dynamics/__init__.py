"""Learned dynamics: the S/Q/T networks and the Equinox module holding networks, masks and ε."""

from l2hmc_ppl.dynamics.dynamics import (
    DEFAULT_NUM_LEAPFROG_STEPS,
    DEFAULT_STEP_SIZE_JITTER,
    L2HMCDynamics,
    default_dynamics,
    default_hidden_size,
    draw_masks,
    time_encoding,
)
from l2hmc_ppl.dynamics.networks import L2HMCNetwork

__all__ = [
    "DEFAULT_NUM_LEAPFROG_STEPS",
    "DEFAULT_STEP_SIZE_JITTER",
    "L2HMCDynamics",
    "L2HMCNetwork",
    "default_dynamics",
    "default_hidden_size",
    "draw_masks",
    "time_encoding",
]
