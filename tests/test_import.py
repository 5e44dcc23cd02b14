"""`import l2hmc_ppl` loads the algorithm only: no NumPyro, BlackJAX, ArviZ or matplotlib."""

import subprocess
import sys

import pytest

PROBE = """
import sys
import l2hmc_ppl
heavy = [name for name in ("numpyro", "blackjax", "arviz", "matplotlib") if name in sys.modules]
print("LOADED", ",".join(heavy))
assert callable(l2hmc_ppl.train) and callable(l2hmc_ppl.build_kernel) and callable(l2hmc_ppl.load)
"""


def test_import_loads_no_adapter_and_no_plotting_library():
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "LOADED", result.stdout


PROBE_KERNEL = "import sys, l2hmc_ppl; l2hmc_ppl.L2HMCKernel; print('numpyro' in sys.modules)"


def test_the_numpyro_kernel_is_imported_on_first_use():
    result = subprocess.run(
        [sys.executable, "-c", PROBE_KERNEL],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "True"


ADAPTERS = [("l2hmc_ppl.numpyro", "numpyro"), ("l2hmc_ppl.blackjax", "blackjax")]


@pytest.mark.parametrize(("module", "extra"), ADAPTERS)
def test_a_missing_adapter_dependency_names_the_extra(module, extra):
    """With the dependency hidden, importing the adapter says which extra to install."""
    probe = f"""
import sys
sys.modules[{extra!r}] = None  # as if not installed
try:
    import {module}
except ImportError as error:
    print("MESSAGE", error)
"""
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert f"pip install l2hmc_ppl[{extra}]" in result.stdout, result.stdout + result.stderr[-2000:]
