"""The benchmark command: ``--quick`` end to end (a smoke test), the tables, the figures, the metrics."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from l2hmc_ppl.benchmarks import (
    DEFAULT_TARGETS,
    EXTRA_TARGETS,
    SAMPLERS,
    BenchmarkSettings,
    SamplerRun,
    Timing,
    evaluate_run,
    get_target_config,
    markdown_tables,
    quick_settings,
    resolve_targets,
    write_figures,
    write_markdown,
)
from l2hmc_ppl.benchmarks.config import QUICK_TARGETS
from l2hmc_ppl.targets import get_target

REPO = Path(__file__).resolve().parents[1]


def _markdown_tables(text: str) -> list[list[list[str]]]:
    """Every pipe table of ``text`` as a list of rows of cells (header first, separator dropped)."""
    tables, current = [], []
    for line in text.splitlines():
        if line.startswith("|"):
            current.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif current:
            tables.append(current)
            current = []
    if current:
        tables.append(current)
    parsed = []
    for table in tables:
        assert len(table) >= 2 and all(set(cell) <= {"-", ":"} for cell in table[1]), table[:2]
        parsed.append([table[0]] + table[2:])
    return parsed


def _check_tables(text: str) -> list[list[list[str]]]:
    tables = _markdown_tables(text)
    assert tables
    for table in tables:
        width = len(table[0])
        assert all(len(row) == width for row in table), table
    return tables


@pytest.mark.slow
def test_quick_run_writes_results(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("JAX_ENABLE_X64", None)
    completed = subprocess.run(
        [sys.executable, "-m", "l2hmc_ppl.benchmarks", "--quick", "--out", str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    for name in ("results.md", "results.json", "bench_autocorrelation.png", "bench_samples.png"):
        assert (tmp_path / name).stat().st_size > 0, name

    results = json.loads((tmp_path / "results.json").read_text())
    assert results["settings"]["quick"] is True
    assert list(results["targets"]) == ["scg"]
    samplers = results["targets"]["scg"]["samplers"]
    assert list(samplers) == list(SAMPLERS)
    for metrics in samplers.values():
        assert metrics["gradients_per_step"] > 0
        assert metrics["timing"]["sampling"]["wall"] > 0
    assert samplers["l2hmc_paper"]["gradients_per_step"] == 10
    assert samplers["nuts_dense"]["details"]["dense_mass"] is True

    tables = _check_tables((tmp_path / "results.md").read_text())
    main_table = tables[0]
    assert main_table[0][:3] == ["target", "sampler", "grad/step"]
    assert [row[1] for row in main_table[1:]] == [
        "L2HMC (paper)",
        "L2HMC (tuned)",
        "HMC (warm start)",
        "HMC (best ε)",
        "NUTS (diag)",
        "NUTS (dense)",
        "ChEES-HMC",
    ]
    # The ESS columns are numbers.
    for row in main_table[1:]:
        float(row[main_table[0].index("ESS/step")])
        float(row[main_table[0].index("ESS/grad")])


def _fake_run(samples, gradients_per_step=10.0, **details):
    return SamplerRun(
        samples=np.asarray(samples, np.float32),
        gradients_per_step=gradients_per_step,
        adaptation=Timing(1.0, 1.0, 0.5),
        sampling=Timing(2.0, 2.0, 1.0),
        acceptance_rate=0.9,
        details=details,
    )


def test_second_moment_ess_exposes_an_antithetic_chain():
    # x_{t+1} = −x_t + small noise: the paper's ESS (first moment, truncated at the first ρ_t < 0.05)
    # is the maximal 1 per step, while |x| hardly moves, which the second-moment ESS shows.
    target = get_target("scg")
    rng = np.random.default_rng(0)
    start = rng.multivariate_normal(target.mean, target.covariance, size=64)
    steps = [start]
    for _ in range(399):
        steps.append(-steps[-1] * 0.999 + 0.02 * rng.standard_normal(start.shape))
    metrics = evaluate_run(_fake_run(np.stack(steps), 1.0), target, max_lag_gradients=20)
    assert metrics["ess_per_step"] == pytest.approx(1.0)
    assert metrics["second_moment_ess_per_step"] < 0.05
    assert metrics["robust_ess_per_gradient"] == metrics["second_moment_ess_per_step"]


def test_independent_draws_have_ess_near_one():
    target = get_target("mog")
    samples = np.asarray(target.sample(jax.random.key(0), 300 * 64)).reshape(300, 64, 2)
    metrics = evaluate_run(_fake_run(samples, 2.0), target, max_lag_gradients=20)
    # ρ₁ of independent draws is ~0 ± 0.007 here, below the 0.05 cut: the estimator gives exactly 1.
    assert metrics["ess_per_step"] == 1.0
    assert metrics["second_moment_ess_per_step"] == 1.0
    assert metrics["ess_per_gradient"] == pytest.approx(metrics["ess_per_step"] / 2)
    assert metrics["modes"]["chains_visiting_all_modes"] == 64
    assert len(metrics["autocorrelation"]["rho"]) == 11


def test_settings_caps_and_grid():
    settings = quick_settings()
    config = settings.apply(get_target_config("mog").paper)
    assert config.num_train_steps == settings.max_train_steps
    # The annealing keeps its shape: T reaches 1 at the same fraction of training.
    full = get_target_config("mog").paper

    def steps_to_reach_one(config):
        initial, rate, every = config.annealing
        return every * np.log(initial) / -np.log(rate) / config.num_train_steps

    assert steps_to_reach_one(config) == pytest.approx(steps_to_reach_one(full))
    grid = get_target_config("scg").hmc_step_sizes
    assert settings.step_sizes(grid) == (grid[0], grid[-1])
    assert BenchmarkSettings().step_sizes(grid) == grid
    assert BenchmarkSettings().apply(full) == full
    with pytest.raises(ValueError, match="no benchmark configuration"):
        get_target_config("banana")


def test_target_groups_resolve_to_configured_targets():
    assert resolve_targets(None) == DEFAULT_TARGETS
    assert resolve_targets("", quick=True) == QUICK_TARGETS
    assert resolve_targets("scg, extra,ring") == ("scg",) + EXTRA_TARGETS
    assert resolve_targets("all") == DEFAULT_TARGETS + EXTRA_TARGETS
    for name in DEFAULT_TARGETS + EXTRA_TARGETS:
        config = get_target_config(name)
        assert config.name == name and config.hmc_step_sizes
        # Every target of the protocol starts its chains from exact draws.
        assert get_target(name).sample is not None


def _synthetic_results():
    settings = BenchmarkSettings(num_chains=8, num_eval_steps=50, max_lag_gradients=100)
    results = {
        "command": "test",
        "date": "today",
        "machine": {
            "cpu": "cpu",
            "cpu_count": 2,
            "jax": "0",
            "jax_backend": "cpu",
            "devices": ["cpu"],
            "numpyro": "0",
            "blackjax": "0",
            "python": "3",
            "x64": False,
            "load_average": [1.0, 1.0, 1.0],
        },
        "settings": dataclasses.asdict(settings),
        "seed": 0,
        "targets": {},
    }
    kept_all = {}
    for name in ("scg", "mog"):
        target = get_target(name)
        draws = np.asarray(target.sample(jax.random.key(1), 50 * 8)).reshape(50, 8, 2)
        samplers, kept = {}, {"_exact": draws.reshape(-1, 2)}
        for key in SAMPLERS:
            details = {"step_size": 0.1, "num_leapfrog_steps": 10}
            if key.startswith("nuts"):
                details = {"num_warmup": 10, "median_step_size": 0.1}
            elif key == "chees":
                details = {"num_warmup": 10, "step_size": 0.1, "mean_num_leapfrog_steps": 5.0}
            metrics = evaluate_run(_fake_run(draws, **details), target, max_lag_gradients=100)
            if key.startswith("l2hmc"):
                metrics["training"] = {
                    "describe": "M=10",
                    "config": {"num_train_steps": 5},
                    "timing": {"wall": 1.0, "cpu": 1.0, "compile": 0.5},
                    "iterations_per_second": 5.0,
                    "final_acceptance_rate": 0.9,
                    "final_step_size": 0.1,
                    "num_skipped": 0,
                }
            if key == "hmc":
                metrics["grid"] = [{"step_size": 0.1, "ess_per_step": 0.5, "acceptance_rate": 0.9}]
            samplers[key] = metrics
            kept[key] = draws
        results["targets"][name] = {"paper": {"l2hmc": 0.5, "hmc": 0.01, "hmc_is_upper_bound": False}}
        results["targets"][name]["samplers"] = samplers
        kept_all[name] = kept
    return results, kept_all


def test_tables_and_figures_from_synthetic_results(tmp_path):
    results, kept = _synthetic_results()
    tables = _check_tables(markdown_tables(results))
    assert len(tables) == 6  # ESS, two ratio tables, modes, HMC grid, training
    assert len(tables[0]) == 1 + 2 * len(SAMPLERS)
    write_markdown(results, tmp_path / "results.md")
    assert (tmp_path / "results.md").read_text().startswith("# L2HMC benchmark results")
    paths = write_figures(results, kept, tmp_path)
    assert {p.name for p in paths} == {"bench_autocorrelation.png", "bench_traces.png", "bench_samples.png"}
    assert all(p.stat().st_size > 0 for p in paths)


def test_mode_statistics_counts_core_visits_only():
    from l2hmc_ppl.benchmarks.metrics import mode_statistics

    modes = np.array([[5.0, 0.0], [-5.0, 0.0]])
    steps = np.zeros((6, 3, 2))
    steps[:, 0, 0] = [5, 4, -0.5, 3, 5, 5]  # strays past the midpoint: not a visit of (−5, 0)
    steps[:, 1, 0] = [5, 0, -5, 0, 5, -5]  # three switches
    steps[:, 2, 0] = [-5, -5, -5, -5, -5, -5]
    stats = mode_statistics(steps, modes)
    assert stats["core_radius"] == pytest.approx(2.5)
    assert stats["chains_visiting_all_modes"] == 1
    assert stats["chains_switching"] == 1
    assert stats["mean_switches_per_chain"] == pytest.approx(1.0)
    assert stats["min_switches_per_chain"] == 0


def test_report_only_rebuilds_from_saved_results(tmp_path):
    from l2hmc_ppl.benchmarks.run import _write_json, _write_samples, rebuild_report

    results, kept = _synthetic_results()
    results["samplers"] = list(SAMPLERS)
    del results["targets"]["mog"]["samplers"]["hmc"]["modes"]
    _write_json(tmp_path / "results.json", results)
    _write_samples(tmp_path / "samples.npz", kept)
    rebuilt = rebuild_report(tmp_path)
    assert "modes" in rebuilt["targets"]["mog"]["samplers"]["hmc"]
    _check_tables((tmp_path / "results.md").read_text())
    assert (tmp_path / "bench_traces.png").stat().st_size > 0
