"""What every benchmark script needs: timings with their compile share, run records, the machine, files.

- `Timing` and `Stopwatch`: wall, CPU and compile seconds of a phase (compile time from
  ``jax.monitoring`` events: tracing, lowering, XLA compilation).
- `SamplerRun`: the draws of one sampler with its gradient counts and timings (what the runners of
  `benchmarks._samplers` return).
- `machine_info`, `uptime`, `log`, `write_json`: the record of a run.
- `german_credit_dir`: where a script finds the German credit files (the library searches nowhere).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import numpy as np

__all__ = [
    "GERMAN_CREDIT_ENV_VAR",
    "REPO_ROOT",
    "SamplerRun",
    "Stopwatch",
    "Timing",
    "german_credit_dir",
    "log",
    "machine_info",
    "uptime",
    "write_json",
]

#: The repository root (the folder above ``benchmarks/``).
REPO_ROOT = Path(__file__).resolve().parents[1]

#: The environment variable that names the German credit folder (as the library reads it).
GERMAN_CREDIT_ENV_VAR = "L2HMC_PPL_GERMAN_CREDIT"

# --------------------------------------------------------------------------------------------------
# Timing, with the time JAX spends tracing, lowering and compiling

_COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)
_compile_seconds = 0.0
_listener_lock = threading.Lock()
_listener_registered = False


def _on_event_duration(event: str, duration: float, **_: Any) -> None:
    global _compile_seconds
    if event in _COMPILE_EVENTS:
        _compile_seconds += duration


def _ensure_listener() -> None:
    global _listener_registered
    with _listener_lock:
        if not _listener_registered:
            jax.monitoring.register_event_duration_secs_listener(_on_event_duration)
            _listener_registered = True


@dataclass
class Timing:
    """Wall-clock and process CPU seconds of a phase, and the part of the wall time spent compiling.

    Attributes:
        wall: elapsed seconds.
        cpu: CPU seconds of this process (all threads; exceeds ``wall`` when JAX uses several cores).
        compile: seconds JAX spent tracing, lowering and compiling (XLA) during the phase.
    """

    wall: float = 0.0
    cpu: float = 0.0
    compile: float = 0.0

    @property
    def run(self) -> float:
        """Wall seconds not spent compiling."""
        return max(0.0, self.wall - self.compile)

    def __add__(self, other: Timing) -> Timing:
        return Timing(self.wall + other.wall, self.cpu + other.cpu, self.compile + other.compile)

    def as_dict(self) -> dict[str, float]:
        """The timings as a JSON-ready dict (seconds), with ``run`` = wall − compile."""
        return {"wall": self.wall, "cpu": self.cpu, "compile": self.compile, "run": self.run}


class Stopwatch:
    """Context manager that measures a phase into a `Timing` (wall, CPU and compile seconds).

    Block on the phase's results inside the ``with`` (``jax.block_until_ready``): JAX dispatches
    asynchronously.

    Example:
        >>> with Stopwatch() as timing:
        ...     jax.block_until_ready(f(x))
        >>> timing.wall, timing.compile
    """

    def __init__(self):
        _ensure_listener()
        self.timing = Timing()

    def __enter__(self) -> Timing:
        self._wall = time.perf_counter()
        self._cpu = time.process_time()
        self._compile = _compile_seconds
        return self.timing

    def __exit__(self, *exc) -> None:
        self.timing.wall = time.perf_counter() - self._wall
        self.timing.cpu = time.process_time() - self._cpu
        self.timing.compile = _compile_seconds - self._compile


# --------------------------------------------------------------------------------------------------
# Results


@dataclass
class SamplerRun:
    """The output of one sampler: draws, gradient counts and timings.

    Attributes:
        samples: draws with leading axes ``(num_steps, num_chains)``: an array
            ``(num_steps, num_chains, dim)`` for a log density (float32 NumPy), or for a NumPyro
            model a dict ``{site: (num_steps, num_chains, ...)}`` of constrained values.
        gradients_per_step: mean gradient evaluations of log p per measured transition and chain.
        adaptation: timing of training / warm-up / adaptation (zero when there is none).
        sampling: timing of the measured transitions.
        acceptance_rate: mean acceptance probability (NUTS: its mean ``accept_prob``).
        adaptation_gradients: gradient evaluations of the adaptation, summed over chains, or
            ``None`` where they are not counted (L2HMC training).
        details: sampler-specific facts (adapted step size, M, mass matrix kind, ...).
    """

    samples: Any
    gradients_per_step: float
    adaptation: Timing
    sampling: Timing
    acceptance_rate: float
    adaptation_gradients: float | None = None
    details: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
# The record of a run


def log(message: str) -> None:
    """Print ``message`` to stderr with a ``[HH:MM:SS]`` stamp (progress of long runs)."""
    stamp = datetime.datetime.now().strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", file=sys.stderr, flush=True)


def uptime() -> str:
    """The output of ``uptime`` (load averages), or ``""`` where it is not available."""
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
    """The machine and software of a run.

    Returns:
        A JSON-ready dict: ``cpu``, ``cpu_count``, ``platform``, ``python``, ``jax``,
        ``jax_backend``, ``devices``, ``numpyro``, ``blackjax``, ``x64``, ``load_average`` and
        ``uptime``.
    """
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
        "uptime": uptime(),
    }


def _json_ready(value):
    if isinstance(value, float) and not np.isfinite(value):
        return None  # JSON has no NaN / inf
    if isinstance(value, np.generic):
        return _json_ready(value.item())
    if isinstance(value, np.ndarray):
        return _json_ready(value.tolist())
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    return value


def write_json(path: str | os.PathLike, payload: Any) -> None:
    """Write ``payload`` as indented JSON, with NumPy values as Python ones and NaN / inf as ``null``.

    Args:
        path: the file to write (replaced atomically, so an interrupted run keeps the last one).
        payload: dicts, lists, numbers, strings and NumPy scalars or arrays.
    """
    path = Path(path)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(_json_ready(payload), indent=1))
    os.replace(temporary, path)


def german_credit_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """A script's German credit folder: ``data_dir``, else ``$L2HMC_PPL_GERMAN_CREDIT``, else the default.

    The default, ``../shared/data/german_credit`` beside the repository, is this project's layout;
    the library knows no default and is always given the folder.

    Args:
        data_dir: the script's ``--data-dir`` argument, or ``None``.

    Returns:
        The folder to pass to ``l2hmc_ppl.targets.german_credit`` (not checked here: the library's
        error names the missing files).
    """
    if data_dir is not None:
        return Path(data_dir)
    if os.environ.get(GERMAN_CREDIT_ENV_VAR):
        return Path(os.environ[GERMAN_CREDIT_ENV_VAR])
    return REPO_ROOT.parent / "shared" / "data" / "german_credit"
