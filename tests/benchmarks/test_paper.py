"""The paper benchmark (``benchmarks/paper.py``): the quick run end to end, the report, the metrics.

The helpers live outside the installed package, in ``benchmarks/``; they are imported as
``benchmarks._...`` from the repository root, which pytest puts on ``sys.path`` (as for ``tests``).
"""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from benchmarks._common import SamplerRun, Timing, write_json
from benchmarks._paper.config import BenchmarkSettings, get_target_config, quick_settings
from benchmarks._paper.metrics import evaluate_run, mode_statistics
from benchmarks._paper.names import (
    DEFAULT_TARGETS,
    EXTRA_TARGETS,
    QUICK_TARGETS,
    SAMPLERS,
    resolve_targets,
)
from benchmarks._paper.report import markdown_tables, write_figures, write_markdown
from benchmarks._paper.run import _write_samples, rebuild_report
from benchmarks._samplers import annealing_parameters
from l2hmc_ppl import diagnostics
from l2hmc_ppl.targets import get_target
from tests.stats import MIN_ESS, Z_THRESHOLD, moment_z_scores

REPO = Path(__file__).resolve().parents[2]


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


def _run_script(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("JAX_ENABLE_X64", None)
    return subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "paper.py"), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.mark.slow
def test_quick_run_writes_results_and_report_only_rebuilds_them(tmp_path):
    completed = _run_script("--quick", "--out", str(tmp_path))
    assert completed.returncode == 0, completed.stderr[-4000:]
    outputs = ("results.md", "results.json", "samples.npz", "bench_autocorrelation.png", "bench_samples.png")
    for name in outputs:
        assert (tmp_path / name).stat().st_size > 0, name

    results = json.loads((tmp_path / "results.json").read_text())
    assert results["settings"]["quick"] is True
    assert results["command"].startswith("python benchmarks/paper.py --quick")
    assert list(results["targets"]) == list(QUICK_TARGETS)
    samplers = results["targets"]["scg"]["samplers"]
    assert list(samplers) == list(SAMPLERS)
    for metrics in samplers.values():
        assert metrics["gradients_per_step"] > 0
        assert metrics["timing"]["sampling"]["wall"] > 0
    assert samplers["l2hmc_paper"]["gradients_per_step"] == 10
    paper_training = samplers["l2hmc_paper"]["training"]["config"]["train"]
    assert paper_training["objective"] == "paper" and paper_training["warm_start"] is False
    assert samplers["l2hmc_tuned"]["training"]["config"]["train"]["warm_start"] is True
    assert samplers["nuts_dense"]["details"]["dense_mass"] is True
    for baseline in ("hmc", "nuts_diag", "nuts_dense", "chees"):
        assert samplers[baseline]["adaptation_gradients"] > 0, baseline

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
    for row in main_table[1:]:  # the ESS columns are numbers
        float(row[main_table[0].index("ESS/step")])
        float(row[main_table[0].index("ESS/grad")])

    # --report-only redraws the same tables from the files, sampling nothing.
    (tmp_path / "results.md").unlink()
    completed = _run_script("--report-only", "--out", str(tmp_path))
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert _check_tables((tmp_path / "results.md").read_text()) == tables


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
    samples = np.stack(steps)
    metrics = evaluate_run(_fake_run(samples, 1.0), target, max_lag_gradients=20)
    assert metrics["ess_per_step"] == pytest.approx(1.0)
    # All chains together hold fewer effective draws of (x − μ)² than the floor of a mixed chain.
    assert metrics["second_moment_ess_per_step"] * samples.shape[0] * samples.shape[1] < MIN_ESS
    assert metrics["robust_ess_per_gradient"] == metrics["second_moment_ess_per_step"]


def _lag_one_z(centred: np.ndarray) -> float:
    """z of the lag-1 products of centred iid series (steps, chains, dim): uncorrelated, mean 0."""
    products = np.sum(centred[1:] * centred[:-1], axis=-1).reshape(-1, 1)
    mean_z, _ = moment_z_scores(products, 0.0, products.var())
    return float(mean_z[0])


