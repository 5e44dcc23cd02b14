"""The DLGM example's modules on ``sys.path``, and the MNIST folder as a fixture.

The example's modules (``examples/dlgm/{model,training,ais,mnist}.py``) import each other by file
name, as they do when its script runs; the tests import them the same way. The MNIST folder is the
one named by ``L2HMC_PPL_MNIST``, which ``tests/conftest.py`` points at ``../shared/data/mnist``
beside the repository when it is not set.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "dlgm"
if str(EXAMPLE) not in sys.path:
    sys.path.insert(0, str(EXAMPLE))

from mnist import ENV_VAR, MNIST_FILES  # noqa: E402  (the example's module, found on the path above)


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The folder of the four MNIST files (``$L2HMC_PPL_MNIST``); skips the test without them."""
    folder = Path(os.environ.get(ENV_VAR, "") or "MNIST folder not set")
    names = [f"{stem}.gz" for pair in MNIST_FILES.values() for stem in pair]
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        pytest.skip(f"MNIST files {missing} not found in {folder}: set {ENV_VAR}")
    return folder


@pytest.fixture(scope="session")
def example_script() -> Path:
    """The example's script, ``examples/dlgm/dlgm_mnist.py``."""
    return EXAMPLE / "dlgm_mnist.py"
