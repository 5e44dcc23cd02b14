"""Training L2HMC: the objectives, Algorithm 1 compiled once, the HMC warm start, selection, save/load.

The pieces, smallest first: the objectives ([`esjd_loss`][l2hmc_ppl.esjd_loss],
[`moments_loss`][l2hmc_ppl.training.moments_loss]); one iteration as a pure function of a
[`TrainState`][l2hmc_ppl.TrainState] ([`step`][l2hmc_ppl.training.step.step]) and its compiled chunk;
the [`warm_start`][l2hmc_ppl.warm_start]; the selection step
([`select_dynamics`][l2hmc_ppl.training.select_dynamics]); and [`train`][l2hmc_ppl.train], the loop
that puts them together. Every option lives in one [`TrainConfig`][l2hmc_ppl.TrainConfig].
"""

from l2hmc_ppl.training.checkpoint import load_train_state, save_train_state
from l2hmc_ppl.training.config import OBJECTIVES, TrainConfig, build_optimizer
from l2hmc_ppl.training.loss import esjd_loss, moment_jumps, moments_loss
from l2hmc_ppl.training.selection import SelectionInfo, min_moment_jump, select_dynamics
from l2hmc_ppl.training.serialisation import atomic_write, load, save
from l2hmc_ppl.training.step import StepOptions, TrainInfo, TrainState, init_train_state, run_chunk, step
from l2hmc_ppl.training.train import TrainingHistory, default_optimizer, exponential_annealing, train
from l2hmc_ppl.training.warm_start import WarmStartInfo, warm_start

__all__ = [
    "OBJECTIVES",
    "SelectionInfo",
    "StepOptions",
    "TrainConfig",
    "TrainInfo",
    "TrainState",
    "TrainingHistory",
    "WarmStartInfo",
    "atomic_write",
    "build_optimizer",
    "default_optimizer",
    "esjd_loss",
    "exponential_annealing",
    "init_train_state",
    "load",
    "load_train_state",
    "min_moment_jump",
    "moment_jumps",
    "moments_loss",
    "run_chunk",
    "save",
    "save_train_state",
    "select_dynamics",
    "step",
    "train",
    "warm_start",
]
