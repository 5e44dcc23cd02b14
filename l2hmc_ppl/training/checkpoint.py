"""Checkpoints of a training run: the whole [`TrainState`][l2hmc_ppl.TrainState], written atomically.

A checkpoint file holds one line of JSON (format, version, the iteration, and the dynamics' M and
preconditioner kind) followed by the leaves of the state in Equinox's serialisation, written with
[`atomic_write`][l2hmc_ppl.training.atomic_write], so an interrupted or failed
write never leaves a truncated file at the path. Loading needs a state of the same structure
(``like``): the training that wrote it, rebuilt from the same inputs, provides one.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import equinox as eqx
import jax

from l2hmc_ppl.training.serialisation import atomic_write
from l2hmc_ppl.training.step import TrainState

__all__ = ["load_train_state", "read_checkpoint_header", "save_train_state"]

_MAGIC = "l2hmc_ppl.train_state"
_FORMAT_VERSION = 1
_MAX_HEADER_BYTES = 4096


def _is_typed_key(key) -> bool:
    return jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)


def save_train_state(path: str | os.PathLike, state: TrainState) -> None:
    """Write ``state`` to ``path`` atomically (a checkpoint; see the module docstring)."""
    if not isinstance(state, TrainState):
        raise TypeError(f"state must be a TrainState, got {type(state).__name__}")
    key = state.rng_key
    storable = state._replace(rng_key=jax.random.key_data(key) if _is_typed_key(key) else key)
    header = {
        "format": _MAGIC,
        "format_version": _FORMAT_VERSION,
        "step": int(state.step),
        # what a training must know to rebuild the state's structure before reading it
        "num_leapfrog_steps": state.dynamics.num_leapfrog_steps,
        "dense_preconditioner": state.dynamics.dense_preconditioner,
    }

    def write(file):
        file.write((json.dumps(header) + "\n").encode())
        eqx.tree_serialise_leaves(file, storable)

    atomic_write(path, write)


def read_checkpoint_header(path: str | os.PathLike) -> dict:
    """The JSON header of a checkpoint (format, iteration, the dynamics' M and metric kind).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a checkpoint, or another format version.
    """
    path = Path(path)
    with open(path, "rb") as file:
        line = file.readline(_MAX_HEADER_BYTES)
    try:
        header = json.loads(line.decode()) if line.endswith(b"\n") else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        header = None
    if not isinstance(header, dict) or header.get("format") != _MAGIC:
        raise ValueError(f"{path} is not an l2hmc_ppl training checkpoint (written by save_train_state)")
    if header.get("format_version") != _FORMAT_VERSION:
        raise ValueError(
            f"{path} has checkpoint format version {header.get('format_version')!r}, this l2hmc_ppl "
            f"reads version {_FORMAT_VERSION}"
        )
    return header


def load_train_state(path: str | os.PathLike, like: TrainState) -> TrainState:
    """Read a checkpoint written by [`save_train_state`][l2hmc_ppl.training.save_train_state].

    Args:
        path: the file.
        like: a state of the same structure, shapes and dtypes (e.g. the initial state of the
            same training).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a checkpoint, another format version, or a state of another structure.
    """
    path = Path(path)
    read_checkpoint_header(path)
    data = path.read_bytes()
    newline = data.find(b"\n")
    typed_key = _is_typed_key(like.rng_key)
    template = like._replace(rng_key=jax.random.key_data(like.rng_key) if typed_key else like.rng_key)
    stream = io.BytesIO(data[newline + 1 :])
    try:
        state = eqx.tree_deserialise_leaves(stream, template)
    except Exception as error:  # numpy and equinox raise several types on short or foreign data
        raise ValueError(
            f"{path} does not hold a training state of this structure (another target dimension, "
            f"number of chains, optimizer or dynamics architecture?), or is corrupted: {error}"
        ) from error
    if stream.read(1):
        raise ValueError(
            f"{path} has trailing data after the training state: corrupted or of another structure"
        )
    if typed_key:
        state = state._replace(
            rng_key=jax.random.wrap_key_data(state.rng_key, impl=jax.random.key_impl(like.rng_key))
        )
    return state
