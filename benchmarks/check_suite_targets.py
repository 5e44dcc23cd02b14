"""Validate the development suite (`suite_targets.py`) with NumPyro NUTS against its reference moments.

For every selected target: run ``MCMC(NUTS(...))`` (by default NumPyro's defaults plus the
target's entry in `suite_targets.NUTS_SETTINGS`; 4 chains run one after another, 1000 warmup and
1000 sampling iterations, float64, a fixed seed), extract the reference quantities and score each
with `suite_targets.moment_z_scores`. Log-density targets run as ``NUTS(potential_fn=-logdensity)``
from the target's ``initial_position``. A target passes when max |z| < ``--threshold`` (5) for the
means and for the standard deviations. The z-scores use the run's own MCSE, so a run that is stuck
(e.g. in one mode) inflates its MCSE and can "pass": a passing run is therefore also flagged
unreliable when its max split R-hat exceeds ``--max-rhat`` (1.05) or its min ESS is below
``--min-ess`` (100).

Prints one Markdown table (max |z| of means and sds, max split R-hat, divergences, min ESS of the
quantities and of their centred squares, mean leapfrog steps per iteration, wall seconds including
compilation, the verdict) and writes the same, with the per-quantity scores, as JSON to ``--out``
(atomically, after every target).

Data: ``--data-dir``, else ``$L2HMC_PPL_DATA``, else ``../shared/data`` relative to the repository
root; the folder must hold ``posteriordb/`` and ``german_credit/`` when those groups are selected.

Usage::

    python benchmarks/check_suite_targets.py --out suite_check.json
    python benchmarks/check_suite_targets.py --targets posteriordb eight_schools_noncentered
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_ENV_VAR = "L2HMC_PPL_DATA"
EXTRA_FIELDS = ("diverging", "num_steps")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--targets",
        nargs="+",
        default=None,
        help="Target names and/or group names (posteriordb, german_credit, toy, numpyro_tests, "
        "blackjax_tests, stress) to check; default: all targets.",
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help=f"Folder holding posteriordb/ and german_credit/; default ${DATA_ENV_VAR}, else "
        "../shared/data relative to the repository root.",
    )
    parser.add_argument("--num-warmup", type=int, default=1000, help="NUTS warmup iterations per chain.")
    parser.add_argument("--num-samples", type=int, default=1000, help="NUTS samples kept per chain.")
    parser.add_argument("--num-chains", type=int, default=4, help="Chains, run sequentially.")
    parser.add_argument("--seed", type=int, default=0, help="PRNG seed of every run.")
    parser.add_argument(
        "--threshold", type=float, default=5.0, help="Pass when max |z| of means and of sds is below this."
    )
    parser.add_argument(
        "--max-rhat",
        type=float,
        default=1.05,
        help="A passing run is also flagged 'unreliable' when its max split R-hat exceeds this.",
    )
    parser.add_argument(
        "--min-ess",
        type=float,
        default=100.0,
        help="A passing run is also flagged 'unreliable' when its min ESS (of x and of its centred "
        "square) is below this: its own MCSE, and so its z-scores, are then not trustworthy.",
    )
    parser.add_argument(
        "--plain-nuts",
        action="store_true",
        help="Ignore suite_targets.NUTS_SETTINGS (run NUTS with NumPyro's defaults everywhere).",
    )
    parser.add_argument("--out", default=None, help="Write the results as JSON to this path.")
    parser.add_argument("--list", action="store_true", help="List the targets and groups, then exit.")
    return parser.parse_args(argv)


def resolve_data_dir(data_dir: str | None) -> Path:
    """--data-dir, else $L2HMC_PPL_DATA, else ../shared/data beside the repository."""
    if data_dir is not None:
        return Path(data_dir)
    if os.environ.get(DATA_ENV_VAR):
        return Path(os.environ[DATA_ENV_VAR])
    return REPO_ROOT.parent / "shared" / "data"


def jsonable(value):
    """``value`` with non-finite floats made strict JSON: nan → null, ±inf → "inf"/"-inf"."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def atomic_write_json(path: str | Path, payload) -> None:
    """Write ``payload`` as strict JSON to ``path`` via a temporary file and os.replace."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as file:
            json.dump(jsonable(payload), file, indent=1, allow_nan=False)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def select_names(st, selection: list[str] | None) -> list[str]:
    if not selection:
        return st.target_names()
    names, known = [], st.target_names()
    for item in selection:
        if item in st.GROUPS:
            names += [n for n in st.target_names([item]) if n not in names]
        elif item in known:
            if item not in names:
                names.append(item)
        else:
            sys.exit(f"error: unknown target or group {item!r}; see --list")
    return names


def run_nuts(target, args, nuts_kwargs: dict):
    """Run NUTS on one target; returns (extracted draws, divergences, mean tree size, wall seconds)."""
    import jax
    import numpy as np
    from numpyro.infer import MCMC, NUTS

    key = jax.random.key(args.seed)
    init_key, run_key = jax.random.split(key)
    if target.model is not None:
        kernel = NUTS(target.model, **nuts_kwargs)
    else:
        logdensity_fn = target.logdensity_fn

        def potential_fn(x):
            return -logdensity_fn(x)

        kernel = NUTS(potential_fn=potential_fn, **nuts_kwargs)
    mcmc = MCMC(
        kernel,
        num_warmup=args.num_warmup,
        num_samples=args.num_samples,
        num_chains=args.num_chains,
        chain_method="sequential",
        progress_bar=False,
    )
    start = time.perf_counter()
    if target.model is not None:
        mcmc.run(run_key, *target.model_args, extra_fields=EXTRA_FIELDS, **target.model_kwargs)
        samples = mcmc.get_samples(group_by_chain=True)
    else:
        init = target.initial_position(init_key, args.num_chains)
        mcmc.run(run_key, init_params=init, extra_fields=EXTRA_FIELDS)
        samples = {"x": mcmc.get_samples(group_by_chain=True)}
    samples = jax.tree.map(np.asarray, samples)
    seconds = time.perf_counter() - start
    extra = mcmc.get_extra_fields(group_by_chain=True)
    divergences = int(np.asarray(extra["diverging"]).sum())
    mean_steps = float(np.asarray(extra["num_steps"]).mean())
    draws = target.extract(samples)
    # Free the compiled executables: one process compiling ~40 NUTS runs otherwise exhausts the
    # kernel's memory-map limit (LLVM "Cannot allocate memory").
    del mcmc, kernel
    jax.clear_caches()
    gc.collect()
    return draws, divergences, mean_steps, seconds


def fmt(value: float, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "nan"
    if math.isinf(value):
        return "inf"
    return f"{value:.{digits}f}"


def main(argv=None) -> int:
    args = parse_args(argv)

    import jax

    jax.config.update("jax_enable_x64", True)
    import numpy as np
    from numpyro.diagnostics import split_gelman_rubin

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import suite_targets as st

    if args.list:
        for group in st.GROUPS:
            print(f"{group}: {' '.join(st.target_names([group]))}")
        return 0
    data_dir = resolve_data_dir(args.data_dir)
    names = select_names(st, args.targets)

    try:
        targets = [st.get_target(name, data_dir) for name in names]
    except FileNotFoundError as error:
        sys.exit(
            f"error: {error}\n(data folder: {data_dir}; set --data-dir or ${DATA_ENV_VAR} to the "
            "folder that holds posteriordb/ and german_credit/)"
        )

    header = (
        "| target | group | max abs z mean | max abs z sd | max R-hat | divergences | min ESS | "
        "mean steps | wall s | NUTS options | verdict |"
    )
    print(header)
    print("|" + "---|" * 11, flush=True)
    results = []
    for name, target in zip(names, targets, strict=True):
        nuts_kwargs = {} if args.plain_nuts else dict(st.NUTS_SETTINGS.get(name, {}))
        draws, divergences, mean_steps, seconds = run_nuts(target, args, nuts_kwargs)
        scores = st.moment_z_scores(draws, target.reference)
        z_mean = max(z for z, _ in scores.values())
        z_sd = max(z for _, z in scores.values())
        rhats = []
        for x in draws.values():
            x = np.asarray(x, dtype=np.float64)
            if np.ptp(x) > 0:
                rhats.append(float(split_gelman_rubin(x)))
        max_rhat = max(rhats) if rhats else math.nan
        min_ess = st.min_moment_ess(draws)
        passed = bool(z_mean < args.threshold and z_sd < args.threshold)
        reliable = not (max_rhat > args.max_rhat or min_ess < args.min_ess)  # nan (constant) is fine
        verdict = ("pass" if reliable else "pass, unreliable (R-hat/ESS)") if passed else "FAIL"
        options = ", ".join(f"{k}={v}" for k, v in nuts_kwargs.items()) or "defaults"
        print(
            f"| {name} | {target.group} | {fmt(z_mean)} | {fmt(z_sd)} | {fmt(max_rhat, 3)} | {divergences} | "
            f"{fmt(min_ess, 0)} | {fmt(mean_steps, 1)} | {fmt(seconds, 1)} | {options} | {verdict} |",
            flush=True,
        )
        results.append(
            {
                "name": name,
                "group": target.group,
                "max_abs_z_mean": z_mean,
                "max_abs_z_sd": z_sd,
                "max_rhat": max_rhat,
                "divergences": divergences,
                "min_ess": min_ess,
                "mean_num_steps": mean_steps,
                "reliable": reliable,
                "verdict": verdict,
                "wall_seconds": seconds,
                "nuts_options": nuts_kwargs,
                "passed": passed,
                "z_scores": {k: {"z_mean": zm, "z_sd": zs} for k, (zm, zs) in scores.items()},
            }
        )
        if args.out:
            payload = {
                "settings": {
                    "num_warmup": args.num_warmup,
                    "num_samples": args.num_samples,
                    "num_chains": args.num_chains,
                    "chain_method": "sequential",
                    "seed": args.seed,
                    "threshold": args.threshold,
                    "max_rhat": args.max_rhat,
                    "min_ess": args.min_ess,
                    "x64": True,
                    "data_dir": str(data_dir),
                },
                "results": results,
            }
            atomic_write_json(args.out, payload)
    total = sum(r["wall_seconds"] for r in results)
    print(f"\nTotal NUTS wall time: {total:.0f} s")
    failed = [r["name"] for r in results if not r["passed"]]
    print(
        f"{len(results) - len(failed)}/{len(results)} targets pass"
        + (f"; failed: {failed}" if failed else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
