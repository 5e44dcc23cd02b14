"""MNIST in the original IDX format, and dynamic binarisation.

The loader reads the four canonical files that every MNIST mirror distributes,
gzip-compressed or raw, with numpy alone (no torch, no tensorflow):

| split   | images                        | labels                        |
|---------|-------------------------------|-------------------------------|
| `train` | `train-images-idx3-ubyte(.gz)` | `train-labels-idx1-ubyte(.gz)` |
| `test`  | `t10k-images-idx3-ubyte(.gz)`  | `t10k-labels-idx1-ubyte(.gz)`  |

An IDX file is a big-endian header, the magic number `0x00000803` (images, three
dimensions) or `0x00000801` (labels, one dimension), followed by one big-endian
`uint32` per dimension and then the raw `uint8` payload. Every one of these is
checked, so that a truncated download fails loudly instead of training on garbage.

Part of the L2HMC-DGLM example (``examples/dlgm``). The data set is the one of the
L2HMC-DGLM experiment (Levy et al. 2018, §5.2): images scaled to [0, 1], dynamically binarised
(each pixel ~ Bernoulli(intensity), re-drawn every epoch) with `binarize`. The
folder is the caller's choice (`data_dir`) or the environment variable
`L2HMC_PPL_MNIST`; this module looks nowhere else.

References:
    Y. LeCun, C. Cortes, C. J. C. Burges, *The MNIST database of handwritten
    digits* (licence CC BY-SA 3.0).
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray

__all__ = ["ENV_VAR", "MNIST_FILES", "binarize", "load_mnist", "resolve_mnist_dir"]

#: Environment variable naming the folder that holds the MNIST files.
ENV_VAR = "L2HMC_PPL_MNIST"

#: Canonical file stems per split: ``(images, labels)``; each may end in ``.gz``.
MNIST_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

_IMAGE_MAGIC = 0x00000803  # uint8 payload, 3 dimensions
_LABEL_MAGIC = 0x00000801  # uint8 payload, 1 dimension
_NUM_ROWS = _NUM_COLUMNS = 28
_NUM_CLASSES = 10
_GZIP_MAGIC = b"\x1f\x8b"

_WHERE_TO_GET = (
    "Download the four standard MNIST files ("
    + ", ".join(f"{stem}.gz" for pair in MNIST_FILES.values() for stem in pair)
    + ") from any MNIST mirror, e.g. the files distributed by torchvision "
    "(https://ossci-datasets.s3.amazonaws.com/mnist/) or tensorflow-datasets "
    "(https://storage.googleapis.com/cvdf-datasets/mnist/), or Yann LeCun's page "
    "(http://yann.lecun.com/exdb/mnist/); gzip-compressed or not. Then pass "
    f"`data_dir=...` or set the environment variable {ENV_VAR} to their folder."
)


def resolve_mnist_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The folder that holds the MNIST files: ``data_dir`` if given, else ``$L2HMC_PPL_MNIST``.

    There is no search beyond these two: the caller (the example script) decides on any default
    folder and passes it in. An explicit choice never silently falls back to another folder.

    Args:
        data_dir: Folder holding the IDX files, or `None` to read the environment variable.

    Returns:
        The folder, resolved to an absolute path.

    Raises:
        FileNotFoundError: If neither is given, or the chosen folder does not exist; the message
            names the four files, where to get them and the environment variable.
    """
    if data_dir is not None:
        folder, origin = Path(data_dir), "the `data_dir` argument"
    elif os.environ.get(ENV_VAR):
        folder, origin = Path(os.environ[ENV_VAR]), f"${ENV_VAR}"
    else:
        raise FileNotFoundError(
            f"No MNIST folder given (no `data_dir`, and ${ENV_VAR} is not set). {_WHERE_TO_GET}"
        )
    if not folder.is_dir():
        raise FileNotFoundError(f"MNIST folder {folder} not found (from {origin}). {_WHERE_TO_GET}")
    return folder.resolve()


def _find_file(folder: Path, stem: str) -> Path:
    """Return `folder/stem.gz` or `folder/stem`, whichever exists (gzip first)."""
    for name in (f"{stem}.gz", stem):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(
        f"MNIST file {stem}.gz (or uncompressed {stem}) not found in {folder}. {_WHERE_TO_GET}"
    )


def _read_bytes(path: Path) -> bytes:
    """Read a file, decompressing it if it starts with the gzip magic bytes."""
    raw = path.read_bytes()
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as error:  # truncated or corrupt stream
        raise ValueError(
            f"{path}: corrupt or truncated gzip file ({error}). Download it again from an MNIST mirror."
        ) from error