def test_independent_draws_have_ess_one():
    target = get_target("mog")
    samples = np.asarray(target.sample(jax.random.key(0), 300 * 64), np.float64).reshape(300, 64, 2)
    metrics = evaluate_run(_fake_run(samples, 2.0), target, max_lag_gradients=20)
    rho = metrics["autocorrelation"]["rho"]
    assert len(rho) == 11
    # ρ₁ of independent draws is 0 within its standard error; below the estimator's 0.05 cut the
    # paper's ESS is exactly 1 per step, for x and for (x − μ)².
    assert abs(_lag_one_z(samples - target.mean)) < Z_THRESHOLD
    squared = (samples - target.mean) ** 2
    assert abs(_lag_one_z(squared - np.diag(target.covariance))) < Z_THRESHOLD
    assert rho[1] < 0.05
    assert metrics["ess_per_step"] == 1.0
    assert metrics["second_moment_ess_per_step"] == 1.0
    assert metrics["ess_per_gradient"] == pytest.approx(metrics["ess_per_step"] / 2)
    assert metrics["modes"]["chains_visiting_all_modes"] == 64


def test_mode_statistics_counts_core_visits_only():
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


def test_mode_statistics_agree_with_the_library_inside_the_cores():
    # Draws that never leave the cores: the core counts are the library's nearest-mode counts.
    target = get_target("mog6")
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 6, size=(50, 8))
    labels[:, 0] = 2  # a chain that stays in one mode
    steps = target.modes[labels] + 0.1 * rng.standard_normal((50, 8, 2))
    stats = mode_statistics(steps, target.modes)
    switches = diagnostics.mode_switches(steps, target.modes)
    assert stats["chains_visiting_all_modes"] == diagnostics.chains_visiting_all_modes(steps, target.modes)
    assert stats["mean_switches_per_chain"] == pytest.approx(switches.mean())
    assert stats["min_switches_per_chain"] == switches.min() == 0


def test_settings_caps_and_grid():
    settings = quick_settings()
    full = get_target_config("mog").paper
    config = settings.apply(full)
    assert config.train.num_steps == settings.max_train_steps
    # The annealing keeps its shape: T reaches 1 at the same fraction of training.

    def fraction_to_reach_one(config):
        initial, final, rate, every = annealing_parameters(config.train.temperature_schedule)
        return every * np.log(initial / final) / -np.log(rate) / config.train.num_steps

    assert fraction_to_reach_one(config) == pytest.approx(fraction_to_reach_one(full))
    grid = get_target_config("scg").hmc_step_sizes
    assert settings.step_sizes(grid) == (grid[0], grid[-1])
    assert BenchmarkSettings().step_sizes(grid) == grid
    assert BenchmarkSettings().apply(full) == full
    with pytest.raises(ValueError, match="no benchmark configuration"):
        get_target_config("banana")


def test_configurations_are_train_configs():
    # The paper-faithful runs: the paper's objective and λ², no warm start, the trained sampler
    # kept; the tuned ones add the warm start, or on targets with barriers a hotter anneal.
    for name in DEFAULT_TARGETS + EXTRA_TARGETS:
        config = get_target_config(name)
        paper = config.paper.train
        assert (paper.objective, paper.resolved_loss_scale, paper.warm_start) == ("paper", 0.1, False)
        assert paper.num_steps == 5000 and not paper.keep_best
        tuned = config.tuned.train
        assert tuned.warm_start == (tuned.temperature_schedule is None)
        assert config.paper.describe() and json.dumps(config.tuned.as_dict())
    assert get_target_config("scg").tuned.train.dense_mass


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
        "samplers": list(SAMPLERS),
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
                    "config": get_target_config(name).paper.as_dict(),
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


def test_report_only_rebuilds_from_saved_results(tmp_path):
    results, kept = _synthetic_results()
    del results["targets"]["mog"]["samplers"]["hmc"]["modes"]
    write_json(tmp_path / "results.json", results)
    _write_samples(tmp_path / "samples.npz", kept)
    rebuilt = rebuild_report(tmp_path)
    assert rebuilt["targets"]["mog"]["samplers"]["hmc"]["modes"] == mode_statistics(
        kept["mog"]["hmc"], get_target("mog").modes
    )
    _check_tables((tmp_path / "results.md").read_text())
    assert (tmp_path / "bench_traces.png").stat().st_size > 0
