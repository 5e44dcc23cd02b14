"""The head-to-head benchmark: L2HMC against HMC, NumPyro NUTS and BlackJAX ChEES-HMC.

Run it as ``python -m l2hmc_ppl.benchmarks [--targets icg,scg,...] [--quick] [--out DIR]``. For every
target it trains L2HMC with the paper's settings and with a tuned configuration (warm start and a
per-target number of leapfrog steps, or a hot temperature anneal on targets with barriers),
evaluates all samplers with the paper's protocol (200 chains from exact draws, 2000 measured
transitions), and writes a Markdown table, a JSON file and figures.

- :mod:`~l2hmc_ppl.benchmarks.config`: the paper's published numbers and the per-target settings.
- :mod:`~l2hmc_ppl.benchmarks.samplers`: training and sampling of each sampler, with timings.
- :mod:`~l2hmc_ppl.benchmarks.metrics`: ESS per MH step and per gradient, bulk ESS, mode statistics.
- :mod:`~l2hmc_ppl.benchmarks.report`: the Markdown tables and the figures.
- :mod:`~l2hmc_ppl.benchmarks.run`: :func:`run_benchmark` and the command line.

References:
    D. Levy, M. D. Hoffman, J. Sohl-Dickstein. *Generalizing Hamiltonian Monte Carlo with Neural
    Networks*. ICLR 2018, arXiv:1711.09268, §5-6 and Fig. 1.
"""

from l2hmc_ppl.benchmarks.config import (
    DEFAULT_TARGETS,
    EXTRA_TARGETS,
    PAPER_RESULTS,
    BenchmarkSettings,
    L2HMCConfig,
    PaperResult,
    TargetConfig,
    get_target_config,
    quick_settings,
)
from l2hmc_ppl.benchmarks.metrics import evaluate_run
from l2hmc_ppl.benchmarks.report import markdown_tables, write_figures, write_markdown
from l2hmc_ppl.benchmarks.run import SAMPLERS, machine_info, main, resolve_targets, run_benchmark
from l2hmc_ppl.benchmarks.samplers import (
    SamplerRun,
    Stopwatch,
    Timing,
    sample_chees,
    sample_hmc,
    sample_l2hmc,
    sample_nuts,
    train_l2hmc,
)

__all__ = [
    "DEFAULT_TARGETS",
    "EXTRA_TARGETS",
    "PAPER_RESULTS",
    "SAMPLERS",
    "BenchmarkSettings",
    "L2HMCConfig",
    "PaperResult",
    "SamplerRun",
    "Stopwatch",
    "TargetConfig",
    "Timing",
    "evaluate_run",
    "get_target_config",
    "machine_info",
    "main",
    "markdown_tables",
    "quick_settings",
    "resolve_targets",
    "run_benchmark",
    "sample_chees",
    "sample_hmc",
    "sample_l2hmc",
    "sample_nuts",
    "train_l2hmc",
    "write_figures",
    "write_markdown",
]
