"""Run the head-to-head benchmark: ``python -m l2hmc_ppl.benchmarks [--targets ...] [--quick] [--out DIR]``.

For each target: train L2HMC with the paper's settings and with the tuned configuration (warm start,
per-target M), then evaluate every sampler with the paper's protocol (the same exact draws as
starting points, the same number of measured transitions): the two L2HMC samplers, HMC with the
paper's M and the best ε of a grid, NumPyro NUTS with diagonal and with dense mass adaptation, and
BlackJAX ChEES-HMC. Writes ``results.md`` (tables), ``results.json`` (everything, including the
autocorrelation curves and the HMC grid) and the figures ``bench_*.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from l2hmc_ppl.benchmarks.config import (
    DEFAULT_TARGETS,
    EXTRA_TARGETS,
    PAPER_RESULTS,
    QUICK_TARGETS,
    BenchmarkSettings,
    L2HMCConfig,
    get_target_config,
    quick_settings,
)
from l2hmc_ppl.benchmarks.metrics import evaluate_run, mode_statistics
from l2hmc_ppl.benchmarks.report import write_figures, write_markdown
from l2hmc_ppl.benchmarks.samplers import (
    SamplerRun,
    sample_chees,
    sample_hmc,
    sample_l2hmc,
    sample_nuts,
    train_l2hmc,
)
from l2hmc_ppl.targets import TARGET_NAMES, Target, get_target

__all__ = ["SAMPLERS", "machine_info", "main", "rebuild_report", "run_benchmark"]

#: Sampler keys, in table order.
SAMPLERS: tuple[str, ...] = (
    "l2hmc_paper",
    "l2hmc_tuned",
    "hmc_warm",
    "hmc",
    "nuts_diag",
    "nuts_dense",
    "chees",
)


def _log(message: str) -> None:
    stamp = datetime.datetime.now().strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", file=sys.stderr, flush=True)


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def machine_info() -> dict[str, Any]:
    """The machine and software a run used (CPU, cores, devices, versions, load)."""
    import blackjax
    import numpyro

    return {
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jax_backend": jax.default_backend(),
        "devices": [str(device) for device in jax.devices()],
        "numpyro": numpyro.__version__,
        "blackjax": blackjax.__version__,
        "x64": bool(jax.config.jax_enable_x64),
        "load_average": list(os.getloadavg()),
        "uptime": _uptime(),
    }


def _training_summary(history, config: L2HMCConfig, timing) -> dict[str, Any]:
    tail = slice(-min(100, history.loss.shape[0]), None)
    summary = {
        "config": dataclasses.asdict(config),
        "describe": config.describe(),
        "timing": timing.as_dict(),
        "iterations_per_second": config.num_train_steps / timing.wall,
        "final_loss": float(np.mean(history.loss[tail])),
        "final_acceptance_rate": float(np.mean(history.acceptance_rate[tail])),
        "final_step_size": float(history.step_size[-1]),
        "num_skipped": history.num_skipped,
        "loss_curve": np.asarray(history.loss).tolist()[:: max(1, history.loss.shape[0] // 250)],
    }
    if history.warm_start is not None:
        summary["warm_start_step_size"] = float(history.warm_start.step_size)
    return summary


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
    metrics: dict[str, Any] = {}
    kept: dict[str, np.ndarray] = {}

    def record(key: str, run: SamplerRun, **extra) -> None:
        metrics[key] = evaluate_run(run, target, max_lag_gradients=settings.max_lag_gradients) | extra
        if target.dim == 2:
            kept[key] = run.samples
        m = metrics[key]
        _log(
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
        _log(f"{name}: training L2HMC ({label}: {l2hmc_config.describe()})")
        key_train, key_sample = jax.random.split(key)
        dynamics, history, timing = train_l2hmc(key_train, target, l2hmc_config, settings.num_chains)
        run = sample_l2hmc(key_sample, target, dynamics, initial_positions, num_steps)
        run.adaptation = timing
        record(sampler, run, training=_training_summary(history, l2hmc_config, timing))
        if label == "tuned" and "hmc_warm" in samplers and history.warm_start is not None:
            # What the learned heads add: the same sampler with S = Q = T = 0 and the warm start's ε
            # (its adaptation is the warm start inside the tuned training above).
            warm = dynamics.as_hmc_limit().with_step_size(history.warm_start.step_size)
            run = sample_l2hmc(key_sample, target, warm, initial_positions, num_steps)
            record("hmc_warm", run)

    if "hmc" in samplers:
        num_leapfrog_steps = config.paper.num_leapfrog_steps
        step_sizes = settings.step_sizes(config.hmc_step_sizes)
        _log(f"{name}: HMC, M={num_leapfrog_steps}, ε grid {step_sizes}")
        runs = sample_hmc(
            key_hmc,
            target,
            initial_positions,
            num_steps,
            num_leapfrog_steps=num_leapfrog_steps,
            step_sizes=step_sizes,
        )
        grid = []
        for run in runs:
            ess = evaluate_run(run, target, max_lag_gradients=1)["ess_per_step"]
            grid.append(
                {
                    "step_size": run.details["step_size"],
                    "ess_per_step": ess,
                    "acceptance_rate": run.acceptance_rate,
                }
            )
        scores = [g["ess_per_step"] if np.isfinite(g["ess_per_step"]) else -1.0 for g in grid]
        best = int(np.argmax(scores))
        best_run = runs[best]
        # The grid search is HMC's tuning: its cost (all but the chosen run) is its adaptation time.
        for index, run in enumerate(runs):
            if index != best:
                best_run.adaptation = best_run.adaptation + run.sampling
        record("hmc", best_run, grid=grid, best_is_grid_edge=best in (0, len(runs) - 1))
        del runs

    for sampler, dense, key in (("nuts_diag", False, key_nuts_diag), ("nuts_dense", True, key_nuts_dense)):
        if sampler not in samplers:
            continue
        _log(f"{name}: NUTS ({'dense' if dense else 'diagonal'} mass), {settings.num_nuts_warmup} warm-up")
        run = sample_nuts(
            key, target, initial_positions, num_steps, dense_mass=dense, num_warmup=settings.num_nuts_warmup
        )
        record(sampler, run)

    if "chees" in samplers:
        _log(f"{name}: ChEES-HMC, {settings.num_chees_warmup} adaptation steps")
        run = sample_chees(
            key_chees, target, initial_positions, num_steps, num_warmup=settings.num_chees_warmup
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
        targets: target names (see :func:`l2hmc_ppl.benchmarks.config.get_target_config`).
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
            _log(f"== {name}: reusing the results in {out_dir / 'results.json'}")
            results["targets"][name] = previous[name] | {"resumed": True}
            kept_samples[name] = previous_samples.get(name, {})
            continue
        load_before = list(os.getloadavg())
        target_started = time.perf_counter()
        _log(f"== {name} (load average {load_before[0]:.2f})")
        key = jax.random.fold_in(base_key, TARGET_NAMES.index(name))
        result, kept = _benchmark_target(name, settings, key, samplers)
        result["wall_seconds"] = time.perf_counter() - target_started
        result["load_average_before"] = load_before
        result["load_average_after"] = list(os.getloadavg())
        results["targets"][name] = result
        kept_samples[name] = kept
        _log(f"== {name} done in {result['wall_seconds']:.0f}s")
        # Partial results survive an interrupted run.
        _write_json(out_dir / "results.json", results)
        _write_samples(out_dir / "samples.npz", kept_samples)
    results["total_wall_seconds"] = time.perf_counter() - started
    results["machine"]["load_average_end"] = list(os.getloadavg())
    results["machine"]["uptime_end"] = _uptime()
    _write_json(out_dir / "results.json", results)
    write_markdown(results, out_dir / "results.md")
    write_figures(results, kept_samples, out_dir)
    _log(f"wrote {out_dir}/results.md, results.json and figures in {results['total_wall_seconds']:.0f}s")
    return results


def rebuild_report(out_dir: str | os.PathLike) -> dict[str, Any]:
    """Rewrite ``results.md`` and the figures of an earlier run from ``results.json`` and ``samples.npz``.

    The mode statistics of the 2-d mixtures are recomputed from the saved draws (so a change to
    :func:`~l2hmc_ppl.benchmarks.metrics.mode_statistics` reaches an existing run); nothing is
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
    _write_json(out_dir / "results.json", results)
    write_markdown(results, out_dir / "results.md")
    write_figures(results, samples, out_dir)
    _log(f"rewrote {out_dir}/results.md, results.json and the figures")
    return results


