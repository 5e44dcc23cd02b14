"""Pure-JAX core of L2HMC: the learned leapfrog, the MH transition and batches of chains.

Never imports NumPyro or BlackJAX.
"""

from l2hmc_ppl.core.chains import (
    init_chains,
    num_chains,
    perturb_chains,
    run_chains,
    spread_position,
    tempered,
    untempered,
)
from l2hmc_ppl.core.kernel import (
    Integrator,
    L2HMCInfo,
    L2HMCProposal,
    L2HMCState,
    build_kernel,
    init,
    propose,
)
from l2hmc_ppl.core.leapfrog import LeapfrogResult, finite_value_and_grad, hmc_leapfrog, learned_leapfrog
from l2hmc_ppl.core.proposal import metropolis_accept

__all__ = [
    "Integrator",
    "L2HMCInfo",
    "L2HMCProposal",
    "L2HMCState",
    "LeapfrogResult",
    "build_kernel",
    "finite_value_and_grad",
    "hmc_leapfrog",
    "init",
    "init_chains",
    "learned_leapfrog",
    "metropolis_accept",
    "num_chains",
    "perturb_chains",
    "propose",
    "run_chains",
    "spread_position",
    "tempered",
    "untempered",
]
