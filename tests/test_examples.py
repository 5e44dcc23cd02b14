"""The example scripts answer ``--help`` at once, and document every option with its default.

Each script parses its arguments before it imports JAX, NumPyro, BlackJAX or ``l2hmc_ppl`` (tens of
seconds on a loaded CPU), so ``--help`` and a mistyped option come back immediately. The runs
themselves are tested elsewhere (``tests/test_dlgm.py`` runs ``dlgm_mnist.py --smoke``).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "examples").glob("*.py"))
HEAVY_MODULES = ("jax", "numpyro", "blackjax", "equinox", "arviz", "matplotlib", "l2hmc_ppl")
TIMEOUT_S = 60  # generous: on an idle machine --help takes well under a second


def declared_options(path: Path) -> list[tuple[list[str], bool]]:
    """Each ``add_argument`` call of the script: its option strings, and whether it has help text."""
    options = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument":
            names = [arg.value for arg in node.args if isinstance(arg, ast.Constant)]
            has_help = any(
                kw.arg == "help" and not (isinstance(kw.value, ast.Constant) and not kw.value.value)
                for kw in node.keywords
            )
            options.append((names, has_help))
    return options


def _env() -> dict[str, str]:
    return dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        COLUMNS="200",
    )


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_help_lists_every_option_with_its_default(path: Path):
    options = declared_options(path)
    assert options, f"{path.name} declares no options"
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, str(path), "--help"],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    seconds = time.perf_counter() - start
    print(f"{path.name} --help: {seconds:.2f} s")
    assert result.returncode == 0, result.stderr[-3000:]
    text = result.stdout
    for names, has_help in options:
        assert has_help, f"{path.name}: {names} has no help text"
        for name in names:
            assert name in text, f"{path.name} --help does not list {name}:\n{text}"
    # ArgumentDefaultsHelpFormatter: one "(default: ...)" per option with help text
    assert text.count("(default:") == len(options), text


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_help_comes_before_the_heavy_imports(path: Path):
    script = (
        "import runpy, sys\n"
        f"sys.argv = [{str(path)!r}, '--help']\n"
        "try:\n"
        f"    runpy.run_path({str(path)!r}, run_name='__main__')\n"
        "    code = 'no exit'\n"
        "except SystemExit as exit:\n"
        "    code = exit.code\n"
        f"heavy = sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules)\n"
        "print('RESULT', code, heavy)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "RESULT 0 []", result.stdout[-2000:]