def _previous_run(out_dir: Path, results: dict[str, Any]):
    """Targets and 2-d draws of an earlier run in ``out_dir`` with the same settings, seed and samplers."""
    path = out_dir / "results.json"
    if not path.exists():
        return {}, {}
    previous = json.loads(path.read_text())
    for field in ("settings", "seed", "samplers"):
        if previous.get(field) != json.loads(json.dumps(results[field])):
            _log(f"not resuming: {path} was made with other {field}")
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


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value)}")


def _write_json(path: Path, results: dict[str, Any]) -> None:
    def clean(value):
        if isinstance(value, float) and not np.isfinite(value):
            return None  # JSON has no NaN / inf
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        return value

    path.write_text(json.dumps(clean(results), indent=1, default=_json_default))


def resolve_targets(spec: str | None, *, quick: bool = False) -> tuple[str, ...]:
    """The target names of a ``--targets`` value, in order and without repeats.

    ``None`` or an empty value gives :data:`DEFAULT_TARGETS` (:data:`QUICK_TARGETS` with ``quick``);
    ``extra`` stands for :data:`EXTRA_TARGETS` and ``all`` for both groups.

    Example:
        >>> resolve_targets("scg,extra")[:3]
        ('scg', 'scg_notebook', 'ring')
    """
    names = [name.strip() for name in (spec or "").split(",") if name.strip()]
    if not names:
        return QUICK_TARGETS if quick else DEFAULT_TARGETS
    groups = {"extra": EXTRA_TARGETS, "all": DEFAULT_TARGETS + EXTRA_TARGETS}
    return tuple(dict.fromkeys(target for name in names for target in groups.get(name, (name,))))


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m l2hmc_ppl.benchmarks",
        description="L2HMC against HMC, NUTS and ChEES-HMC with the paper's protocol (ESS per MH step "
        "and per gradient evaluation).",
    )
    parser.add_argument(
        "--targets",
        default=None,
        help=f"comma-separated targets (default: {','.join(DEFAULT_TARGETS)}; with --quick: "
        f"{','.join(QUICK_TARGETS)}); 'extra' stands for {','.join(EXTRA_TARGETS)} and 'all' for both",
    )
    parser.add_argument("--quick", action="store_true", help="smoke test: tiny runs, results not meaningful")
    parser.add_argument(
        "--out", default="benchmark_results", help="output folder (default: benchmark_results)"
    )
    parser.add_argument("--seed", type=int, default=0, help="base seed (default: 0)")
    parser.add_argument(
        "--samplers", default=",".join(SAMPLERS), help=f"comma-separated subset of {','.join(SAMPLERS)}"
    )
    parser.add_argument("--num-chains", type=int, default=None, help="chains per sampler (default: 200)")
    parser.add_argument(
        "--num-eval-steps", type=int, default=None, help="measured transitions per chain (default: 2000)"
    )
    parser.add_argument(
        "--max-train-steps", type=int, default=None, help="cap on L2HMC training iterations (default: none)"
    )
    parser.add_argument(
        "--resume", action="store_true", help="reuse the targets already in --out from an interrupted run"
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="only rewrite results.md and the figures in --out from its results.json and samples.npz",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status.

    Example:
        >>> main(["--quick", "--out", "/tmp/bench"])
    """
    args = _parse_args(argv)
    if args.report_only:
        rebuild_report(args.out)
        return 0
    settings = quick_settings() if args.quick else BenchmarkSettings()
    overrides = {
        "num_chains": args.num_chains,
        "num_eval_steps": args.num_eval_steps,
        "max_train_steps": args.max_train_steps,
    }
    settings = dataclasses.replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    targets = resolve_targets(args.targets, quick=args.quick)
    samplers = tuple(s.strip() for s in args.samplers.split(",") if s.strip())
    argv_list = sys.argv[1:] if argv is None else list(argv)
    command = shlex.join(["python", "-m", "l2hmc_ppl.benchmarks", *argv_list])
    run_benchmark(
        args.out,
        targets=targets,
        settings=settings,
        samplers=samplers,
        seed=args.seed,
        command=command,
        resume=args.resume,
    )
    return 0
