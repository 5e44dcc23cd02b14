"""Shared test configuration.

The whole suite runs in float64 so that exact properties (invertibility, log-determinants, the HMC
limit) can be checked to ~1e-10; float32 is exercised explicitly where it matters.

The data sets live beside the repository (``../shared/data``); the library never looks there, so
the tests point its environment variables at them (unless they are set already).

Compiling dominates the suite's time, and many tests compile the same program from a fresh closure
(a new target object, a doc block or a script in its own process). So one run of the suite keeps
JAX's persistent compilation cache in a fresh temporary folder, shared by the pytest-xdist workers
and every subprocess they start, and deleted when the run ends: each program is compiled once per
run, never carried over from an earlier run. A cache hit still counts as a compilation in
``jax.monitoring`` (the backend-compile event wraps the cache lookup), so the tests that count
compilations see every program that was built again. Entries are read and written under a file
lock (the cache's size limit turns it on), so two workers never see a half-written entry.

Each compiled program keeps its machine code mapped into the process (about two memory mappings per
program), and Linux caps a process at ``vm.max_map_count`` mappings (65 530 by default). A worker
of this suite compiles tens of thousands of programs: without the step below one reached 65 247
mappings late in a run and died with a segmentation fault inside jaxlib's serialisation of the next
program (one test module alone adds about 34 000). So after any test that leaves the process with
more than ``MAX_MAPPINGS`` mappings, JAX's in-memory caches are emptied; a later test that needs a
program again loads it from the persistent cache.
"""

import gc
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import jax
import pytest

jax.config.update("jax_enable_x64", True)

DATA_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data"
#: Marks a test that reads the posteriordb posteriors (skipped, saying why, where they are absent).
needs_posteriordb = pytest.mark.skipif(
    not (DATA_ROOT / "posteriordb").is_dir(), reason=f"the posteriordb data are not in {DATA_ROOT}"
)
for variable, folder in (("L2HMC_PPL_GERMAN_CREDIT", "german_credit"), ("L2HMC_PPL_MNIST", "mnist")):
    if not os.environ.get(variable) and (DATA_ROOT / folder).is_dir():
        os.environ[variable] = str(DATA_ROOT / folder)

# The first process of a run (pytest itself, before it starts any xdist worker) makes the folder;
# the workers and the subprocesses inherit it through the environment. Without `filelock` (an
# environment installed before the dev extra had it) the run compiles everything, as it used to:
# JAX would warn on every cache access.
_CACHE_VARIABLE = "L2HMC_PPL_TEST_COMPILATION_CACHE"
_OWNS_CACHE = _CACHE_VARIABLE not in os.environ and importlib.util.find_spec("filelock") is not None
if _OWNS_CACHE:
    os.environ[_CACHE_VARIABLE] = tempfile.mkdtemp(prefix="l2hmc_ppl-test-jax-cache-")
if os.environ.get(_CACHE_VARIABLE):
    _CACHE_SETTINGS = {
        "jax_compilation_cache_dir": os.environ[_CACHE_VARIABLE],
        "jax_persistent_cache_min_compile_time_secs": 0.0,  # every program, however quick to compile
        "jax_persistent_cache_min_entry_size_bytes": -1,
        "jax_compilation_cache_max_size": 8 * 2**30,  # a size limit makes JAX lock the folder
    }
    for _name, _value in _CACHE_SETTINGS.items():
        jax.config.update(_name, _value)
        os.environ[_name.upper()] = str(_value)  # for the subprocesses (doc blocks, scripts)


def pytest_unconfigure(config):
    if _OWNS_CACHE:  # pytest itself, not a worker (workers inherit the variable, so never own it)
        shutil.rmtree(os.environ[_CACHE_VARIABLE], ignore_errors=True)


#: Empty JAX's in-memory caches once a process holds this many memory mappings (see above).
MAX_MAPPINGS = 20_000


def _num_mappings() -> int | None:
    """The memory mappings of this process (Linux), or None where /proc/self/maps does not exist."""
    try:
        with open("/proc/self/maps", "rb") as maps:
            return sum(1 for _ in maps)
    except OSError:
        return None


@pytest.fixture(autouse=True)
def _release_compiled_programs():
    """After a test, drop the compiled programs if the process is running short of mappings."""
    yield
    mappings = _num_mappings()
    if mappings is not None and mappings > MAX_MAPPINGS:
        jax.clear_caches()
        gc.collect()  # the executables, and their mappings, go when the last reference does
