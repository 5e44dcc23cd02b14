"""Saving and loading trained dynamics.

A file holds one line of JSON (format version, library version and the hyperparameters that fix the
architecture) followed by the weights in Equinox's leaf serialisation
(:func:`equinox.tree_serialise_leaves`). Loading rebuilds the architecture from the JSON and reads
the leaves into it, so the round trip is bit-exact.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp

from l2hmc_ppl.dynamics.dynamics import L2HMCDynamics

__all__ = ["FORMAT_VERSION", "load", "save"]

#: Bumped whenever the layout of the file or of :class:`L2HMCDynamics` changes.
FORMAT_VERSION = 1
_MAGIC = "l2hmc_ppl.dynamics"


def _hyperparameters(dynamics: L2HMCDynamics) -> dict:
    return {
        "dim": dynamics.dim,
        "num_leapfrog_steps": dynamics.num_leapfrog_steps,
        "hidden_size": dynamics.hidden_size,
        "num_hidden_layers": dynamics.num_hidden_layers,
        "aux_size": dynamics.aux_size,
        "dense_preconditioner": dynamics.dense_preconditioner,
        "dtype": jnp.dtype(dynamics.log_step_size.dtype).name,
    }


def _skeleton(hyperparameters: dict) -> L2HMCDynamics:
    """Dynamics with the right structure, shapes and dtypes (values are overwritten by the file)."""
    skeleton = L2HMCDynamics(
        hyperparameters["dim"],
        num_leapfrog_steps=hyperparameters["num_leapfrog_steps"],
        hidden_size=hyperparameters["hidden_size"],
        num_hidden_layers=hyperparameters["num_hidden_layers"],
        aux_size=hyperparameters["aux_size"],
        key=jax.random.key(0),
        dtype=jnp.dtype(hyperparameters["dtype"]),
    )
    if hyperparameters["dense_preconditioner"]:
        dim = hyperparameters["dim"]
        skeleton = skeleton.with_preconditioner(jnp.zeros(dim), jnp.eye(dim))
    return skeleton


def save(path: str | os.PathLike, dynamics: L2HMCDynamics) -> None:
    """Save ``dynamics`` (weights, masks, step size, preconditioner) to ``path``.

    Example:
        >>> save("scg.l2hmc", trained)
        >>> trained_again = load("scg.l2hmc")
    """
    from l2hmc_ppl import __version__

    header = {"format": _MAGIC, "format_version": FORMAT_VERSION, "library_version": __version__}
    header["hyperparameters"] = _hyperparameters(dynamics)
    with open(path, "wb") as file:
        file.write((json.dumps(header) + "\n").encode())
        eqx.tree_serialise_leaves(file, dynamics)


def load(path: str | os.PathLike, like: L2HMCDynamics | None = None) -> L2HMCDynamics:
    """Load dynamics saved by :func:`save`.

    Args:
        path: the file.
        like: optional dynamics the file must match in architecture (dimension, number of steps,
            network sizes, preconditioner type, dtype); a mismatch is an error naming the difference.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not an l2hmc_ppl dynamics file, a newer format, truncated or corrupted data, or
            an architecture different from ``like``.
    """
    path = Path(path)
    data = path.read_bytes()
    newline = data.find(b"\n")
    try:
        header = json.loads(data[:newline].decode()) if newline >= 0 else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        header = None
    if not isinstance(header, dict) or header.get("format") != _MAGIC:
        raise ValueError(f"{path} is not an l2hmc_ppl dynamics file (written by l2hmc_ppl.save)")
    if header.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path} has format version {header.get('format_version')}, this l2hmc_ppl reads "
            f"version {FORMAT_VERSION} (written by l2hmc_ppl {header.get('library_version')})"
        )
    hyperparameters = header["hyperparameters"]
    if like is not None:
        expected = _hyperparameters(like)
        different = {
            k: (hyperparameters.get(k), v) for k, v in expected.items() if hyperparameters.get(k) != v
        }
        if different:
            details = ", ".join(f"{k}: file has {f!r}, expected {e!r}" for k, (f, e) in different.items())
            raise ValueError(f"{path} holds dynamics of a different architecture ({details})")
    skeleton = _skeleton(hyperparameters)
    stream = io.BytesIO(data[newline + 1 :])
    try:
        dynamics = eqx.tree_deserialise_leaves(stream, skeleton)
    except Exception as error:  # numpy raises several types on short or garbled data
        raise ValueError(f"{path} is truncated or corrupted: {error}") from error
    if stream.read(1):
        raise ValueError(f"{path} has trailing data after the weights: corrupted or not matching the header")
    return dynamics
