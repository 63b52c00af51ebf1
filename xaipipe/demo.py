"""The built-in demo: synthetic grayscale "lesion" images and a small CNN trained on them.

Three classes: a bright disk, a bright square, or no lesion, on a textured
background. Everything is drawn from fixed seeds, so the demo is the same on
every machine. Each image comes with its ground-truth lesion mask.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from xaipipe.logs import progress
from xaipipe.preprocess import Preprocessing
from xaipipe.writers import write_png

CLASS_NAMES = ("disk", "none", "square")  # sorted, as class subfolders are read
#: The file that marks a folder as the demo's: written before any demo file, so that a file
#: in a demo folder without it was put there by someone else and is never overwritten.
MARKER = ".xaipipe-demo"


def mark_demo_folder(folder: str | os.PathLike) -> None:
    """Mark ``folder`` as the demo's own (before the demo writes anything into it)."""
    from xaipipe.atomic import write_bytes_atomic

    marker = Path(folder) / MARKER
    if not marker.exists():
        write_bytes_atomic(marker, b"written by the xaipipe demo, which may overwrite the files in this folder\n")


def check_demo_folder(folder: str | os.PathLike, paths: Sequence[str | os.PathLike]) -> None:
    """ValueError naming the first of ``paths`` (the demo's files) that exists in an unmarked ``folder``.

    Such a file was not written by the demo, which would overwrite it.
    """
    if (Path(folder) / MARKER).exists():
        return
    for path in paths:
        if os.path.lexists(path):
            raise ValueError(
                f"{path} exists but was not written by the demo (its folder {folder} has no {MARKER} file), "
                "and the demo would overwrite it: move that file out of the folder, or set `output` to another folder "
                f"(a demo that an earlier xaipipe version built there: delete {folder} and run again)"
            )


def sample_ids(n_per_class: int) -> list[str]:
    """The demo's sample ids, in the order that :func:`xaipipe.samples.discover_folder` lists them."""
    return sorted(f"{name}/{name}_{i:04d}.png" for name in CLASS_NAMES for i in range(n_per_class))


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth, tissue-like background in about 40..150."""
    coarse = cv2.resize(rng.normal(0, 1, (6, 6)), (size, size), interpolation=cv2.INTER_CUBIC)
    medium = cv2.GaussianBlur(rng.normal(0, 1, (size, size)), (0, 0), size / 40)
    medium /= medium.std() + 1e-9
    fine = rng.normal(0, 1, (size, size))
    return 95 + 18 * coarse + 14 * medium + 6 * fine


def synthesize(kind: str, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One demo image (uint8, size x size) of class ``kind`` and its lesion mask (0 or 255)."""
    image = _texture(rng, size)
    mask = np.zeros((size, size), np.uint8)
    if kind != "none":
        radius = rng.uniform(0.09, 0.17) * size
        margin = radius + 0.05 * size
        cy, cx = rng.uniform(margin, size - margin, 2)
        if kind == "disk":
            cv2.circle(mask, (round(cx), round(cy)), round(radius), 255, -1, lineType=cv2.LINE_8)
        elif kind == "square":
            half = radius * 0.9
            cv2.rectangle(mask, (round(cx - half), round(cy - half)), (round(cx + half), round(cy + half)), 255, -1)
        else:
            raise ValueError(f"unknown demo class {kind!r}; valid: {CLASS_NAMES}")
        profile = mask.astype(np.float64) / 255
        if kind == "disk":  # a dome, like a nodule: brightest at the centre
            yy, xx = np.mgrid[:size, :size]
            rr = np.clip(np.hypot(yy - cy, xx - cx) / radius, 0, 1)
            profile *= 0.6 + 0.4 * np.sqrt(1 - rr**2)
        soft = cv2.GaussianBlur(profile, (0, 0), size / 160)
        image += soft * rng.uniform(60, 90)
    return np.clip(np.round(image), 0, 255).astype(np.uint8), mask


def write_demo_data(
    ids: Sequence[str],
    image_paths: Sequence[str | os.PathLike],
    mask_paths: Sequence[str | os.PathLike],
    size: int,
    seed: int,
) -> None:
    """Write the demo images and masks of the samples ``ids`` (``class/name.png``, as
    :func:`sample_ids` gives them) to ``image_paths`` and ``mask_paths``, as PNG files."""
    if not len(ids) == len(image_paths) == len(mask_paths):
        raise ValueError(f"{len(ids)} demo ids for {len(image_paths)} image and {len(mask_paths)} mask paths")
    rng = np.random.default_rng(seed)
    for sample_id, image_path, mask_path in progress(list(zip(ids, image_paths, mask_paths)), "demo images"):
        image, mask = synthesize(sample_id.split("/")[0], size, rng)
        write_png(image_path, image)
        write_png(mask_path, mask)


def _training_set(
    n_per_class: int, size: int, seed: int, preprocessing: Preprocessing
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(CLASS_NAMES)), n_per_class)
    rng.shuffle(labels)
    inputs = np.stack([preprocessing.model_input(synthesize(CLASS_NAMES[k], size, rng)[0]) for k in labels])
    return inputs, labels


def build_demo_model(input_shape: tuple[int, ...], n_classes: int):
    """A small CNN: three conv blocks, global average pooling, softmax."""
    import keras

    inputs = keras.Input(input_shape, name="image")
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(name="pool2")(x)
    x = keras.layers.Conv2D(48, 3, padding="same", activation="relu", name="conv3")(x)
    x = keras.layers.Conv2D(48, 3, padding="same", activation="relu", name="conv4")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax", name="classes")(x)
    return keras.Model(inputs, outputs, name="xaipipe_demo_cnn")


def train_demo_model(
    model_path: str | os.PathLike,
    preprocessing: Preprocessing,
    image_size: int,
    seed: int,
    n_train_per_class: int = 500,
    n_val_per_class: int = 100,
    epochs: int = 20,
) -> dict[str, Any]:
    """Train the demo CNN from fixed seeds, save it as ``.keras`` and return its metrics."""
    import keras
    import tensorflow as tf

    from xaipipe.atomic import atomic_path

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    x_train, y_train = _training_set(n_train_per_class, image_size, seed + 1, preprocessing)
    x_val, y_val = _training_set(n_val_per_class, image_size, seed + 2, preprocessing)
    model = build_demo_model(preprocessing.input_shape, len(CLASS_NAMES))
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(
        x_train, y_train, batch_size=32, epochs=epochs, validation_data=(x_val, y_val), verbose=2, shuffle=True
    )
    val_accuracy = float(model.evaluate(x_val, y_val, verbose=0)[1])
    with atomic_path(model_path) as tmp:
        keras_tmp = tmp.with_suffix(".keras")  # Keras insists on the extension
        model.save(keras_tmp)
        os.replace(keras_tmp, tmp)
    return {
        "val_accuracy": val_accuracy,
        "train_accuracy": float(history.history["accuracy"][-1]),
        "epochs": epochs,
        "n_train": int(len(y_train)),
        "n_val": int(len(y_val)),
        "class_names": list(CLASS_NAMES),
        "seed": seed,
    }
