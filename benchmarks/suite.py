"""The development suite: L2HMC's defaults against NumPyro NUTS and BlackJAX ChEES on real posteriors.

Every target of `benchmarks/suite_targets.py` (the twelve posteriordb posteriors, German credit, the
paper's four toys, the continuous models of NumPyro's and BlackJAX's own test suites, and two
stress targets) is sampled, with the same number of chains, warm-up iterations and draws, by

- ``l2hmc_numpyro``: ``MCMC(L2HMCKernel(model))`` with every default (a log-density target is given
  as ``potential_fn``);
- ``l2hmc_blackjax``: ``l2hmc_adaptation`` + ``l2hmc`` with every default (log-density targets);
- ``nuts``: ``MCMC(NUTS(model))`` with NumPyro's defaults;
- ``chees``: BlackJAX's ChEES adaptation + dynamic HMC (on the unconstrained log density of a model).

Per target and sampler it records the largest |z| of the means and of the sds against the reference
(combined MCSE: the run's, from the ESS of x for a mean and of the centred squares for an sd, and
the reference's), the largest R̂, the divergences, whether the run aborted, and the smallest over
quantities of min(ESS of x, ESS of (x − mean)²) per gradient evaluation, per second of sampling
and per second end to end (warm-up and compilation included). It writes ``results.json`` and
``results.md`` (the table) into ``--out``.

    python benchmarks/suite.py --out suite_results                  # everything
    python benchmarks/suite.py --groups posteriordb --samplers l2hmc_numpyro nuts --out r
    python benchmarks/suite.py --targets eight_schools_noncentered --num-warmup 500 --out r
"""

from __future__ import annotations

import argparse
import gc
import math
import sys
import time
import traceback
from pathlib import Path

SAMPLERS = ("l2hmc_numpyro", "l2hmc_blackjax", "nuts", "chees")
REPO_ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--out", required=True, help="folder for results.json and results.md")
    parser.add_argument("--data-dir", default=None, help="folder holding posteriordb/ and german_credit/; "
                        "default $L2HMC_PPL_DATA, else ../shared/data beside the repository")  # fmt: skip
    parser.add_argument("--groups", nargs="*", default=None, help="target groups (default: all)")
    parser.add_argument(
        "--targets", nargs="*", default=None, help="target names (default: all of the groups)"
    )
    parser.add_argument("--samplers", nargs="*", default=list(SAMPLERS), choices=SAMPLERS, help="samplers")
    parser.add_argument("--num-chains", type=int, default=4, help="chains per sampler")
    parser.add_argument("--num-warmup", type=int, default=1000, help="warm-up iterations per chain")
    parser.add_argument("--num-samples", type=int, default=1000, help="kept draws per chain")
    parser.add_argument("--seed", type=int, default=0, help="seed (the same for every sampler)")
    options_help = (
        "TrainConfig / L2HMCKernel options for L2HMC, as Python keyword arguments, "
        "e.g. 'learning_rate=3e-4, num_leapfrog_steps=5'"
    )
    parser.add_argument("--l2hmc-options", default="", help=options_help)
    parser.add_argument("--resume", action="store_true", help="keep the rows already in --out/results.json")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    options = parse_args(argv)
    import jax  # heavy imports after the arguments: --help is instant

    jax.config.update("jax_enable_x64", True)
    sys.path.insert(0, str(REPO_ROOT))
    from benchmarks import _suite

    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    data_root = _suite.resolve_data_root(options.data_dir)
    targets = _suite.select_targets(data_root, options.groups, options.targets)
    l2hmc_options = eval(
        f"dict({options.l2hmc_options})", {"__builtins__": {"dict": dict, "True": True, "False": False}}
    )  # noqa: S307
    results = _suite.load_results(out) if options.resume else {}
    settings = dict(
        num_chains=options.num_chains, num_warmup=options.num_warmup, num_samples=options.num_samples
    )
    results.setdefault("settings", {}).update(settings, l2hmc_options=options.l2hmc_options)
    results.setdefault("machine", _suite.machine())
    rows = results.setdefault("rows", {})
    started = time.time()
    for target in targets:
        for sampler in options.samplers:
            key = f"{target.name}/{sampler}"
            if key in rows or not _suite.applies(sampler, target):
                continue
            _suite.log(f"{key} ...")
            try:
                row = _suite.run(sampler, target, seed=options.seed, l2hmc_options=l2hmc_options, **settings)
            except Exception as error:  # an abort is a result, recorded with its reason
                row = {
                    "aborted": f"{type(error).__name__}: {error}"[:500],
                    "traceback": traceback.format_exc()[-2000:],
                }
            row.update(target=target.name, group=target.group, sampler=sampler)
            rows[key] = row
            _suite.log(f"{key}: {_suite.describe(row)}")
            _suite.write_results(out, results)  # after every row: an interrupted run keeps its rows
            jax.clear_caches()  # each NUTS compile keeps memory maps; thousands of them exhaust the OS limit
            gc.collect()
    _suite.write_results(out, results)
    _suite.log(f"done in {math.ceil(time.time() - started)} s: {out / 'results.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
