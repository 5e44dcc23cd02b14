"""The paper benchmark behind ``benchmarks/paper.py``: L2HMC against HMC, NUTS and ChEES-HMC.

- `benchmarks._paper.names`: the target groups and sampler keys (no JAX).
- `benchmarks._paper.config`: the paper's published numbers, the per-target L2HMC configurations
  and the run sizes.
- `benchmarks._paper.metrics`: ESS per MH step and per gradient, bulk ESS, mode statistics.
- `benchmarks._paper.report`: the Markdown tables and the figures.
- `benchmarks._paper.run`: `run_benchmark` and `rebuild_report`.

References:
    D. Levy, M. D. Hoffman, J. Sohl-Dickstein. *Generalizing Hamiltonian Monte Carlo with Neural
    Networks*. ICLR 2018, arXiv:1711.09268, §5-6 and Fig. 1.
"""
