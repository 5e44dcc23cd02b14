"""l2hmc_ppl: learned Hamiltonian Monte Carlo (L2HMC) for JAX, NumPyro and BlackJAX.

``import l2hmc_ppl`` loads the algorithm only (it needs JAX, Equinox and Optax): the dynamics, the
kernel, training and save/load. The adapters are imported on demand:
[`l2hmc_ppl.numpyro`][l2hmc_ppl.numpyro] (``pip install l2hmc_ppl[numpyro]``) and
[`l2hmc_ppl.blackjax`][l2hmc_ppl.blackjax]; [`l2hmc_ppl.L2HMCKernel`][l2hmc_ppl.numpyro.L2HMCKernel] is the
NumPyro kernel.

References:
    D. Levy, M. D. Hoffman, J. Sohl-Dickstein. *Generalizing Hamiltonian Monte Carlo with Neural
    Networks*. ICLR 2018, arXiv:1711.09268.
"""

from l2hmc_ppl.cache import enable_compilation_cache
from l2hmc_ppl.core import (
    L2HMCInfo,
    L2HMCProposal,
    L2HMCState,
    build_kernel,
    init,
    init_chains,
    learned_leapfrog,
    propose,
    run_chains,
)
from l2hmc_ppl.dynamics import L2HMCDynamics, L2HMCNetwork, default_dynamics
from l2hmc_ppl.training import (
    TrainConfig,
    TrainingHistory,
    TrainState,
    default_optimizer,
    esjd_loss,
    exponential_annealing,
    load,
    save,
    train,
    warm_start,
)

__version__ = "0.2.0"

__all__ = [
    "L2HMCDynamics",
    "L2HMCInfo",
    "L2HMCKernel",
    "L2HMCNetwork",
    "L2HMCProposal",
    "L2HMCState",
    "TrainConfig",
    "TrainState",
    "TrainingHistory",
    "build_kernel",
    "default_dynamics",
    "default_optimizer",
    "enable_compilation_cache",
    "esjd_loss",
    "exponential_annealing",
    "init",
    "init_chains",
    "learned_leapfrog",
    "load",
    "propose",
    "run_chains",
    "save",
    "train",
    "warm_start",
]


def __getattr__(name: str):
    # The NumPyro kernel is imported on first use, so that `import l2hmc_ppl` does not load NumPyro.
    if name == "L2HMCKernel":
        from l2hmc_ppl.numpyro import L2HMCKernel

        return L2HMCKernel
    raise AttributeError(f"module 'l2hmc_ppl' has no attribute {name!r}")
