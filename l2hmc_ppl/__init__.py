"""l2hmc_ppl: learned Hamiltonian Monte Carlo (L2HMC) for JAX, NumPyro and BlackJAX.

References:
    D. Levy, M. D. Hoffman, J. Sohl-Dickstein. *Generalizing Hamiltonian Monte Carlo with Neural
    Networks*. ICLR 2018, arXiv:1711.09268.
"""

from l2hmc_ppl.core import (
    L2HMCInfo,
    L2HMCProposal,
    L2HMCState,
    build_kernel,
    init,
    learned_leapfrog,
    propose,
)
from l2hmc_ppl.dynamics import L2HMCDynamics, L2HMCNetwork
from l2hmc_ppl.numpyro import L2HMCKernel
from l2hmc_ppl.training import (
    TrainingHistory,
    default_optimizer,
    esjd_loss,
    exponential_annealing,
    load,
    save,
    train,
    warm_start,
)

__version__ = "0.1.0"

__all__ = [
    "L2HMCDynamics",
    "L2HMCInfo",
    "L2HMCKernel",
    "L2HMCNetwork",
    "L2HMCProposal",
    "L2HMCState",
    "TrainingHistory",
    "build_kernel",
    "default_optimizer",
    "esjd_loss",
    "exponential_annealing",
    "load",
    "save",
    "train",
    "warm_start",
    "init",
    "learned_leapfrog",
    "propose",
]
