"""The maps of every method for one ``.keras`` file on the Keras backend this process runs.

    KERAS_BACKEND=jax python tests/backend_maps.py MODEL.keras OUT.npz

Used by tests/test_backends.py: Keras fixes its backend when it is imported, so
each backend runs this in a process of its own; the TensorFlow maps come from
:func:`compute_maps` in the test's own process, on the same file.
"""

from __future__ import annotations

import os
import sys

import numpy as np

SHAPE = (24, 24, 3)
N_CLASSES = 4
# name -> (method key, parameters); the "_nested" ones target a layer inside the nested sub-model
METHODS: dict[str, tuple[str, dict]] = {
    "gradcam": ("gradcam", {}),
    "gradcam_nested": ("gradcam", {"layer": "block/inner_conv"}),
    "gradcam_probabilities": ("gradcam", {"score": "probabilities"}),
    "gradcam++": ("gradcam++", {}),
    "guidedgradcam": ("guidedgradcam", {}),
    "guidedgradcam_nested": ("guidedgradcam", {"layer": "block/inner_conv"}),  # ReLUs above the layer
    "hirescam": ("hirescam", {}),
    "xgradcam": ("xgradcam", {}),
    "layercam": ("layercam", {"layer": "conv1"}),
    "scorecam": ("scorecam", {"chunk_size": 10}),  # 2 x 12 masked copies in calls of 10: a padded last call on JAX
    "eigencam": ("eigencam", {}),
    "eigencam_nested": ("eigencam", {"layer": "block/inner_conv"}),  # activations read inside the nested block
    "saliency": ("saliency", {}),
    "guidedbackprop": ("guidedbackprop", {}),
    "integratedgradients": ("integratedgradients", {"steps": 8}),
    "integratedgradients_trapezoid": ("integratedgradients", {"steps": 4, "rule": "trapezoid", "chunk_size": 3}),
    "integratedgradients_gl": ("integratedgradients", {"steps": 4, "rule": "gauss-legendre"}),
    "occlusion": ("occlusion", {"patch_size": 6}),
    "limepro": ("limepro", {"num_samples": 150, "segments": 16, "seed": 3}),
    "limecon": ("limecon", {"num_samples": 150, "segments": 16, "seed": 3}),
    # per-image superpixels (11 and 15 of them on these noise images): label maps travel with the inputs
    "limepro_slic": (
        "limepro",
        {"num_samples": 150, "segments": 16, "seed": 3, "segmentation": "slic", "compactness": 80},
    ),
    "inputxgradient": ("inputxgradient", {}),
    "smoothgrad": ("smoothgrad", {"noise": {"samples": 6}, "chunk_size": 5}),  # one input's copies in parts
    "vargrad": ("vargrad", {"noise": {"samples": 6}}),
    "integratedgradients_sq": ("integratedgradients", {"steps": 4, "noise": {"kind": "smoothgrad_sq", "samples": 3}}),
    "gradcam_smoothgrad": ("gradcam", {"noise": {"samples": 4}}),
    "rise": ("rise", {"num_masks": 150, "cells": 4, "chunk_size": 64}),
}

#: The CAM methods computed together from one pass (xaipipe.methods.camfamily), each map stored as "family_<key>".
FAMILY = ("gradcam", "gradcam++", "hirescam", "xgradcam", "layercam")
#: Every map the test compares: METHODS' and the family's.
NAMES = (*METHODS, *(f"family_{key}" for key in FAMILY))


def build_model():
    """A small CNN: conv+ReLU, BatchNormalization, a nested Functional block, a softmax head;
    weights drawn from a fixed seed (batch-norm statistics included)."""
    import keras

    block_in = keras.Input((12, 12, 8))
    y = keras.layers.Conv2D(8, 3, padding="same", name="inner_conv")(block_in)
    y = keras.layers.ReLU(name="inner_relu")(y)
    block = keras.Model(block_in, y, name="block")

    inputs = keras.Input(SHAPE)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = block(x)
    x = keras.layers.Conv2D(12, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(N_CLASSES, activation="softmax", name="classes")(x)
    model = keras.Model(inputs, outputs, name="backend_cnn")

    rng = np.random.default_rng(7)
    for layer in [*model.layers, *block.layers]:
        shapes = [tuple(w.shape) for w in layer.weights]
        if not shapes or isinstance(layer, keras.Model):
            continue
        if isinstance(layer, keras.layers.BatchNormalization):  # gamma, beta, moving mean, moving variance
            gamma, beta, mean, variance = shapes
            layer.set_weights([
                rng.uniform(0.5, 1.5, gamma), rng.normal(0.0, 0.1, beta),
                rng.normal(0.0, 0.2, mean), rng.uniform(0.5, 1.5, variance),
            ])  # fmt: skip
            continue
        kernel, bias = shapes
        fan_in = int(np.prod(kernel[:-1]))
        layer.set_weights([rng.normal(0.0, np.sqrt(2.0 / fan_in), kernel), rng.normal(0.0, 0.05, bias)])
    return model


def inputs_and_classes() -> tuple[np.ndarray, np.ndarray]:
    """Two fixed images and two target classes each (several targets in one call)."""
    x = np.random.default_rng(11).uniform(0.0, 1.0, (2, *SHAPE)).astype(np.float32)
    return x, np.array([[0, 2], [3, 1]], np.int32)


def compute_maps(model_path: str) -> dict[str, np.ndarray]:
    """The raw maps (B, T, H, W) of every entry of METHODS and of the FAMILY's members, and the model's scores."""
    from xaipipe.autodiff import Scores
    from xaipipe.methods import create
    from xaipipe.methods.camfamily import create_family
    from xaipipe.model import load_model

    model = load_model(model_path)
    x, classes = inputs_and_classes()
    maps = {name: create(key, model, **params).raw_maps(x, classes) for name, (key, params) in METHODS.items()}
    _, family = create_family(model, [(key, {}) for key in FAMILY])
    maps.update({f"family_{key}": raw for key, raw in zip(FAMILY, family.raw_maps(x, classes), strict=True)})
    maps["scores"] = Scores(model, "probabilities")(x)
    return maps


def main(model_path: str, out_path: str) -> None:
    import keras

    maps = compute_maps(model_path)
    np.savez(out_path, backend=keras.backend.backend(), **maps)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main(*sys.argv[1:])
