"""A CI-sized subset of the development suite (``benchmarks/suite.py``): L2HMC's defaults, through
NumPyro, on three real posteriors with gold-standard reference moments, and BlackJAX's own
univariate-normal test target through ``l2hmc_adaptation``.

Each run is checked as the suite checks it: the means and the sds within ``Z_THRESHOLD`` combined
Monte Carlo standard errors of the reference (the sd's MCSE from the ESS of the centred squares),
with enough ESS for the check to mean something. The same check must fail on a deliberately broken
kernel (order-one heads with the log-determinant dropped). The full suite, with NUTS and ChEES beside
L2HMC, is ``python benchmarks/suite.py`` (``docs/benchmarks.md``).
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from benchmarks import _suite
from benchmarks.suite_targets import get_target
from l2hmc_ppl import L2HMCDynamics
from tests.conftest import DATA_ROOT, needs_posteriordb
from tests.mutants import dropped_log_det, randomize_heads
from tests.stats import MIN_ESS, Z_THRESHOLD

SMALL = dict(num_chains=2, num_warmup=300, num_samples=1000)


def _check(row: dict, name: str) -> None:
    assert "aborted" not in row, f"{name}: {row.get('aborted')}"
    assert row["min_ess"] > MIN_ESS, f"{name}: did not mix (min ESS {row['min_ess']:.0f})"
    assert row["max_z_mean"] < Z_THRESHOLD, (
        f"{name}: means {row['max_z_mean']:.2f} MCSE off ({row['z_scores']})"
    )
    assert row["max_z_sd"] < Z_THRESHOLD, f"{name}: sds {row['max_z_sd']:.2f} MCSE off ({row['z_scores']})"


@needs_posteriordb
@pytest.mark.parametrize("name", ["kidscore_interaction", "eight_schools_noncentered", "arK"])
def test_default_l2hmc_matches_the_reference_posterior(name):
    target = get_target(name, DATA_ROOT)
    row = _suite.run("l2hmc_numpyro", target, seed=0, l2hmc_options={}, **SMALL)
    _check(row, name)


@needs_posteriordb
def test_the_check_fails_on_a_broken_kernel():
    target = get_target("kidscore_interaction", DATA_ROOT)
    # kidscore_interaction has 5 unconstrained coordinates: four coefficients and log sigma.
    dynamics = randomize_heads(
        L2HMCDynamics(5, num_leapfrog_steps=5, key=jax.random.key(0)), jax.random.key(1), scale=0.5
    ).with_step_size(0.05)
    options = dict(dynamics=dynamics, integrator=dropped_log_det)
    row = _suite.run("l2hmc_numpyro", target, seed=0, l2hmc_options=options, **SMALL)
    assert "aborted" not in row, row.get("aborted")
    assert max(row["max_z_mean"], row["max_z_sd"]) > Z_THRESHOLD, (
        f"the log-det mutant passed: means {row['max_z_mean']:.2f}, sds {row['max_z_sd']:.2f} MCSE off"
    )


def test_blackjax_univariate_normal_trains_and_samples():
    """BlackJAX's own test target, N(1, 2²) on a scalar position, through l2hmc_adaptation + l2hmc."""
    target = get_target("blackjax_univariate_normal", None)
    row = _suite.run("l2hmc_blackjax", target, seed=0, l2hmc_options={}, **SMALL)
    _check(row, target.name)
    assert np.isfinite(row["ess_per_gradient"])


def test_a_resumed_table_reports_a_statistic_that_could_not_be_computed(tmp_path):
    """R̂ of a model with no coordinates is NaN in the run and null in results.json; rewriting the
    table from the file (``--resume``) reports it as missing and the row as not passing."""
    row = dict(
        target="empty", group="g", sampler="nuts", max_z_mean=0.0, max_z_sd=0.0, max_rhat=float("nan"),
        divergences=0, min_ess=float("nan"), ess_per_gradient=float("nan"), ess_per_second_sampling=None,
        ess_per_second_total=None, seconds_warmup=1.0,
    )  # fmt: skip
    good = dict(row, target="fine", max_rhat=1.001, min_ess=900.0, ess_per_gradient=0.1)
    mine = dict(row, sampler="l2hmc_numpyro")
    rows = {"empty/nuts": row, "empty/l2hmc_numpyro": mine, "fine/nuts": good}
    _suite.write_results(tmp_path, {"rows": rows})
    table = _suite.markdown(_suite.load_results(tmp_path))
    cells = [line.split("|")[1:-1] for line in table.splitlines() if line.startswith("| ")]
    lines = {(c[0].strip(), c[2].strip()): "|".join(c) for c in cells if len(c) == 13}
    assert lines["empty", "nuts"].endswith(" NO ") and " — " in lines["empty", "nuts"]
    assert lines["fine", "nuts"].endswith(" yes ")
    assert "| empty | — | — |" in table  # the L2HMC/NUTS ratios of the missing statistics
