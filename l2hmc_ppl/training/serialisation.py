"""Saving and loading trained dynamics.

A dynamics file holds two parts:

1. One line of JSON (at most ``MAX_HEADER_BYTES``): the format name and version, the version of
   l2hmc_ppl that wrote it, and the hyperparameters that fix the architecture: ``dim``,
   ``num_leapfrog_steps``, ``hidden_size``, ``num_hidden_layers``, ``aux_size``,
   ``dense_preconditioner`` and ``dtype``.
2. Every array of the [`L2HMCDynamics`][l2hmc_ppl.L2HMCDynamics] in Equinox's leaf serialisation
   (``equinox.tree_serialise_leaves``): one ``.npy`` record (a short header giving dtype and
   shape, then the raw bytes) per array, in pytree order.

[`save`][l2hmc_ppl.save] checks the dynamics before writing anything (a single ``L2HMCDynamics``,
not a batch of them, whose arrays have the shapes and dtypes its hyperparameters imply) and writes
atomically ([`atomic_write`][l2hmc_ppl.training.atomic_write]): the file at ``path`` is either the
old file or the complete new one, never a truncated mix, even if the process dies or the disk fills
up during the write.

[`load`][l2hmc_ppl.load] treats the file as untrusted input and checks, before it allocates any
weights:

* the header: the format name and version (1 or 2; a version-1 file, written before the step-size
  jitter existed, loads with a jitter of 0), and every hyperparameter present, of the right type
  and in range;
* the size: the shapes the header implies are computed without building them
  (``jax.eval_shape``), and their bytes must fit in the file and under ``MAX_WEIGHT_BYTES``;
* every ``.npy`` record header (shape, dtype, memory order) against the array it should hold,
  before that array's bytes are read; boolean data must be 0 or 1; nothing may follow the last record.

So a file can make [`load`][l2hmc_ppl.load] allocate at most about its own size. It never
unpickles: records are parsed with numpy's ``.npy`` header reader and read with
``numpy.frombuffer`` as the expected plain dtype (``numpy.load`` is not used). The round trip is bit-exact.

A damaged file raises ``ValueError`` whose message starts with the path, except in two cases
where [`load`][l2hmc_ppl.load] returns dynamics of the saved architecture: damage confined to the bytes of
floating-point weights or of mask entries kept 0 or 1 (the weights differ: the format carries no
checksum), or to bytes of the JSON line that do not change its meaning (whitespace, the library
version; the weights are then exact).

Caps (module constants, read at each call):

* ``MAX_HEADER_BYTES`` = 4096: length of the JSON line, newline included.
* ``MAX_SIZE`` = ``2**30``: largest ``dim``, ``num_leapfrog_steps``, ``hidden_size`` and ``aux_size``
  (keeps every shape within 32-bit indexing).
* ``MAX_HIDDEN_LAYERS`` = 32: largest ``num_hidden_layers`` (computing the shapes costs a few ms
  per layer).
* ``MAX_WEIGHT_BYTES`` = ``2**31`` (2 GiB): total bytes of the arrays. [`save`][l2hmc_ppl.save]
  refuses the same hyperparameters that [`load`][l2hmc_ppl.load] refuses, so that every saved file
  can be loaded.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpy.lib.format as npy_format

from l2hmc_ppl.dynamics.dynamics import L2HMCDynamics

__all__ = [
    "FORMAT_VERSION",
    "MAX_HEADER_BYTES",
    "MAX_HIDDEN_LAYERS",
    "MAX_SIZE",
    "MAX_WEIGHT_BYTES",
    "atomic_write",
    "load",
    "save",
]

#: Bumped whenever the layout of the file or of `L2HMCDynamics` changes. Version 2 added the
#: step-size jitter; files of version 1 still load (with a jitter of 0, the kernel they were saved with).
FORMAT_VERSION = 2
_READABLE_VERSIONS = (1, 2)
_ADDED_IN_VERSION_2 = ".step_size_jitter"
#: Longest header line, newline included; a file without a newline this early is not ours.
MAX_HEADER_BYTES = 4096
#: Largest ``dim``, ``num_leapfrog_steps``, ``hidden_size`` and ``aux_size`` a file may give.
MAX_SIZE = 2**30
#: Largest ``num_hidden_layers`` a file may give.
MAX_HIDDEN_LAYERS = 32
#: Largest total size in bytes of the arrays of a file (npy record headers not counted).
MAX_WEIGHT_BYTES = 2**31

_MAGIC = "l2hmc_ppl.dynamics"
_DTYPES = ("float16", "bfloat16", "float32", "float64")
_MAX_RECORD_HEADER = 1024  # our .npy record headers are about 120 characters


# ------------------------------------------------------------------------------------------------
# Atomic writing
def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Write a file so that ``path`` holds either its old content or the complete new one.

    ``write(file)`` writes the content to a temporary file in the same folder (a hidden name
    starting with ``.<name>.``); the file is then flushed to disk (``os.fsync``) and moved over
    ``path`` in one step (``os.replace``). On any error or interrupt, including a full disk, the
    temporary file is removed, ``path`` is left untouched and the error propagates. A symbolic
    link at ``path`` is written through, as ``open(path, "wb")`` would. A new file gets the usual
    permissions (``0o666`` less the umask).

    Args:
        path: the file to create or replace.
        write: called once with a binary file open for writing.
    """
    target = Path(os.path.realpath(path))
    temporary = target.with_name(f".{target.name[:200]}.{secrets.token_hex(8)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(descriptor, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_directory(target.parent)


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable (POSIX); best effort, as some file systems refuse it."""
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


# ------------------------------------------------------------------------------------------------
# Hyperparameters and the architecture they imply
def _is_size(value, low: int = 1, high: int | None = None) -> bool:
    return type(value) is int and low <= value <= (MAX_SIZE if high is None else high)


def _field_rules() -> dict[str, tuple[Callable[[object], bool], str]]:
    """For each hyperparameter: a test of its value and a description of the expected values."""
    size = (_is_size, f"an integer from 1 to {MAX_SIZE}")
    return {
        "dim": size,
        "num_leapfrog_steps": size,
        "hidden_size": size,
        "num_hidden_layers": (
            lambda v: _is_size(v, 0, MAX_HIDDEN_LAYERS),
            f"an integer from 0 to {MAX_HIDDEN_LAYERS}",
        ),
        "aux_size": (lambda v: v is None or _is_size(v), f"null or an integer from 1 to {MAX_SIZE}"),
        "dense_preconditioner": (lambda v: type(v) is bool, "true or false"),
        "dtype": (lambda v: isinstance(v, str) and v in _DTYPES, "one of " + ", ".join(_DTYPES)),
    }


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _check_hyperparameters(hyperparameters, where: str) -> dict:
    """Return ``hyperparameters`` if it has every field, each valid; else a ValueError from ``where``."""
    if not isinstance(hyperparameters, dict):
        value = _short(hyperparameters)
        raise ValueError(f"{where}: header field 'hyperparameters' is {value}, expected an object")
    rules = _field_rules()
    unexpected = sorted(set(hyperparameters) - set(rules))
    if unexpected:
        raise ValueError(f"{where}: header has unexpected field(s) hyperparameters.{unexpected}")
    for name, (is_valid, expected) in rules.items():
        if name not in hyperparameters:
            raise ValueError(f"{where}: header field hyperparameters.{name} is missing (expected {expected})")
        if not is_valid(hyperparameters[name]):
            value = _short(hyperparameters[name])
            raise ValueError(f"{where}: header field hyperparameters.{name} is {value}, expected {expected}")
    return hyperparameters


def _hyperparameters(dynamics: L2HMCDynamics) -> dict:
    return {
        "dim": dynamics.dim,
        "num_leapfrog_steps": dynamics.num_leapfrog_steps,
        "hidden_size": dynamics.hidden_size,
        "num_hidden_layers": dynamics.num_hidden_layers,
        "aux_size": dynamics.aux_size,
        "dense_preconditioner": dynamics.dense_preconditioner,
        "dtype": jnp.result_type(dynamics.position_net.embed_first.weight).name,
    }


def _describe(hyperparameters: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in hyperparameters.items())


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


@functools.lru_cache(maxsize=32)
def _abstract_leaves(items: tuple) -> tuple[jax.tree_util.PyTreeDef, tuple]:
    """Treedef and ``(name, ShapeDtypeStruct)`` per array of the skeleton, without allocating it."""
    abstract = eqx.filter_eval_shape(_skeleton, dict(items))
    leaves, treedef = jax.tree_util.tree_flatten_with_path(abstract)
    return treedef, tuple((jax.tree_util.keystr(key), leaf) for key, leaf in leaves)


def _expected_leaves(hyperparameters: dict) -> tuple[jax.tree_util.PyTreeDef, tuple]:
    return _abstract_leaves(tuple(sorted(hyperparameters.items())))


def _nbytes(leaf) -> int:
    return math.prod(leaf.shape) * np.dtype(leaf.dtype).itemsize


def _weight_bytes(expected: tuple) -> int:
    return sum(_nbytes(leaf) for _, leaf in expected)


def _check_weight_cap(where: str, hyperparameters: dict, expected: tuple) -> None:
    if _weight_bytes(expected) > MAX_WEIGHT_BYTES:
        raise ValueError(
            f"{where}: the arrays of dynamics ({_describe(hyperparameters)}) take {_weight_bytes(expected)} "
            f"bytes, more than l2hmc_ppl.training.serialisation.MAX_WEIGHT_BYTES = {MAX_WEIGHT_BYTES}"
        )


def _stored_dtype(dtype) -> np.dtype:
    """The dtype of the ``.npy`` record of an array: bfloat16 is stored as 2-byte void ('V2')."""
    return np.dtype("V2") if dtype == jnp.bfloat16 else np.dtype(dtype)


def _spelled(dtype, shape) -> str:
    return f"{'bfloat16' if dtype == np.dtype('V2') else np.dtype(dtype).name}{list(shape)}"


# ------------------------------------------------------------------------------------------------
# Saving
def _check_savable(where: str, dynamics) -> dict:
    """The hyperparameters of ``dynamics`` once its arrays are checked against them."""
    if not isinstance(dynamics, L2HMCDynamics):
        raise TypeError(f"{where}: expected an l2hmc_ppl.L2HMCDynamics, got {type(dynamics).__name__}")
    batch_shape = jnp.shape(dynamics.log_step_size)
    if batch_shape:
        raise ValueError(
            f"{where}: these are batched dynamics (every array has leading axes {batch_shape}, e.g. the "
            "state of a vectorized run with one dynamics per chain); save one of them, e.g. chain i: "
            "jax.tree_util.tree_map(lambda x: x[i], dynamics)"
        )
    hyperparameters = _check_hyperparameters(_hyperparameters(dynamics), where)
    treedef, expected = _expected_leaves(hyperparameters)
    _check_weight_cap(where, hyperparameters, expected)
    architecture = f"L2HMCDynamics({_describe(hyperparameters)})"
    leaves, actual_treedef = jax.tree_util.tree_flatten(dynamics)
    if actual_treedef != treedef:
        raise ValueError(f"{where}: the dynamics do not have the structure of {architecture}")
    for leaf, (name, want) in zip(leaves, expected, strict=True):
        is_array = isinstance(leaf, jax.Array | np.ndarray)
        if not (is_array and (leaf.shape, leaf.dtype) == (want.shape, want.dtype)):
            got = _spelled(leaf.dtype, leaf.shape) if hasattr(leaf, "shape") else type(leaf).__name__
            raise ValueError(
                f"{where}: {name} is {got}, expected an array {_spelled(want.dtype, want.shape)} for "
                f"{architecture}"
            )
    return hyperparameters


def save(path: str | os.PathLike, dynamics: L2HMCDynamics) -> None:
    """Save ``dynamics`` (weights, masks, step size, preconditioner) to ``path``, atomically.

    Args:
        path: the file; replaced in one step (see [`atomic_write`][l2hmc_ppl.training.atomic_write]).
        dynamics: one ``L2HMCDynamics``. For batched dynamics (a leading axis on every array, e.g.
            one per chain) save one of them: ``jax.tree_util.tree_map(lambda x: x[i], dynamics)``.

    Raises:
        TypeError: ``dynamics`` is not an ``L2HMCDynamics``.
        ValueError: batched dynamics, arrays that do not match the architecture, or
            hyperparameters over the caps of this module (nothing is written).
        OSError: the file could not be written (the previous file, if any, is left untouched).

    Example:
        >>> save("scg.l2hmc", trained)
        >>> trained_again = load("scg.l2hmc")
    """
    from l2hmc_ppl import __version__

    hyperparameters = _check_savable(f"cannot save to {path}", dynamics)
    header = {"format": _MAGIC, "format_version": FORMAT_VERSION, "library_version": __version__}
    header["hyperparameters"] = hyperparameters
    line = (json.dumps(header) + "\n").encode()

    def write(file: BinaryIO) -> None:
        file.write(line)
        eqx.tree_serialise_leaves(file, dynamics)

    atomic_write(path, write)


# ------------------------------------------------------------------------------------------------
# Loading
def _open_regular_file(path: Path) -> BinaryIO:
    mode = os.stat(path).st_mode  # FileNotFoundError for a missing file
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(f"{path} is a directory, not an l2hmc_ppl dynamics file")
    if not stat.S_ISREG(mode):  # a FIFO or a device could block or never end
        raise ValueError(f"{path} is not a regular file, so not an l2hmc_ppl dynamics file")
    return open(path, "rb")


def _read_header(path: Path, file: BinaryIO) -> dict:
    """The checked header line: our format, our version, valid hyperparameters."""
    line = file.readline(MAX_HEADER_BYTES)
    if not line:
        raise ValueError(f"{path} is empty, not an l2hmc_ppl dynamics file (written by l2hmc_ppl.save)")
    try:
        header = json.loads(line) if line.endswith(b"\n") else None
    except (ValueError, RecursionError):  # bad JSON, bad UTF-8, absurd numbers or nesting
        header = None
    if not isinstance(header, dict) or header.get("format") != _MAGIC:
        raise ValueError(
            f"{path} is not an l2hmc_ppl dynamics file (written by l2hmc_ppl.save): no header line "
            f"naming the format {_MAGIC!r} in its first {MAX_HEADER_BYTES} bytes"
        )
    version = header.get("format_version")
    if not (type(version) is int and version in _READABLE_VERSIONS):
        newer = "; upgrade l2hmc_ppl to read it" if type(version) is int and version > FORMAT_VERSION else ""
        raise ValueError(
            f"{path} has format version {_short(version)}, this l2hmc_ppl reads versions "
            f"{', '.join(map(str, _READABLE_VERSIONS))} "
            f"(written by l2hmc_ppl {str(header.get('library_version'))[:40]}){newer}"
        )
    _check_hyperparameters(header.get("hyperparameters"), str(path))
    return version, header["hyperparameters"]


def _check_like(path: Path, hyperparameters: dict, like) -> None:
    if not isinstance(like, L2HMCDynamics):
        raise TypeError(f"like must be an l2hmc_ppl.L2HMCDynamics, got {type(like).__name__}")
    expected = _hyperparameters(like)
    different = {k: (hyperparameters[k], v) for k, v in expected.items() if hyperparameters[k] != v}
    if different:
        details = ", ".join(f"{k}: file has {f!r}, expected {e!r}" for k, (f, e) in different.items())
        raise ValueError(f"{path} holds dynamics of a different architecture ({details})")


def _check_dtype_enabled(path: Path, dtype: str) -> None:
    if jax.dtypes.canonicalize_dtype(jnp.dtype(dtype)) != jnp.dtype(dtype):
        raise ValueError(
            f"{path} holds {dtype} weights, but JAX runs in 32-bit mode and would round them; enable "
            "64-bit mode first: jax.config.update('jax_enable_x64', True)"
        )


def _check_body_size(path: Path, hyperparameters: dict, expected: tuple, body_size: int) -> None:
    """Before any allocation: the arrays the header implies must fit in what follows the header."""
    claimed = _weight_bytes(expected)
    if claimed > body_size:
        raise ValueError(
            f"{path} is truncated or corrupted: its header describes dynamics ({_describe(hyperparameters)}) "
            f"whose arrays take {claimed} bytes, but the file has only {body_size} bytes after its header "
            "(load allocates nothing the file does not hold)"
        )


def _read_record(file: BinaryIO, file_size: int, want) -> np.ndarray:
    """Read one ``.npy`` record holding ``want`` (a ShapeDtypeStruct), checking it before its data.

    Raises ValueError with the reason (the caller adds the file and the array's name).
    """
    try:
        version = npy_format.read_magic(file)
        if version != (1, 0):  # what numpy writes for our arrays; 2.0 could ask for a 4 GiB header
            raise ValueError(f"npy format version {version}, expected (1, 0)")
        header = npy_format.read_array_header_1_0(file, max_header_size=_MAX_RECORD_HEADER)
        shape, fortran_order, dtype = header
    except Exception as error:  # numpy's header parser raises several types on garbled bytes
        raise ValueError(f"garbled array header ({error})") from error
    stored = _stored_dtype(want.dtype)
    if (tuple(shape), dtype, fortran_order) != (want.shape, stored, False):
        order = ", Fortran order" if fortran_order else ""
        raise ValueError(
            f"stored as {_spelled(dtype, shape)}{order}, the header implies {_spelled(stored, want.shape)}"
        )
    size = _nbytes(want)
    if file.tell() + size > file_size:
        raise ValueError(f"needs {size} bytes at byte {file.tell()}, the file ends at byte {file_size}")
    data = file.read(size)
    if len(data) != size:
        raise ValueError("the file shrank while being read")
    if dtype == np.bool_ and np.frombuffer(data, np.uint8).max(initial=0) > 1:
        raise ValueError("boolean data other than 0 and 1")
    return np.frombuffer(data, stored).reshape(shape)


def load(path: str | os.PathLike, like: L2HMCDynamics | None = None) -> L2HMCDynamics:
    """Load dynamics saved by [`save`][l2hmc_ppl.save], checking the file before allocating anything.

    Args:
        path: the file.
        like: optional dynamics the file must match in architecture (dimension, number of steps,
            network sizes, preconditioner type, dtype); a mismatch is an error naming the difference.

    Raises:
        FileNotFoundError: no such file.
        IsADirectoryError: ``path`` is a directory.
        TypeError: ``like`` is not an ``L2HMCDynamics``.
        ValueError: not an l2hmc_ppl dynamics file (empty, foreign, not a regular file), a
            different format version, an invalid header (the message names the field, its value and
            what is expected), arrays over this module's caps, truncated or corrupted data, float64
            weights while JAX runs in 32-bit mode, or an architecture different from ``like``. The
            message starts with the path.
    """
    path = Path(path)
    with _open_regular_file(path) as file:
        version, hyperparameters = _read_header(path, file)
        if like is not None:
            _check_like(path, hyperparameters, like)
        _check_dtype_enabled(path, hyperparameters["dtype"])
        treedef, expected = _expected_leaves(hyperparameters)
        stored = [(name, want) for name, want in expected if version >= 2 or name != _ADDED_IN_VERSION_2]
        file_size = os.fstat(file.fileno()).st_size
        _check_body_size(path, hyperparameters, stored, file_size - file.tell())
        _check_weight_cap(str(path), hyperparameters, expected)
        arrays = {}
        for name, want in stored:
            try:
                arrays[name] = _read_record(file, file_size, want)
            except ValueError as error:
                raise ValueError(f"{path} is truncated or corrupted: array {name}: {error}") from error
        if file.tell() != file_size:
            raise ValueError(
                f"{path} is truncated or corrupted: {file_size - file.tell()} bytes of trailing data after "
                "the last array"
            )
    # a version-1 file predates the jitter: its kernel had none
    arrays = {
        name: arrays.get(name, np.zeros(want.shape, _stored_dtype(want.dtype))) for name, want in expected
    }
    leaves = [jnp.asarray(a.view(jnp.bfloat16) if a.dtype == np.dtype("V2") else a) for a in arrays.values()]
    return jax.tree_util.tree_unflatten(treedef, leaves)
