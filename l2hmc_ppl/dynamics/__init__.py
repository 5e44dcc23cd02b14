"""Learned dynamics: the S/Q/T networks and the Equinox module holding networks, masks and ε."""

from l2hmc_ppl.dynamics.dynamics import L2HMCDynamics, default_hidden_size, draw_masks, time_encoding
from l2hmc_ppl.dynamics.networks import L2HMCNetwork

__all__ = ["L2HMCDynamics", "L2HMCNetwork", "default_hidden_size", "draw_masks", "time_encoding"]
