"""One ``.keras`` file, explained on Keras's TensorFlow, JAX and PyTorch backends, gives the same maps.

Keras fixes its backend at import, so the JAX and PyTorch maps are computed in a
subprocess each (tests/backend_maps.py) and compared with the TensorFlow maps of
the same file, computed here. A backend that is not installed is skipped (CI, .ci/run,
installs both: the ``backends`` extra).

The raw maps are compared element by element as computed, with no rescaling
(``allclose``: relative 1e-3, absolute 1e-4 of the TensorFlow map's maximum), so a
backend whose maps are right in shape but wrong in scale fails; Pearson r alone would
not see it. Measured: every difference is below 1e-5 of its map's maximum.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import backend_maps
import numpy as np
import pytest

RTOL = 1e-3  # relative, element by element
ATOL = 1e-4  # absolute, as a fraction of the TensorFlow map's maximum |value|
MIN_PEARSON = 0.999


@pytest.fixture(scope="module")
def tensorflow_maps(tmp_path_factory):
    """The model file (written under TensorFlow) and its TensorFlow maps."""
    import keras

    assert keras.backend.backend() == "tensorflow"
    path = tmp_path_factory.mktemp("backends") / "model.keras"
    backend_maps.build_model().save(path)
    return path, backend_maps.compute_maps(str(path))


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(np.corrcoef(a, b)[0, 1])


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_maps_agree_with_tensorflow(backend, tensorflow_maps, tmp_path):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed (pip install 'xaipipe[backends]')")
    model_path, expected = tensorflow_maps
    out = tmp_path / f"{backend}.npz"
    env = {**os.environ, "KERAS_BACKEND": backend, "CUDA_VISIBLE_DEVICES": "", "JAX_PLATFORMS": "cpu"}
    script = Path(backend_maps.__file__)
    result = subprocess.run(
        [sys.executable, str(script), str(model_path), str(out)],
        env=env, cwd=script.parent.parent, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    got = np.load(out)
    assert str(got["backend"]) == backend
    np.testing.assert_allclose(got["scores"], expected["scores"], rtol=1e-4, atol=1e-5)

    correlations = {name: pearson(got[name], expected[name]) for name in backend_maps.NAMES}
    print(backend, {name: round(r, 6) for name, r in correlations.items()})
    for name in backend_maps.NAMES:
        assert got[name].shape == expected[name].shape, name
        assert np.ptp(expected[name]) > 0, f"{name}: the TensorFlow map is constant, the test says nothing"
    low = {name: r for name, r in correlations.items() if not r >= MIN_PEARSON}
    assert not low, f"{backend} maps differ from TensorFlow's (Pearson r < {MIN_PEARSON}): {low}"
    # the same values, not only the same pattern: a map scaled by any factor != 1 fails here
    differ = {
        name: float(np.abs(got[name] - expected[name]).max() / np.abs(expected[name]).max())
        for name in backend_maps.NAMES
        if not np.allclose(got[name], expected[name], rtol=RTOL, atol=ATOL * np.abs(expected[name]).max())
    }
    assert not differ, f"{backend} maps differ from TensorFlow's (max |difference| / max |map|): {differ}"
    for name in ("limepro", "limecon"):  # same seed, same masks: the same segments are shown
        np.testing.assert_array_equal(got[name] > 0, expected[name] > 0, err_msg=name)