def _parse_idx(path: Path, magic: int, num_dims: int) -> np.ndarray:
    """Parse an IDX file of `uint8`, checking magic number, header and size.

    Args:
        path: The file (gzip or raw).
        magic: Expected magic number (`0x803` images, `0x801` labels).
        num_dims: Expected number of dimensions (the magic's last byte).

    Returns:
        The payload as a `uint8` array of the header's shape.

    Raises:
        ValueError: If the file is corrupt, truncated or of the wrong kind.
    """
    data = _read_bytes(path)
    header_size = 4 * (1 + num_dims)
    if len(data) < header_size:
        raise ValueError(
            f"{path}: truncated IDX file ({len(data)} bytes, the header alone is {header_size} bytes)."
        )
    header = np.frombuffer(data, dtype=">u4", count=1 + num_dims)
    if int(header[0]) != magic:
        raise ValueError(
            f"{path}: bad IDX magic number 0x{int(header[0]):08x}, expected "
            f"0x{magic:08x}; this is not an MNIST "
            f"{'image' if magic == _IMAGE_MAGIC else 'label'} file."
        )
    shape = tuple(int(size) for size in header[1:])
    expected = int(np.prod(shape))
    payload = len(data) - header_size
    if payload != expected:
        state = "truncated" if payload < expected else "has trailing bytes"
        raise ValueError(
            f"{path}: IDX file {state}: header announces shape {shape} "
            f"({expected} bytes) but the payload has {payload} bytes."
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(shape)


def load_mnist(
    data_dir: str | os.PathLike | None = None, split: str = "train"
) -> tuple[Float[np.ndarray, "num_images 784"], Int[np.ndarray, " num_images"]]:
    """Load an MNIST split as flat float32 images in [0, 1] and int32 labels.

    Pixel intensities are the stored bytes divided by 255 (train mean 0.1307,
    sd 0.3081). Pass the result through `binarize` for
    the dynamically binarised data of the L2HMC-DGLM experiment.

    Args:
        data_dir: Folder holding the IDX files; if `None`, the folder named by the
            environment variable `L2HMC_PPL_MNIST` (see `resolve_mnist_dir`).
        split: `"train"` (60,000 images) or `"test"` (10,000 images, the `t10k`
            files).

    Returns:
        `(images, labels)`: `images` of shape `(num_images, 784)`, float32 in
        [0, 1], rows in row-major pixel order; `labels` of shape `(num_images,)`,
        int32 in 0..9.

    Raises:
        FileNotFoundError: If the folder or a file is missing; the message names
            the files, where to get them and the environment variable.
        ValueError: If `split` is unknown, or a file is corrupt or truncated (bad
            gzip stream, magic number, dimensions or size), or images and labels
            disagree.

    Example:
        >>> images, labels = load_mnist("path/to/mnist", "test")  # doctest: +SKIP
        >>> images.shape, labels.shape  # doctest: +SKIP
        ((10000, 784), (10000,))
    """
    if split not in MNIST_FILES:
        raise ValueError(f"split must be one of {sorted(MNIST_FILES)}, got {split!r}.")
    folder = resolve_mnist_dir(data_dir)
    image_stem, label_stem = MNIST_FILES[split]
    image_path = _find_file(folder, image_stem)
    label_path = _find_file(folder, label_stem)

    images = _parse_idx(image_path, _IMAGE_MAGIC, num_dims=3)
    labels = _parse_idx(label_path, _LABEL_MAGIC, num_dims=1)
    if images.shape[1:] != (_NUM_ROWS, _NUM_COLUMNS):
        raise ValueError(
            f"{image_path}: images are {images.shape[1]}x{images.shape[2]}, "
            f"expected {_NUM_ROWS}x{_NUM_COLUMNS}."
        )
    if labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"{image_path} holds {images.shape[0]} images but {label_path} holds {labels.shape[0]} labels."
        )
    if labels.size and int(labels.max()) >= _NUM_CLASSES:
        raise ValueError(f"{label_path}: label {int(labels.max())} is not a digit.")

    flat = images.reshape(images.shape[0], _NUM_ROWS * _NUM_COLUMNS)
    return flat.astype(np.float32) / np.float32(255.0), labels.astype(np.int32)


def binarize(rng_key: PRNGKeyArray, images: Float[Array, "..."]) -> Float[Array, "..."]:
    r"""Dynamically binarise images: each pixel ~ Bernoulli(intensity).

    $$b_{ij} \sim \mathrm{Bernoulli}(x_{ij}), \qquad x_{ij} \in [0, 1],$$

    drawn independently; call it with a fresh key every epoch so that the
    model sees a new binarisation each time (Levy et al. 2018, §5.2). Jit- and vmap-compatible.

    Args:
        rng_key: A JAX PRNG key.
        images: Intensities in [0, 1], any shape (e.g. `(batch, 784)`).

    Returns:
        float32 array of the same shape holding 0.0 and 1.0.
    """
    images = jnp.asarray(images, dtype=jnp.float32)
    return jax.random.bernoulli(rng_key, images).astype(jnp.float32)
