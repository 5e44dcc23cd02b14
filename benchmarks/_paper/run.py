"""The paper benchmark: every sampler on every target, then ``results.md``, ``results.json`` and figures.

For each target: train L2HMC with the paper's settings and with the tuned configuration (warm start,
per-target M), then evaluate every sampler with the paper's protocol (the same exact draws as
starting points, the same number of measured transitions): the two L2HMC samplers, the tuned
L2HMC's warm start without heads, HMC with the paper's M and the best ε of a grid, NumPyro NUTS
with diagonal and with dense mass adaptation, and BlackJAX ChEES-HMC. `run_benchmark` writes
``results.md`` (tables), ``results.json`` (everything, including the autocorrelation curves and the
HMC grid), ``samples.npz`` (the 2-d draws) and the figures ``bench_*.png``; `rebuild_report`
redraws the tables and figures of an earlier run.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from benchmarks._common import SamplerRun, Timing, log, machine_info, uptime, write_json
from benchmarks._paper.config import PAPER_RESULTS, BenchmarkSettings, get_target_config
from benchmarks._paper.metrics import evaluate_run, mode_statistics
from benchmarks._paper.names import DEFAULT_TARGETS, SAMPLERS
from benchmarks._paper.report import write_figures, write_markdown
from benchmarks._samplers import (
    L2HMCConfig,
    pick_best,
    run_chees,
    run_hmc_grid,
    run_l2hmc,
    run_nuts,
    train_l2hmc,
)
from l2hmc_ppl import TrainingHistory
from l2hmc_ppl.diagnostics import paper_ess
from l2hmc_ppl.targets import TARGET_NAMES, Target, get_target

__all__ = ["rebuild_report", "run_benchmark"]


def _training_summary(history: TrainingHistory, config: L2HMCConfig, timing: Timing) -> dict[str, Any]:
    tail = slice(-min(100, history.loss.shape[0]), None)
    summary = {
        "config": config.as_dict(),
        "describe": config.describe(),
        "timing": timing.as_dict(),
        "iterations_per_second": config.train.num_steps / timing.wall,
        "final_loss": float(np.mean(history.loss[tail])),
        "final_acceptance_rate": float(np.mean(history.acceptance_rate[tail])),
        "final_step_size": float(history.step_size[-1]),
        "num_skipped": history.num_skipped,
        "stop_reason": history.stop_reason,
        "loss_curve": np.asarray(history.loss).tolist()[:: max(1, history.loss.shape[0] // 250)],
    }
    if history.warm_start is not None:
        summary["warm_start_step_size"] = float(history.warm_start.step_size)
    return summary


def _grid_ess(run: SamplerRun, target: Target) -> float:
    """The paper's ESS per step of one grid run (NaN for non-finite draws)."""
    if not np.all(np.isfinite(run.samples)):
        return float("nan")
    return paper_ess(run.samples, target.mean, target.covariance)


