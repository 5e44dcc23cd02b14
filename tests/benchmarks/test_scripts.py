"""The scripts of ``benchmarks/``: ``--help`` answers before JAX loads; the library never imports them."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(
    path
    for path in (REPO / "benchmarks").glob("*.py")
    if not path.name.startswith("_") and 'if __name__ == "__main__"' in path.read_text()
)

# Runs a script as `python script --help` would, then reports whether JAX was imported.
_HELP_PROBE = """
import runpy, sys
sys.argv = [sys.argv[1], "--help"]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as exit:
    assert exit.code in (0, None), exit.code
print("jax imported" if "jax" in sys.modules else "no jax")
"""


def test_scripts_are_found():
    assert {"paper.py", "kernel_speed.py", "numpyro_vs_nuts.py"} <= {path.name for path in SCRIPTS}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_help_needs_no_jax(script):
    completed = subprocess.run(
        [sys.executable, "-c", _HELP_PROBE, str(script)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "usage:" in completed.stdout
    assert completed.stdout.strip().endswith("no jax")


def test_library_never_imports_the_benchmarks():
    for path in (REPO / "l2hmc_ppl").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(name.split(".")[0] == "benchmarks" for name in names), path
