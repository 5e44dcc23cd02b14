"""JAX's persistent compilation cache, turned on in one call.

Most of the wall time of a short training on a CPU is XLA compiling the training step. JAX can keep
compiled programs on disk so that a second run of the same program, in a new process, loads them
instead of compiling again. The library never turns the cache on by itself (where compiled programs
go is the application's choice); the example and benchmark scripts call
[`enable_compilation_cache`][l2hmc_ppl.enable_compilation_cache] first thing.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

__all__ = ["DEFAULT_COMPILATION_CACHE", "enable_compilation_cache"]

#: Where [`enable_compilation_cache`][l2hmc_ppl.enable_compilation_cache] keeps the programs by default.
DEFAULT_COMPILATION_CACHE = (
    Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "l2hmc_ppl" / "jax"
)


def enable_compilation_cache(folder: str | os.PathLike | None = None) -> Path:
    """Keep every compiled program in ``folder``, so that the next run of the program compiles nothing.

    Call it before anything is compiled. JAX's defaults cache only programs that took a second or
    more to compile; this caches every program, however small or quick, because a second run should
    compile nothing at all (it still traces the Python functions, which is quick). The cache is keyed
    by the program, the JAX version and the device: a change in any of them compiles afresh, and stale
    entries are harmless. Delete the folder to reclaim its disk space.

    Args:
        folder: the cache folder, created if missing; default
            [`DEFAULT_COMPILATION_CACHE`][l2hmc_ppl.cache.DEFAULT_COMPILATION_CACHE]
            (``$XDG_CACHE_HOME/l2hmc_ppl/jax``, else ``~/.cache/l2hmc_ppl/jax``).

    Returns:
        The folder in use.

    Raises:
        TypeError: ``folder`` is not a path.
        ValueError: ``folder`` exists and is not a folder.
    """
    if folder is None:
        folder = DEFAULT_COMPILATION_CACHE
    if not isinstance(folder, (str, os.PathLike)) or (isinstance(folder, str) and not folder):
        raise TypeError(f"folder must be a non-empty path (str or os.PathLike) or None, got {folder!r}")
    path = Path(folder).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(f"folder={str(path)!r} exists and is not a folder; pass a folder for the cache")
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    return path
