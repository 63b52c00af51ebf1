"""A model with a custom layer in the pipeline: config model.imports names the module that registers it.

Without it the jobs cannot load the model (Keras cannot find the class); with it every model job imports the
module first, and the module's file is part of the model's checksum, so that a changed layer reruns what the
model computed, judged by content (a module restored with its old modification time too).
"""

from __future__ import annotations

import importlib
import os
import sys

import keras
import numpy as np
import pytest

from pipeline_runs import snakemake, snakemake_ok
from xaipipe import h5store
from xaipipe.writers import write_png

pytestmark = pytest.mark.e2e

MODULE = '''
import keras

FACTOR = {factor}


@keras.saving.register_keras_serializable(package="xaipipe_test_custom")
class Scale(keras.layers.Layer):
    def call(self, x):
        return FACTOR * x
'''


def write_module(workdir, factor: float) -> None:
    (workdir / "my_layers.py").write_text(MODULE.format(factor=factor))


def load_module(workdir):
    sys.path.insert(0, str(workdir))
    try:
        sys.modules.pop("my_layers", None)
        return importlib.import_module("my_layers")
    finally:
        sys.path.remove(str(workdir))


def probabilities(workdir, model_path) -> np.ndarray:
    """The predictions table's probabilities."""
    rows = [line.split("\t") for line in (workdir / "results/predictions.tsv").read_text().splitlines()]
    columns = [k for k, name in enumerate(rows[0]) if name.startswith("p_")]
    return np.array([[float(row[k]) for k in columns] for row in rows[1:]])


def test_a_model_with_a_custom_layer_runs_with_its_module_imported(tmp_path):
    write_module(tmp_path, 2.0)
    layers = load_module(tmp_path)
    inputs = keras.Input((16, 16, 1))
    x = layers.Scale(name="scale")(keras.layers.Conv2D(2, 3, name="conv")(inputs))
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    keras.Model(inputs, outputs).save(tmp_path / "model.keras")
    rng = np.random.default_rng(0)
    for k in range(3):
        write_png(tmp_path / "images" / f"s{k}.png", rng.integers(0, 255, (16, 16), dtype=np.uint8))
    config = {
        "data": {"images": str(tmp_path / "images")},
        "model": {"path": str(tmp_path / "model.keras"), "imports": ["my_layers"]},
        "preprocessing": {"size": [16, 16], "channels": 1, "standardize": "minmax"},
        "methods": ["gradcam"],
        "evaluation": {"metrics": []},
    }
    without = snakemake(tmp_path, {**config, "model": {"path": str(tmp_path / "model.keras")}})
    assert without.returncode != 0
    log = "".join(path.read_text() for path in (tmp_path / "results/logs").rglob("*.log"))
    assert "it uses the class 'Scale', which is not Keras's own" in log and "config key model.imports" in log
    missing = snakemake(tmp_path, {**config, "model": {**config["model"], "imports": ["no_such_module"]}}, "-n")
    assert "config key model.imports: module 'no_such_module' not found" in missing.stderr + missing.stdout

    snakemake_ok(tmp_path, config)
    with h5store.PreprocessedShard.open(tmp_path / "results/preprocessed/shard-00000.h5") as shard:
        x = shard.inputs(slice(0, 3))
    model = keras.models.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(probabilities(tmp_path, "model.keras"), model.predict(x, verbose=0), atol=2e-6)
    before = probabilities(tmp_path, "model.keras")

    # the layer changed, its file restored with its old modification time: judged by content, all rerun
    stamp = os.stat(tmp_path / "my_layers.py").st_mtime_ns
    write_module(tmp_path, 7.0)
    os.utime(tmp_path / "my_layers.py", ns=(stamp, stamp))
    rerun = snakemake_ok(tmp_path, config)
    assert "my_layers.py changed" in rerun.stderr
    load_module(tmp_path)
    model = keras.models.load_model(tmp_path / "model.keras")
    after = probabilities(tmp_path, "model.keras")
    np.testing.assert_allclose(after, model.predict(x, verbose=0), atol=2e-6)
    assert np.abs(after - before).max() > 1e-3
