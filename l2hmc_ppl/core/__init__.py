"""Pure-JAX core of L2HMC: the learned leapfrog and the MH transition (no numpyro/blackjax)."""

from l2hmc_ppl.core.kernel import L2HMCInfo, L2HMCProposal, L2HMCState, build_kernel, init, propose
from l2hmc_ppl.core.leapfrog import LeapfrogResult, learned_leapfrog

__all__ = [
    "L2HMCInfo",
    "L2HMCProposal",
    "L2HMCState",
    "LeapfrogResult",
    "build_kernel",
    "init",
    "learned_leapfrog",
    "propose",
]
