"""The DLGM example's MNIST loader (real files, corrupt copies, missing folders) and binarisation.

The real files come from the ``mnist_dir`` fixture (``$L2HMC_PPL_MNIST``, which
``tests/conftest.py`` points at ``../shared/data/mnist`` beside the repository when unset).
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest

from tests.stats import Z_THRESHOLD

from mnist import ENV_VAR, MNIST_FILES, binarize, load_mnist, resolve_mnist_dir

ALL_FILE_NAMES = [f"{stem}.gz" for pair in MNIST_FILES.values() for stem in pair]


@pytest.fixture(scope="module")
def train(mnist_dir):
    return load_mnist(mnist_dir, "train")


@pytest.fixture(scope="module")
def test_split(mnist_dir):
    return load_mnist(mnist_dir, "test")


# ----------------------------------------------------------------------------- real files


def test_train_split_shapes_range_and_published_moments(train):
    images, labels = train
    assert images.shape == (60000, 784) and images.dtype == np.float32
    assert labels.shape == (60000,) and labels.dtype == np.int32
    assert images.min() == 0.0 and images.max() == 1.0
    # Deterministic statistics of a fixed data set: the published 0.1307 / 0.3081.
    assert abs(images.mean(dtype=np.float64) - 0.1307) < 1e-3
    assert abs(images.std(dtype=np.float64) - 0.3081) < 1e-3
    assert labels.min() == 0 and labels.max() == 9
    assert set(np.unique(labels)) == set(range(10))


def test_test_split_shapes(test_split):
    images, labels = test_split
    assert images.shape == (10000, 784) and images.dtype == np.float32
    assert labels.shape == (10000,) and 0 <= labels.min() and labels.max() <= 9


def test_raw_files_found_through_the_environment_variable(tmp_path, monkeypatch, mnist_dir, test_split):
    for stem in MNIST_FILES["test"]:
        (tmp_path / stem).write_bytes(gzip.decompress((mnist_dir / f"{stem}.gz").read_bytes()))
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    assert resolve_mnist_dir() == tmp_path.resolve()
    images, labels = load_mnist(split="test")
    np.testing.assert_array_equal(images, test_split[0])
    np.testing.assert_array_equal(labels, test_split[1])


# ----------------------------------------------------------------------------- broken files


def _copy_test_files(source: Path, destination: Path) -> None:
    for stem in MNIST_FILES["test"]:
        shutil.copy(source / f"{stem}.gz", destination / f"{stem}.gz")


def test_truncated_gzip_file_gives_a_clear_value_error(tmp_path, mnist_dir):
    _copy_test_files(mnist_dir, tmp_path)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:100_000])
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.gz.*truncated"):
        load_mnist(tmp_path, "test")


def test_truncated_payload_gives_a_clear_value_error(tmp_path, mnist_dir):
    """A well-formed gzip stream whose IDX payload is short (a truncated raw file, re-zipped)."""
    _copy_test_files(mnist_dir, tmp_path)
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-10]))
    with pytest.raises(ValueError, match=r"truncated.*\(10000,\)"):
        load_mnist(tmp_path, "test")


def test_wrong_magic_number_gives_a_clear_value_error(tmp_path, mnist_dir):
    _copy_test_files(mnist_dir, tmp_path)
    # A label file where the image file should be.
    shutil.copy(tmp_path / "t10k-labels-idx1-ubyte.gz", tmp_path / "t10k-images-idx3-ubyte.gz")
    with pytest.raises(ValueError, match="magic number 0x00000801, expected 0x00000803"):
        load_mnist(tmp_path, "test")


def test_tiny_header_gives_a_clear_value_error(tmp_path):
    for stem in MNIST_FILES["test"]:
        (tmp_path / stem).write_bytes(b"\x00\x00\x08")
    with pytest.raises(ValueError, match="truncated IDX file"):
        load_mnist(tmp_path, "test")


# ----------------------------------------------------------------------------- missing files


def test_missing_folder_names_the_files_the_sources_and_the_env_var(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        load_mnist(tmp_path / "nowhere")
    message = str(error.value)
    for name in ALL_FILE_NAMES:
        assert name in message
    assert ENV_VAR in message and "nowhere" in message and "mirror" in message


def test_environment_variable_does_not_silently_fall_back(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=ENV_VAR):
        load_mnist()


def test_no_folder_and_no_environment_variable_searches_nowhere(tmp_path, monkeypatch):
    """The loader has no default folder: the script chooses one and passes it in."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    (tmp_path / "shared" / "data" / "mnist").mkdir(parents=True)  # a `shared` folder it must not find
    monkeypatch.chdir(tmp_path / "shared")
    with pytest.raises(FileNotFoundError, match=f"no `data_dir`, and \\${ENV_VAR} is not set"):
        load_mnist()


def test_missing_file_in_existing_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.gz"):
        load_mnist(tmp_path, "train")


def test_unknown_split_is_refused(tmp_path):
    with pytest.raises(ValueError, match="split"):
        load_mnist(tmp_path, "validation")


# ----------------------------------------------------------------------------- binarisation


def _binarisation_z_scores(intensities: np.ndarray, binary: np.ndarray) -> np.ndarray:
    """Per intensity bin: (mean of the bits − mean intensity) / SE.

    Given the intensities p_i, the bits are independent Bernoulli(p_i), so the exact SE of the
    bin's mean bit is √(Σ p_i(1 − p_i)) / n. Bins in the interior make a threshold (static
    binarisation) fail, which a single overall mean would barely notice.
    """
    edges = np.array([1e-9, 0.25, 0.5, 0.75, 1.0 - 1e-9])
    scores = []
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        in_bin = (intensities > low) & (intensities < high)
        p, b = intensities[in_bin].astype(np.float64), binary[in_bin].astype(np.float64)
        se = np.sqrt(np.sum(p * (1 - p))) / p.size
        scores.append((b.mean() - p.mean()) / se)
    return np.array(scores)


def test_binarize_draws_bernoulli_intensity(test_split):
    images = test_split[0][:2000]
    binary = np.asarray(jax.jit(binarize)(jax.random.key(0), images))
    assert binary.shape == images.shape and binary.dtype == np.float32
    assert set(np.unique(binary)) == {0.0, 1.0}
    # Intensity 0 and 1 are deterministic.
    assert np.all(binary[images == 0.0] == 0.0) and np.all(binary[images == 1.0] == 1.0)
    p = images.astype(np.float64)
    overall_z = (binary.mean() - p.mean()) / (np.sqrt(np.sum(p * (1 - p))) / p.size)
    assert abs(overall_z) < Z_THRESHOLD
    assert np.all(np.abs(_binarisation_z_scores(images, binary)) < Z_THRESHOLD)
    # Dynamic: a new key gives a new binarisation.
    assert np.any(np.asarray(binarize(jax.random.key(1), images)) != binary)


def test_static_threshold_binarisation_is_detected(test_split):
    """Mutant: thresholding at 0.5 instead of sampling must fail the same check."""
    images = test_split[0][:2000]
    thresholded = (images > 0.5).astype(np.float32)
    assert np.any(np.abs(_binarisation_z_scores(images, thresholded)) >= Z_THRESHOLD)
