"""``enable_compilation_cache``: a second process compiles nothing, and a bad folder is refused."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import l2hmc_ppl

REPO = Path(__file__).resolve().parents[1]

# Turns the cache on in the given folder, compiles one small program, and reports the XLA
# programs JAX compiled (and wrote to the cache) and those it loaded from the cache instead.
_SCRIPT = """
import json, sys
import jax, jax.numpy as jnp
import l2hmc_ppl
compiled, loaded = [], []
def on_duration(event, duration, **_):
    if event == "/jax/compilation_cache/compile_time_saved_sec":
        loaded.append(event)
def on_event(event, **_):
    if event == "/jax/compilation_cache/cache_misses":
        compiled.append(event)
jax.monitoring.register_event_duration_secs_listener(on_duration)
jax.monitoring.register_event_listener(on_event)
folder = l2hmc_ppl.enable_compilation_cache(sys.argv[1])
value = jax.jit(lambda x: jnp.sum(jnp.sin(x) ** 2))(jnp.arange(5.0))
report = {"folder": str(folder), "compiled": len(compiled), "loaded": len(loaded), "value": float(value)}
print(json.dumps(report))
"""


def _run(folder: Path) -> dict:
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    # Without the test run's own cache settings (tests/conftest.py): only the function under test
    # may turn the cache on.
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("JAX_COMPILATION_CACHE", "JAX_PERSISTENT_CACHE"))
    }
    env["PYTHONPATH"] = path
    result = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(folder)], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_second_run_loads_every_program_instead_of_compiling(tmp_path):
    folder = tmp_path / "new" / "cache"  # created, parents included
    first = _run(folder)
    assert first["folder"] == str(folder) and folder.is_dir()
    assert first["compiled"] > 0 and first["loaded"] == 0
    second = _run(folder)
    assert second["compiled"] == 0 and second["loaded"] == first["compiled"]
    assert second["value"] == first["value"]


@pytest.mark.parametrize(
    ("folder", "error", "message"),
    [
        ("", TypeError, "folder must be a non-empty path"),
        (3, TypeError, "folder must be a non-empty path"),
        ("FILE", ValueError, "exists and is not a folder"),
    ],
)
def test_a_bad_folder_is_refused(tmp_path, folder, error, message):
    if folder == "FILE":
        folder = tmp_path / "a_file"
        folder.write_text("not a folder")
    with pytest.raises(error, match=message):
        l2hmc_ppl.enable_compilation_cache(folder)
