"""The runners and the metrics of the development suite (`benchmarks/suite.py`).

`run` samples one `SuiteTarget` with one sampler and returns a row of metrics; `write_results`
writes the rows as JSON and as a Markdown table. The baselines come from `benchmarks._samplers`
(NumPyro NUTS, BlackJAX ChEES); L2HMC runs through its two adapters with every default.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from numpyro.diagnostics import split_gelman_rubin
from numpyro.infer import MCMC
from numpyro.infer.util import initialize_model

from benchmarks import _samplers
from benchmarks._common import REPO_ROOT, Stopwatch, log, machine_info, write_json
from benchmarks.suite_targets import SuiteTarget, load_suite, min_moment_ess, moment_z_scores, target_names

__all__ = [
    "applies",
    "describe",
    "load_results",
    "log",
    "machine",
    "resolve_data_root",
    "run",
    "select_targets",
    "write_results",
]

DATA_ENV_VAR = "L2HMC_PPL_DATA"


def resolve_data_root(data_dir: str | None) -> Path:
    """``--data-dir``, else ``$L2HMC_PPL_DATA``, else ``../shared/data`` beside the repository."""
    folder = Path(data_dir or os.environ.get(DATA_ENV_VAR) or REPO_ROOT.parent / "shared" / "data")
    for needed in ("posteriordb", "german_credit"):
        if not (folder / needed).is_dir():
            raise SystemExit(f"{folder / needed} not found: give --data-dir or set ${DATA_ENV_VAR}")
    return folder


def select_targets(
    data_root: Path, groups: Sequence[str] | None, names: Sequence[str] | None
) -> list[SuiteTarget]:
    targets = load_suite(data_root, groups)
    if names:
        unknown = set(names) - set(target_names())
        if unknown:
            raise SystemExit(f"unknown targets {sorted(unknown)}; known: {target_names()}")
        targets = [target for target in targets if target.name in names]
    return targets


def machine() -> dict[str, Any]:
    return machine_info()


def applies(sampler: str, target: SuiteTarget) -> bool:
    """The BlackJAX adapter takes log densities; every other sampler takes both kinds of target."""
    return sampler != "l2hmc_blackjax" or target.logdensity_fn is not None


# --------------------------------------------------------------------------------------------------
# Runners: each returns draws {name: (chains, draws)} plus gradient counts and timings


def _model_density(target: SuiteTarget, rng_key, num_chains: int):
    """The unconstrained log density of a model on flat vectors, per-chain starts, and the map back."""
    info = initialize_model(
        jax.random.split(rng_key, num_chains),
        target.model,
        model_args=target.model_args,
        model_kwargs=target.model_kwargs,
        dynamic_args=False,
    )
    starts = info.param_info.z
    first = jax.tree_util.tree_map(lambda x: x[0], starts)
    _, unravel = ravel_pytree(first)
    potential_fn = info.potential_fn

    def logdensity_fn(x):
        return -potential_fn(unravel(x))

    flat_starts = jax.vmap(lambda z: ravel_pytree(z)[0])(starts)
    postprocess = jax.jit(jax.vmap(jax.vmap(lambda x: info.postprocess_fn(unravel(x)))))
    return logdensity_fn, flat_starts, postprocess


def _initial_positions(target: SuiteTarget, rng_key, num_chains: int):
    return jnp.asarray(target.initial_position(rng_key, num_chains))


def _draws(target: SuiteTarget, grouped: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The quantities the reference judges, ``{name: (chains, draws)}``."""
    return {name: np.asarray(values, np.float64) for name, values in target.extract(grouped).items()}


def _numpyro_run(target: SuiteTarget, kernel, *, seed, num_chains, num_warmup, num_samples):
    """A NumPyro MCMC run (warm-up timed apart from sampling), for a model or a log-density target."""
    mcmc = MCMC(
        kernel, num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains,
        chain_method="sequential", progress_bar=False,
    )  # fmt: skip
    key_init, key_warmup, key_sample = jax.random.split(jax.random.key(seed), 3)
    init_params = None if target.model is not None else _initial_positions(target, key_init, num_chains)
    args, kwargs = (target.model_args, target.model_kwargs) if target.model is not None else ((), {})
    with Stopwatch() as warmup:
        mcmc.warmup(key_warmup, *args, init_params=init_params, **kwargs)
        jax.block_until_ready(mcmc.post_warmup_state)
    with Stopwatch() as sampling:
        mcmc.run(key_sample, *args, extra_fields=("num_steps", "diverging"), **kwargs)
        grouped = jax.block_until_ready(mcmc.get_samples(group_by_chain=True))
    extra = mcmc.get_extra_fields(group_by_chain=True)
    if target.model is None:
        grouped = {"x": np.asarray(grouped)}
    return dict(
        draws=_draws(target, jax.device_get(grouped)),
        gradients=float(np.sum(np.asarray(extra["num_steps"], np.float64))),
        divergences=int(np.sum(np.asarray(extra["diverging"]))),
        warmup=warmup,
        sampling=sampling,
        state=mcmc.last_state,
    )