def _benchmark_target(
    name: str,
    settings: BenchmarkSettings,
    rng_key,
    samplers: Sequence[str],
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """All samplers on one target; returns the JSON-ready results and the draws kept for figures."""
    target: Target = get_target(name)
    config = get_target_config(name)
    key_draws, key_paper, key_tuned, key_hmc, key_nuts_diag, key_nuts_dense, key_chees = jax.random.split(
        rng_key, 7
    )
    initial_positions = target.sample(key_draws, settings.num_chains)
    num_steps = settings.num_eval_steps
    logdensity_fn = target.logdensity_fn
    metrics: dict[str, Any] = {}
    kept: dict[str, np.ndarray] = {}

    def record(key: str, run: SamplerRun, **extra) -> None:
        metrics[key] = evaluate_run(run, target, max_lag_gradients=settings.max_lag_gradients) | extra
        if target.dim == 2:
            kept[key] = run.samples
        m = metrics[key]
        log(
            f"  {name}/{key}: ESS/step {m['ess_per_step']:.4g}, ESS/grad {m['ess_per_gradient']:.4g}, "
            f"bulk ESS/step {m['bulk_ess_per_step']:.4g}, grads/step {m['gradients_per_step']:.3g}, "
            f"accept {m['acceptance_rate']:.2f}, adapt {run.adaptation.wall:.1f}s, "
            f"sample {run.sampling.wall:.1f}s"
        )

    for label, key in (("paper", key_paper), ("tuned", key_tuned)):
        sampler = f"l2hmc_{label}"
        if sampler not in samplers:
            continue
        l2hmc_config = settings.apply(getattr(config, label))
        log(f"{name}: training L2HMC ({label}: {l2hmc_config.describe()})")
        key_train, key_start, key_sample = jax.random.split(key, 3)
        # The paper's training chains start from N(0, I), not from the target.
        training_positions = jax.random.normal(key_start, (settings.num_chains, target.dim))
        dynamics, history, timing = train_l2hmc(key_train, logdensity_fn, l2hmc_config, training_positions)
        run = run_l2hmc(key_sample, logdensity_fn, dynamics, initial_positions, num_steps)
        run.adaptation = timing
        record(sampler, run, training=_training_summary(history, l2hmc_config, timing))
        if label == "tuned" and "hmc_warm" in samplers and history.warm_start is not None:
            # What the learned heads add: the same sampler with S = Q = T = 0 and the warm start's ε
            # (its adaptation is the warm start inside the tuned training above).
            warm = dynamics.as_hmc_limit().with_step_size(history.warm_start.step_size)
            record("hmc_warm", run_l2hmc(key_sample, logdensity_fn, warm, initial_positions, num_steps))

    if "hmc" in samplers:
        num_leapfrog_steps = config.paper.num_leapfrog_steps
        step_sizes = settings.step_sizes(config.hmc_step_sizes)
        log(f"{name}: HMC, M={num_leapfrog_steps}, ε grid {step_sizes}")
        runs = run_hmc_grid(
            key_hmc,
            logdensity_fn,
            initial_positions,
            num_steps,
            num_leapfrog_steps=num_leapfrog_steps,
            step_sizes=step_sizes,
        )
        scores = [_grid_ess(run, target) for run in runs]
        grid = [
            {
                "step_size": run.details["step_size"],
                "ess_per_step": score,
                "acceptance_rate": run.acceptance_rate,
            }
            for run, score in zip(runs, scores, strict=True)
        ]
        best, best_run = pick_best(runs, scores)
        record("hmc", best_run, grid=grid, best_is_grid_edge=best in (0, len(runs) - 1))
        del runs

    for sampler, dense, key in (("nuts_diag", False, key_nuts_diag), ("nuts_dense", True, key_nuts_dense)):
        if sampler not in samplers:
            continue
        log(f"{name}: NUTS ({'dense' if dense else 'diagonal'} mass), {settings.num_nuts_warmup} warm-up")
        run = run_nuts(
            key,
            num_steps,
            logdensity_fn=logdensity_fn,
            initial_positions=initial_positions,
            dense_mass=dense,
            num_warmup=settings.num_nuts_warmup,
        )
        record(sampler, run)

    if "chees" in samplers:
        log(f"{name}: ChEES-HMC, {settings.num_chees_warmup} adaptation steps")
        run = run_chees(
            key_chees, logdensity_fn, initial_positions, num_steps, num_warmup=settings.num_chees_warmup
        )
        record("chees", run)

    paper = PAPER_RESULTS.get(name)
    result = {
        "description": target.description,
        "dim": target.dim,
        "paper": None if paper is None else dataclasses.asdict(paper),
        "samplers": metrics,
    }
    if target.dim == 2:
        kept["_exact"] = np.asarray(target.sample(jax.random.fold_in(key_draws, 1), 4000), np.float32)
    return result, kept


def run_benchmark(
    out_dir: str | os.PathLike,
    *,
    targets: Sequence[str] = DEFAULT_TARGETS,
    settings: BenchmarkSettings | None = None,
    samplers: Sequence[str] = SAMPLERS,
    seed: int = 0,
    command: str | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Run the benchmark and write ``results.md``, ``results.json`` and ``bench_*.png`` to ``out_dir``.

    After every target the results so far are written to ``results.json`` and the draws of the 2-d
    targets (for the figures) to ``samples.npz``, so that an interrupted run can be resumed.

    Args:
        out_dir: output folder (created if needed).
        targets: target names (see :func:`benchmarks._paper.config.get_target_config`).
        settings: run sizes; default :class:`BenchmarkSettings` (the paper's protocol).
        samplers: a subset of :data:`SAMPLERS`.
        seed: base seed; target ``name`` uses ``fold_in(key(seed), index of name)``, so a target's
            numbers do not depend on which other targets run.
        command: the command line, recorded in the outputs.
        resume: reuse the targets already in ``out_dir/results.json`` (a 2-d target only if its
            draws are in ``samples.npz``) from a run with the same settings and seed; they keep
            their own timings and load averages and are marked ``"resumed": true``.

    Returns:
        The results (the content of ``results.json``).
    """
    settings = BenchmarkSettings() if settings is None else settings
    unknown = [s for s in samplers if s not in SAMPLERS]
    if unknown:
        raise ValueError(f"unknown samplers {unknown}; choose from {', '.join(SAMPLERS)}")
    for name in targets:
        get_target_config(name)  # fail early on an unknown target
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results: dict[str, Any] = {
        "command": command,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": machine_info(),
        "settings": dataclasses.asdict(settings),
        "seed": seed,
        "samplers": list(samplers),
        "targets": {},
    }
    kept_samples: dict[str, dict[str, np.ndarray]] = {}
    previous, previous_samples = _previous_run(out_dir, results) if resume else ({}, {})
    base_key = jax.random.key(seed)
    for name in targets:
        if name in previous and (previous[name]["dim"] != 2 or name in previous_samples):
            log(f"== {name}: reusing the results in {out_dir / 'results.json'}")
            results["targets"][name] = previous[name] | {"resumed": True}
            kept_samples[name] = previous_samples.get(name, {})
            continue
        load_before = list(os.getloadavg())
        target_started = time.perf_counter()
        log(f"== {name} (load average {load_before[0]:.2f})")
        key = jax.random.fold_in(base_key, TARGET_NAMES.index(name))
        result, kept = _benchmark_target(name, settings, key, samplers)
        result["wall_seconds"] = time.perf_counter() - target_started
        result["load_average_before"] = load_before
        result["load_average_after"] = list(os.getloadavg())
        results["targets"][name] = result
        kept_samples[name] = kept
        log(f"== {name} done in {result['wall_seconds']:.0f}s")
        # Partial results survive an interrupted run.
        write_json(out_dir / "results.json", results)
        _write_samples(out_dir / "samples.npz", kept_samples)
    results["total_wall_seconds"] = time.perf_counter() - started
    results["machine"]["load_average_end"] = list(os.getloadavg())
    results["machine"]["uptime_end"] = uptime()
    write_json(out_dir / "results.json", results)
    write_markdown(results, out_dir / "results.md")
    write_figures(results, kept_samples, out_dir)
    log(f"wrote {out_dir}/results.md, results.json and figures in {results['total_wall_seconds']:.0f}s")
    return results


def rebuild_report(out_dir: str | os.PathLike) -> dict[str, Any]:
    """Rewrite ``results.md`` and the figures of an earlier run from ``results.json`` and ``samples.npz``.

    The mode statistics of the 2-d mixtures are recomputed from the saved draws (so a change to
    :func:`~benchmarks._paper.metrics.mode_statistics` reaches an existing run); nothing is
    sampled again.

    Args:
        out_dir: the ``--out`` folder of the run.

    Returns:
        The (updated) results.
    """
    out_dir = Path(out_dir)
    results = json.loads((out_dir / "results.json").read_text())
    _, samples = _previous_run(out_dir, results)
    for name, kept in samples.items():
        target = get_target(name)
        if target.modes is None or name not in results["targets"]:
            continue
        for key, draws in kept.items():
            metrics = results["targets"][name]["samplers"].get(key)
            if metrics is not None:
                metrics["modes"] = mode_statistics(draws, target.modes)
    write_json(out_dir / "results.json", results)
    write_markdown(results, out_dir / "results.md")
    write_figures(results, samples, out_dir)
    log(f"rewrote {out_dir}/results.md, results.json and the figures")
    return results


def _previous_run(out_dir: Path, results: dict[str, Any]):
    """Targets and 2-d draws of an earlier run in ``out_dir`` with the same settings, seed and samplers."""
    path = out_dir / "results.json"
    if not path.exists():
        return {}, {}
    previous = json.loads(path.read_text())
    for field in ("settings", "seed", "samplers"):
        if previous.get(field) != json.loads(json.dumps(results[field])):
            log(f"not resuming: {path} was made with other {field}")
            return {}, {}
    samples: dict[str, dict[str, np.ndarray]] = {}
    if (out_dir / "samples.npz").exists():
        with np.load(out_dir / "samples.npz") as archive:
            for key in archive.files:
                name, sampler = key.split("/", 1)
                samples.setdefault(name, {})[sampler] = archive[key]
    return previous["targets"], samples


def _write_samples(path: Path, kept_samples: dict[str, dict[str, np.ndarray]]) -> None:
    arrays = {f"{name}/{key}": value for name, kept in kept_samples.items() for key, value in kept.items()}
    np.savez_compressed(path, **arrays)
