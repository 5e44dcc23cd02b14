"""save/load: bit-exact round trips, atomic writes, and load on untrusted, broken or hostile files."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pickle
import stat
import time
import tracemalloc

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from l2hmc_ppl import L2HMCDynamics, load, save
from l2hmc_ppl.training import serialisation
from l2hmc_ppl.training.serialisation import atomic_write


def make_dynamics(dense=True, dtype=jnp.float64, batch=(), seed=1, **options) -> L2HMCDynamics:
    """Dynamics with aux networks, 2 hidden layers and random values in every array.

    The arrays are drawn with NumPy into the shapes of :func:`jax.eval_shape` (nothing to compile,
    which keeps the tests fast); ``batch`` adds leading axes, as a vectorized run would.
    """
    options = {"hidden_size": 10, "num_hidden_layers": 2, "aux_size": 4, **options}

    def build():
        dynamics = L2HMCDynamics(3, key=jax.random.key(0), dtype=dtype, **options)
        return dynamics.with_preconditioner(jnp.zeros(3), jnp.eye(3)) if dense else dynamics

    rng = np.random.default_rng(seed)

    def fill(leaf):
        shape = tuple(batch) + leaf.shape
        if leaf.dtype == jnp.bool_:
            return jnp.asarray(rng.random(shape) < 0.5)
        return jnp.asarray(rng.normal(size=shape).astype(leaf.dtype))

    return jax.tree_util.tree_map(fill, eqx.filter_eval_shape(build))


def assert_bit_identical(a, b):
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        assert (x.dtype, x.shape) == (y.dtype, y.shape)
        assert np.asarray(x).tobytes() == np.asarray(y).tobytes()


def assert_same_architecture(a, b):
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        assert (x.dtype, x.shape) == (y.dtype, y.shape)


def split_file(path):
    """(header dict, body bytes) of a saved file."""
    line, body = path.read_bytes().split(b"\n", 1)
    return json.loads(line), body


def write_file(path, header, body):
    path.write_bytes(json.dumps(header).encode() + b"\n" + body)
    return path


@pytest.fixture
def saved(tmp_path):
    """A saved file of make_dynamics() and the dynamics."""
    dynamics = make_dynamics()
    path = tmp_path / "dynamics.l2hmc"
    save(path, dynamics)
    return path, dynamics


# ------------------------------------------------------------------------------------------------
# What works: round trips and the documented errors of a well-formed file
@pytest.mark.parametrize(
    "dense, dtype, layers",
    [
        (False, jnp.float64, 2),
        (True, jnp.float64, 2),
        (True, jnp.float32, 0),
        (False, jnp.float16, 1),
        (True, jnp.bfloat16, 1),
    ],
)
def test_round_trip_is_bit_exact(tmp_path, dense, dtype, layers):
    dynamics = make_dynamics(dense=dense, dtype=dtype, num_hidden_layers=layers)
    path = tmp_path / "dynamics.l2hmc"
    save(path, dynamics)
    loaded = load(path, like=dynamics)
    assert_bit_identical(loaded, dynamics)
    assert loaded.dense_preconditioner == dense and loaded.num_hidden_layers == layers
    first = path.read_bytes()
    save(path, loaded)  # saving the loaded dynamics over the file gives the same bytes
    assert path.read_bytes() == first


def test_numpy_leaves_save_like_jax_ones(tmp_path):
    dynamics = make_dynamics()
    path = tmp_path / "numpy.l2hmc"
    save(path, jax.tree_util.tree_map(np.asarray, dynamics))
    assert_bit_identical(load(path), dynamics)


def test_like_mismatch_names_the_field(saved):
    path, _ = saved
    with pytest.raises(ValueError, match="different architecture.*hidden_size: file has 10, expected 20"):
        load(path, like=make_dynamics(hidden_size=20))
    with pytest.raises(ValueError, match="different architecture.*dense_preconditioner"):
        load(path, like=make_dynamics(dense=False))
    with pytest.raises(TypeError, match="like must be an l2hmc_ppl.L2HMCDynamics, got dict"):
        load(path, like={})


def test_format_version(saved, tmp_path):
    path, _ = saved
    header, body = split_file(path)
    for version, message in [(3, "format version 3, .*reads versions 1, 2.*upgrade l2hmc_ppl"), ("1", "'1'")]:
        header["format_version"] = version
        with pytest.raises(ValueError, match=message):
            load(write_file(tmp_path / "version.l2hmc", header, body))
    header["format_version"] = True  # == 1 in Python, but not the integer 1
    with pytest.raises(ValueError, match="format version True"):
        load(write_file(tmp_path / "version.l2hmc", header, body))


def test_version_one_files_load_with_no_jitter(tmp_path):
    """Files written before the step-size jitter existed (format 1) still load, with jitter 0."""
    dynamics = make_dynamics().with_step_size_jitter(0.0)
    save(tmp_path / "version2.l2hmc", dynamics)
    header, _ = split_file(tmp_path / "version2.l2hmc")
    header["format_version"] = 1
    leaves = [
        leaf
        for path, leaf in jax.tree_util.tree_leaves_with_path(dynamics)
        if "step_size_jitter" not in jax.tree_util.keystr(path)
    ]
    path = tmp_path / "version1.l2hmc"
    with open(path, "wb") as file:
        file.write((json.dumps(header) + "\n").encode())
        eqx.tree_serialise_leaves(file, leaves)
    assert_bit_identical(load(path), dynamics)


# ------------------------------------------------------------------------------------------------
# Not a dynamics file at all
def test_foreign_empty_missing_and_special_files(tmp_path):
    cases = {
        "foreign.bin": (b"\x00\x01 not a dynamics file", "not an l2hmc_ppl dynamics file"),
        "empty.l2hmc": (b"", "is empty, not an l2hmc_ppl dynamics file"),
        "json.l2hmc": (b'{"format": "something.else"}\n', "not an l2hmc_ppl dynamics file"),
        "list.l2hmc": (b"[1, 2]\n", "not an l2hmc_ppl dynamics file"),
        "nested.l2hmc": (b"[" * 3000 + b"]" * 3000 + b"\n", "not an l2hmc_ppl dynamics file"),
        "no_newline.l2hmc": (b'{"format": "l2hmc_ppl.dynamics"' + b" " * 10_000 + b"}\n", "first 4096 bytes"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(ValueError, match=message) as error:
            load(path)
        assert str(path) in str(error.value)
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "missing.l2hmc")
    with pytest.raises(IsADirectoryError, match="is a directory"):
        load(tmp_path)
    if hasattr(os, "mkfifo"):  # opening a FIFO would block until a writer comes
        os.mkfifo(tmp_path / "fifo")
        with pytest.raises(ValueError, match="not a regular file"):
            load(tmp_path / "fifo")


# ------------------------------------------------------------------------------------------------
# A header that is ours but broken or hostile
FIELD_CASES = [
    # (field, value or DELETE, expected piece of the message)
    ("dim", "DELETE", "hyperparameters.dim is missing"),
    ("dim", "3", "hyperparameters.dim is '3', expected an integer from 1 to"),
    ("dim", 3.0, "hyperparameters.dim is 3.0"),
    ("dim", True, "hyperparameters.dim is True"),
    ("dim", 0, "hyperparameters.dim is 0"),
    ("dim", -3, "hyperparameters.dim is -3"),
    ("dim", 10**30, "hyperparameters.dim is 1000000000000000000000000000000"),
    ("num_leapfrog_steps", None, "hyperparameters.num_leapfrog_steps is None"),
    ("hidden_size", [10], r"hyperparameters.hidden_size is \[10\]"),
    ("num_hidden_layers", -1, "hyperparameters.num_hidden_layers is -1, expected an integer from 0 to 32"),
    ("num_hidden_layers", 10**6, "hyperparameters.num_hidden_layers is 1000000"),
    ("aux_size", 0, "hyperparameters.aux_size is 0, expected null or an integer"),
    ("aux_size", "DELETE", "hyperparameters.aux_size is missing"),
    ("dense_preconditioner", 1, "hyperparameters.dense_preconditioner is 1, expected true or false"),
    (
        "dtype",
        "int32",
        "hyperparameters.dtype is 'int32', expected one of float16, bfloat16, float32, float64",
    ),
    ("dtype", "x" * 500, r"hyperparameters.dtype is 'xxxx.*\.\.\., expected"),
    ("colour", "blue", r"unexpected field\(s\) hyperparameters.\['colour'\]"),
]


@pytest.mark.parametrize("field, value, message", FIELD_CASES)
def test_header_field_errors_name_file_field_value_and_expectation(saved, tmp_path, field, value, message):
    path, _ = saved
    header, body = split_file(path)
    if value == "DELETE":
        del header["hyperparameters"][field]
    else:
        header["hyperparameters"][field] = value
    bad = write_file(tmp_path / "bad.l2hmc", header, body)
    with pytest.raises(ValueError, match=message) as error:
        load(bad)
    assert str(error.value).startswith(str(bad))


@pytest.mark.parametrize("value", ["DELETE", None, [1, 2], "dim=3"])
def test_hyperparameters_object_missing_or_not_an_object(saved, tmp_path, value):
    path, _ = saved
    header, body = split_file(path)
    if value == "DELETE":
        del header["hyperparameters"]
    else:
        header["hyperparameters"] = value
    with pytest.raises(ValueError, match="header field 'hyperparameters' is .*, expected an object"):
        load(write_file(tmp_path / "bad.l2hmc", header, body))


def test_header_dtype_must_match_the_weights(tmp_path):
    """A float64 header over a float32 body (and the reverse) is refused, naming both dtypes."""
    float32 = tmp_path / "float32.l2hmc"
    save(float32, make_dynamics(dtype=jnp.float32))
    header, body = split_file(float32)
    header["hyperparameters"]["dtype"] = "float64"
    with pytest.raises(ValueError, match=r"stored as float32\[10, 3\], the header implies float64\[10, 3\]"):
        load(write_file(tmp_path / "lying.l2hmc", header, body))
    header["hyperparameters"]["dtype"] = "bfloat16"  # same width as float16: caught by the record header
    save(float32, make_dynamics(dtype=jnp.float16))
    _, body = split_file(float32)
    with pytest.raises(ValueError, match=r"stored as float16\[10, 3\], the header implies bfloat16\[10, 3\]"):
        load(write_file(tmp_path / "lying.l2hmc", header, body))


def test_float64_file_in_32_bit_mode(saved, tmp_path):
    path, _ = saved
    float32 = tmp_path / "float32.l2hmc"
    save(float32, make_dynamics(dtype=jnp.float32))
    with jax.enable_x64(False):
        with pytest.raises(ValueError, match=r"holds float64 weights.*jax_enable_x64"):
            load(path)  # would silently round every weight to float32
        assert load(float32).log_step_size.dtype == jnp.float32


def test_hostile_header_fails_fast_without_allocating(saved, tmp_path):
    """A small file claiming a huge architecture is refused before anything of that size exists.

    Time is CPU time of this process (the test machine may be shared); each case is measured with
    the cache of architectures cleared, so that it includes computing the claimed shapes.
    """
    path, _ = saved
    load(path)  # warm up JAX
    header, body = split_file(path)
    cases = [
        (dict(dim=10**7, hidden_size=10**5), r"take \d{15} bytes, but the file has only"),  # ~1e15 bytes
        (dict(dim=2000, hidden_size=2000), "but the file has only"),  # under the cap, over the file
        (dict(dim=2**30, num_leapfrog_steps=2**30, hidden_size=2**30, aux_size=2**30), "has only"),
    ]
    for fields, message in cases:
        header["hyperparameters"].update(fields)
        hostile = write_file(tmp_path / "hostile.l2hmc", header, body)
        serialisation._abstract_leaves.cache_clear()
        start = time.process_time()
        with pytest.raises(ValueError, match=message):
            load(hostile)
        elapsed = time.process_time() - start
        serialisation._abstract_leaves.cache_clear()
        tracemalloc.start()
        with pytest.raises(ValueError, match=message):
            load(hostile)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert elapsed < 1.0, (fields, elapsed)
        assert peak < 8 * 2**20, (fields, peak)  # tracing the architecture's shapes; no arrays


def test_weight_cap_applies_to_save_and_load(saved, tmp_path, monkeypatch):
    path, dynamics = saved
    monkeypatch.setattr(serialisation, "MAX_WEIGHT_BYTES", 1000)
    with pytest.raises(ValueError, match="take .* bytes, more than .*MAX_WEIGHT_BYTES = 1000") as error:
        load(path)
    assert str(error.value).startswith(str(path))
    with pytest.raises(ValueError, match="cannot save to .*MAX_WEIGHT_BYTES = 1000"):
        save(tmp_path / "big.l2hmc", dynamics)
    assert not (tmp_path / "big.l2hmc").exists()
    with pytest.raises(
        ValueError, match="hyperparameters.num_hidden_layers is 33, expected an integer from 0 to 32"
    ):
        save(tmp_path / "deep.l2hmc", make_dynamics(num_hidden_layers=33, hidden_size=1))


# ------------------------------------------------------------------------------------------------
# A good header over a broken body
def test_truncated_and_trailing_data(saved, tmp_path):
    path, _ = saved
    data = path.read_bytes()
    for cut in (40, 1, len(data) - data.index(b"\n") - 1):
        (tmp_path / "short.l2hmc").write_bytes(data[: len(data) - cut])
        with pytest.raises(ValueError, match="truncated or corrupted"):
            load(tmp_path / "short.l2hmc")
    (tmp_path / "long.l2hmc").write_bytes(data + b"\x00")
    with pytest.raises(ValueError, match="1 bytes of trailing data after the last array"):
        load(tmp_path / "long.l2hmc")


def test_batched_file_from_an_older_save_is_refused(saved, tmp_path):
    path, _ = saved
    header, body = split_file(path)
    batched = make_dynamics(batch=(4,))
    with open(tmp_path / "body", "wb") as file:
        eqx.tree_serialise_leaves(file, batched)
    bad = write_file(tmp_path / "batched.l2hmc", header, (tmp_path / "body").read_bytes())
    with pytest.raises(
        ValueError, match=r"stored as float64\[4, 10, 3\], the header implies float64\[10, 3\]"
    ):
        load(bad)


def test_never_unpickles(saved, tmp_path):
    """An object array in the body is refused by its record header; its pickle never runs."""
    path, _ = saved
    header, body = split_file(path)
    marker = tmp_path / "pickle_ran"

    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    assert pickle.loads(pickle.dumps(Payload())) is None and marker.exists()  # the payload works
    marker.rmdir()
    record = tmp_path / "record.npy"
    np.save(record, np.array([Payload()] * 30, dtype=object), allow_pickle=True)
    for bad_body in (record.read_bytes() + body, b"PK\x03\x04" + body):  # object array, zip (npz) magic
        bad = write_file(tmp_path / "pickled.l2hmc", header, bad_body)
        with pytest.raises(
            ValueError, match="truncated or corrupted: array .position_net.embed_first.weight"
        ):
            load(bad)
        assert not marker.exists()


def test_boolean_data_must_be_0_or_1(saved, tmp_path):
    path, _ = saved
    header, body = split_file(path)
    start = body.index(b"'|b1'")  # the header of the one boolean record, the masks
    data_at = body.index(b"\n", start) + 1
    corrupted = body[:data_at] + b"\x02" + body[data_at + 1 :]
    with pytest.raises(ValueError, match=r"array .masks: boolean data other than 0 and 1"):
        load(write_file(tmp_path / "masks.l2hmc", header, corrupted))


# ------------------------------------------------------------------------------------------------
# save: refuse what load could not read, before writing anything
def test_save_refuses_batched_dynamics_and_explains(tmp_path):
    path = tmp_path / "dynamics.l2hmc"
    batched = make_dynamics(batch=(4,))
    with pytest.raises(
        ValueError, match=r"batched dynamics .*leading axes \(4,\).*tree_map\(lambda x: x\[i\]"
    ):
        save(path, batched)
    assert not path.exists()
    chain = jax.tree_util.tree_map(lambda x: x[2], batched)  # the fix the message gives
    save(path, chain)
    assert_bit_identical(load(path), chain)


def test_save_refuses_wrong_types_shapes_and_dtypes(saved):
    path, dynamics = saved
    before = path.read_bytes()
    with pytest.raises(TypeError, match="expected an l2hmc_ppl.L2HMCDynamics, got dict"):
        save(path, {"weights": 1})
    cases = [
        (
            lambda d: d.log_step_size,
            jnp.float32(0.1),
            r"\.log_step_size is float32\[\], expected an array float64\[\]",
        ),
        (lambda d: d.log_step_size, 0.1, r"\.log_step_size is float, expected an array float64\[\]"),
        (
            lambda d: d.preconditioner_loc,
            jnp.zeros(4),
            r"\.preconditioner_loc is float64\[4\], expected .*\[3\]",
        ),
        (
            lambda d: d.masks,
            jnp.ones((10, 3)),
            r"\.masks is float64\[10, 3\], expected an array bool\[10, 3\]",
        ),
    ]
    for where, value, message in cases:
        with pytest.raises(ValueError, match=message):
            save(path, eqx.tree_at(where, dynamics, value))
    assert path.read_bytes() == before


# ------------------------------------------------------------------------------------------------
# Atomic writes
def test_atomic_write_failure_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "file.bin"
    path.write_bytes(b"old content")
    listing = sorted(os.listdir(tmp_path))

    for error in (RuntimeError, KeyboardInterrupt):

        def write(file, error=error):
            file.write(b"new content, first half")
            raise error("crash halfway")

        with pytest.raises(error, match="crash halfway"):
            atomic_write(path, write)
        assert path.read_bytes() == b"old content"
        assert sorted(os.listdir(tmp_path)) == listing
    atomic_write(path, lambda file: file.write(b"new content"))
    assert path.read_bytes() == b"new content" and sorted(os.listdir(tmp_path)) == listing
    with pytest.raises(FileNotFoundError):
        atomic_write(tmp_path / "no_such_folder" / "file.bin", lambda file: file.write(b"x"))
    (tmp_path / "folder").mkdir()
    with pytest.raises(OSError):  # os.replace cannot put a file over a folder
        atomic_write(tmp_path / "folder", lambda file: file.write(b"x"))
    assert sorted(os.listdir(tmp_path)) == sorted(listing + ["folder"])


@pytest.mark.parametrize("failing", ["write", "fsync"])
def test_save_on_a_full_disk_leaves_the_old_file(saved, monkeypatch, failing):
    path, _ = saved
    before = path.read_bytes()
    listing = sorted(os.listdir(path.parent))
    full = OSError(errno.ENOSPC, "No space left on device")

    def serialise_then_fail(file, pytree):
        file.write(b"\x93NUMPY partial")
        raise full

    def fsync_fails(fd):
        raise full

    if failing == "write":
        monkeypatch.setattr(serialisation.eqx, "tree_serialise_leaves", serialise_then_fail)
    else:
        monkeypatch.setattr(serialisation.os, "fsync", fsync_fails)
    with pytest.raises(OSError) as error:
        save(path, make_dynamics(dense=False))
    assert error.value.errno == errno.ENOSPC
    assert path.read_bytes() == before
    assert sorted(os.listdir(path.parent)) == listing


@pytest.mark.skipif(os.name != "posix", reason="permissions and symbolic links as on POSIX")
def test_atomic_write_keeps_permissions_and_writes_through_links(tmp_path):
    reference = tmp_path / "reference"
    reference.write_bytes(b"")  # what open(path, "wb") gives: 0o666 less the umask
    atomic_write(tmp_path / "new", lambda file: file.write(b"x"))
    assert stat.S_IMODE(os.stat(tmp_path / "new").st_mode) == stat.S_IMODE(os.stat(reference).st_mode)
    (tmp_path / "link").symlink_to(tmp_path / "new")
    atomic_write(tmp_path / "link", lambda file: file.write(b"through the link"))
    assert (tmp_path / "link").is_symlink() and (tmp_path / "new").read_bytes() == b"through the link"


# ------------------------------------------------------------------------------------------------
# Fuzzing load
#
# Allowed outcomes for a damaged file: load raises ValueError whose message contains the path, or it
# returns dynamics with the architecture of the original (same structure, shapes, dtypes). The
# latter only when the damage leaves a readable file: bytes inside the weights changed (there is no
# checksum), or harmless header bytes (e.g. whitespace, the library version); then, if only header
# bytes changed, the weights must be bit-identical. Truncated or extended files must raise. Every
# load must finish in well under a second and allocate at most a small multiple of the file size.
FUZZ_SEED = 20240611
MEMORY_SLACK = 4 * 2**20  # tracing a new architecture's shapes (no arrays) takes up to ~1 MiB


def test_fuzz_load(tmp_path):
    original = make_dynamics(hidden_size=4, num_leapfrog_steps=3)
    good = tmp_path / "good.l2hmc"
    save(good, original)
    data = good.read_bytes()
    header_end = data.index(b"\n") + 1
    rng = np.random.default_rng(FUZZ_SEED)
    path = tmp_path / "fuzz.l2hmc"
    outcomes = {"raised": 0, "loaded": 0}

    def check(content: bytes, must_raise: bool, header_only: bool):
        path.write_bytes(content)
        # Time a load without tracemalloc, whose hooks on every allocation slow Python down several
        # times (a new architecture's shapes took 0.2 s of CPU alone and 0.6 s under tracemalloc),
        # then measure the memory of the same load again with a cache as cold as the timed one had.
        cached = serialisation._abstract_leaves.cache_info().currsize
        start = time.process_time()
        try:
            loaded = load(path)
        except ValueError as error:
            assert str(path) in str(error)
            outcomes["raised"] += 1
        else:
            assert not must_raise, "a truncated or extended file loaded"
            assert_same_architecture(loaded, original)
            if header_only:
                assert_bit_identical(loaded, original)
            outcomes["loaded"] += 1
        assert time.process_time() - start < 1.0
        if serialisation._abstract_leaves.cache_info().currsize > cached:
            serialisation._abstract_leaves.cache_clear()  # the load traced new shapes: trace them again
        tracemalloc.start()
        try:
            with contextlib.suppress(ValueError):
                load(path)
            assert tracemalloc.get_traced_memory()[1] < 4 * len(content) + MEMORY_SLACK
        finally:
            tracemalloc.stop()

    def flipped(count, low, high):
        content = bytearray(data)
        for position in rng.integers(low, high, size=count):
            content[position] ^= int(rng.integers(1, 256))
        return bytes(content)

    lengths = list(range(0, len(data), 23)) + list(rng.integers(0, len(data), size=40))
    for length in lengths:
        check(data[:length], must_raise=True, header_only=False)
    for _ in range(15):
        garbage = rng.integers(0, 256, size=int(rng.integers(1, 2000)), dtype=np.uint8).tobytes()
        check(data + garbage, must_raise=True, header_only=False)
    for _ in range(150):
        check(flipped(1, 0, header_end), must_raise=False, header_only=True)
        check(flipped(1, header_end, len(data)), must_raise=False, header_only=False)
    for _ in range(60):
        count = int(rng.integers(2, 9))
        check(flipped(count, 0, header_end), must_raise=False, header_only=True)
        check(flipped(count, 0, len(data)), must_raise=False, header_only=False)
    header, body = split_file(good)
    for field in header["hyperparameters"]:
        for value in ("DELETE", "7", 7.5, [], {}, True, None, -1, 0, 10**7, 10**40, 2**63):
            mutated = json.loads(json.dumps(header))
            if value == "DELETE":
                del mutated["hyperparameters"][field]
            else:
                mutated["hyperparameters"][field] = value
            content = json.dumps(mutated).encode() + b"\n" + body
            check(content, must_raise=mutated != header, header_only=True)
    assert outcomes["raised"] > 0 and outcomes["loaded"] > 0  # both outcomes occur