def _l2hmc_numpyro(target, l2hmc_options, **settings):
    from l2hmc_ppl.numpyro import L2HMCKernel

    options = dict(progress_bar=False) | l2hmc_options
    if target.model is not None:
        kernel = L2HMCKernel(target.model, **options)
    else:
        logdensity_fn = target.logdensity_fn
        kernel = L2HMCKernel(potential_fn=lambda x: -logdensity_fn(x), **options)
    result = _numpyro_run(target, kernel, **settings)
    state = result.pop("state")
    training = state.training
    result["details"] = dict(
        kept_tuned_hmc=int(np.sum(np.asarray(training.kept_tuned_hmc))),
        final_acceptance=float(np.mean(np.asarray(training.acceptance_rate)[..., -50:])),
        num_leapfrog_steps=int(np.max(np.asarray(state.num_steps))),
        step_size=float(np.median(np.asarray(state.step_size))),
    )
    return result


def _nuts(target, l2hmc_options, **settings):
    from numpyro.infer import NUTS

    if target.model is not None:
        kernel = NUTS(target.model)
    else:
        logdensity_fn = target.logdensity_fn
        kernel = NUTS(potential_fn=lambda x: -logdensity_fn(x))
    result = _numpyro_run(target, kernel, **settings)
    result.pop("state")
    return result


def _blackjax_density(target, seed, num_chains):
    key = jax.random.fold_in(jax.random.key(seed), 7)
    if target.model is not None:
        logdensity_fn, starts, postprocess = _model_density(target, key, num_chains)
        return logdensity_fn, starts, lambda flat: jax.device_get(postprocess(flat))
    return (
        target.logdensity_fn,
        _initial_positions(target, key, num_chains),
        lambda flat: {"x": np.asarray(flat)},
    )


def _chees(target, l2hmc_options, *, seed, num_chains, num_warmup, num_samples):
    logdensity_fn, starts, to_sites = _blackjax_density(target, seed, num_chains)
    run = _samplers.run_chees(jax.random.key(seed), logdensity_fn, starts, num_samples, num_warmup=num_warmup)
    flat = np.swapaxes(np.asarray(run.samples, np.float64), 0, 1)  # (chains, draws, dim)
    return dict(
        draws=_draws(target, to_sites(jnp.asarray(flat))),
        gradients=run.gradients_per_step * num_samples * num_chains,
        divergences=int(run.details.get("num_divergent", 0)),
        warmup=run.adaptation,
        sampling=run.sampling,
    )


def _l2hmc_blackjax(target, l2hmc_options, *, seed, num_chains, num_warmup, num_samples):
    import blackjax

    from l2hmc_ppl.blackjax import l2hmc, l2hmc_adaptation

    logdensity_fn, starts, to_sites = _blackjax_density(target, seed, num_chains)
    key_warmup, key_sample = jax.random.split(jax.random.key(seed))
    options = dict(progress_bar=False) | l2hmc_options
    with Stopwatch() as warmup:
        (states, parameters), history = l2hmc_adaptation(logdensity_fn, **options).run(
            key_warmup, starts, num_steps=num_warmup
        )
        jax.block_until_ready(states)
    sampler = l2hmc(logdensity_fn, **parameters)

    @jax.jit
    def sample(keys, states):
        def one_chain(key, state):
            _, (positions, info) = blackjax.util.run_inference_algorithm(
                key, sampler, num_samples, initial_state=state, transform=lambda s, i: (s.position, i)
            )
            return positions, info

        return jax.vmap(one_chain)(keys, states)

    with Stopwatch() as sampling:
        positions, info = jax.block_until_ready(sample(jax.random.split(key_sample, num_chains), states))
    return dict(
        draws=_draws(target, to_sites(positions)),
        gradients=float(np.sum(np.asarray(info.num_integration_steps, np.float64))),
        divergences=int(np.sum(np.asarray(info.is_divergent))),
        warmup=warmup,
        sampling=sampling,
        details=dict(kept_tuned_hmc=int(bool(history.selection.kept_initial)) if history.selection else 0),
    )


_RUNNERS = {
    "l2hmc_numpyro": _l2hmc_numpyro,
    "l2hmc_blackjax": _l2hmc_blackjax,
    "nuts": _nuts,
    "chees": _chees,
}


# --------------------------------------------------------------------------------------------------
# Metrics


