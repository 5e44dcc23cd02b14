"""``python -m l2hmc_ppl.benchmarks``: see :func:`l2hmc_ppl.benchmarks.main` (``--help`` for the options)."""

from l2hmc_ppl.benchmarks.run import main

__all__: list[str] = []

if __name__ == "__main__":
    raise SystemExit(main())
