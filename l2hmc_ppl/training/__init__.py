"""Training L2HMC: the ESJD loss, Algorithm 1, the HMC warm start, and save/load."""

from l2hmc_ppl.training.loss import esjd_loss
from l2hmc_ppl.training.serialisation import load, save
from l2hmc_ppl.training.train import TrainingHistory, default_optimizer, exponential_annealing, train
from l2hmc_ppl.training.warm_start import WarmStartInfo, warm_start

__all__ = [
    "TrainingHistory",
    "WarmStartInfo",
    "default_optimizer",
    "esjd_loss",
    "exponential_annealing",
    "load",
    "save",
    "train",
    "warm_start",
]