def run(sampler: str, target: SuiteTarget, *, seed: int, l2hmc_options: dict, **settings) -> dict[str, Any]:
    """Sample ``target`` with ``sampler`` and measure the run against the reference."""
    result = _RUNNERS[sampler](target, l2hmc_options, seed=seed, **settings)
    draws = result["draws"]
    z_scores = moment_z_scores(draws, target.reference)
    varying = [name for name, x in draws.items() if np.ptp(x) > 0]
    rhat = max(
        (float(split_gelman_rubin(draws[name][..., None])[0]) for name in varying), default=float("nan")
    )
    min_ess = float(min_moment_ess(draws))
    seconds_sampling = result["sampling"].wall
    seconds_total = result["warmup"].wall + seconds_sampling
    return dict(
        max_z_mean=float(max((abs(z[0]) for z in z_scores.values()), default=0.0)),
        max_z_sd=float(max((abs(z[1]) for z in z_scores.values()), default=0.0)),
        max_rhat=rhat,
        divergences=result["divergences"],
        min_ess=min_ess,
        gradients=result["gradients"],
        ess_per_gradient=min_ess / result["gradients"] if result["gradients"] else float("nan"),
        ess_per_second_sampling=min_ess / seconds_sampling,
        ess_per_second_total=min_ess / seconds_total,
        seconds_warmup=result["warmup"].wall,
        seconds_warmup_compile=result["warmup"].compile,
        seconds_sampling=seconds_sampling,
        details=result.get("details", {}),
        z_scores={name: [float(a), float(b)] for name, (a, b) in z_scores.items()},
    )


def describe(row: dict[str, Any]) -> str:
    if "aborted" in row:
        return f"ABORTED {row['aborted']}"
    return (
        f"z mean {row['max_z_mean']:.2f} sd {row['max_z_sd']:.2f} rhat {row['max_rhat']:.3f} "
        f"div {row['divergences']} minESS {row['min_ess']:.0f} /grad {row['ess_per_gradient']:.2e} "
        f"/s total {row['ess_per_second_total']:.1f} "
        f"({row['seconds_warmup']:.0f}+{row['seconds_sampling']:.0f} s)"
    )


# --------------------------------------------------------------------------------------------------
# Files


def load_results(out: Path) -> dict[str, Any]:
    path = out / "results.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _number(value, digits=3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}g}"


def _passes(row: dict[str, Any], z: float = 5.0) -> bool:
    # A statistic that could not be computed (NaN in the run, null once read back from results.json,
    # e.g. R̂ of a model with no coordinates) does not pass.
    values = [row.get(name) for name in ("max_z_mean", "max_z_sd", "max_rhat")]
    if "aborted" in row or any(value is None or not math.isfinite(value) for value in values):
        return False
    max_z_mean, max_z_sd, max_rhat = values
    return max_z_mean < z and max_z_sd < z and max_rhat < 1.01


def markdown(results: dict[str, Any]) -> str:
    """The suite table: one row per target and sampler, and L2HMC's ratios to NUTS per target."""
    rows = results.get("rows", {})
    header = (
        "| target | group | sampler | max z mean | max z sd | R̂ | div. | min ESS | ESS/grad | "
        "ESS/s sampling | ESS/s total | warm-up s | pass |"
    )
    lines = [header, "|" + "---|" * 13]
    for row in rows.values():
        if "aborted" in row:
            reason = row["aborted"][:80]
            name = f"| {row['target']} | {row['group']} | {row['sampler']} |"
            lines.append(f"{name} aborted: {reason} |||||||||")
            continue
        lines.append(
            f"| {row['target']} | {row['group']} | {row['sampler']} | {_number(row['max_z_mean'])} | "
            f"{_number(row['max_z_sd'])} | {_number(row['max_rhat'], 4)} | {row['divergences']} | "
            f"{_number(row['min_ess'])} | {_number(row['ess_per_gradient'])} | "
            f"{_number(row['ess_per_second_sampling'])} | {_number(row['ess_per_second_total'])} | "
            f"{_number(row['seconds_warmup'])} | {'yes' if _passes(row) else 'NO'} |"
        )
    ratios = [
        "",
        "| target | L2HMC/NUTS ESS per gradient | L2HMC/NUTS ESS per second, total |",
        "|---|---|---|",
    ]
    for target in sorted({row["target"] for row in rows.values()}):
        mine, nuts = rows.get(f"{target}/l2hmc_numpyro"), rows.get(f"{target}/nuts")
        if mine and nuts and "aborted" not in mine and "aborted" not in nuts:
            ratios.append(
                f"| {target} | {_number(_ratio(mine['ess_per_gradient'], nuts['ess_per_gradient']))} | "
                f"{_number(_ratio(mine['ess_per_second_total'], nuts['ess_per_second_total']))} |"
            )
    return "\n".join(lines + ratios) + "\n"


def _ratio(numerator, denominator) -> float | None:
    """numerator / denominator (NaN or inf, without a warning, where the division is not finite), or
    None where either is missing (null in results.json); the table shows both as "—"."""
    if numerator is None or denominator is None:
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.float64(numerator) / np.float64(denominator))


def write_results(out: Path, results: dict[str, Any]) -> None:
    write_json(out / "results.json", results)
    (out / "results.md").write_text(markdown(results))
