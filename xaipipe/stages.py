"""The pipeline's stages as plain functions: the Snakemake scripts only call these.

Each stage reads and writes one shard at a time, batch by batch, and writes its
output atomically.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xaipipe import h5store
from xaipipe.atomic import atomic_path
from xaipipe.imageio import load_image, write_png
from xaipipe.logs import progress
from xaipipe.naming import overlay_name
from xaipipe.preprocess import Preprocessing, display_image

log = logging.getLogger(__name__)


def preprocess_shard(
    image_dir: str | os.PathLike,
    ids: Sequence[str],
    labels: Sequence[int] | None,
    class_names: Sequence[str] | None,
    preprocessing: Preprocessing,
    out_path: str | os.PathLike,
) -> None:
    """Load the images ``ids`` from ``image_dir`` and write their model inputs and overlay images."""
    image_dir = Path(image_dir)
    labels = [-1] * len(ids) if labels is None else list(labels)
    attrs = {"preprocessing": preprocessing.__dict__, "class_names": list(class_names or []), "image_dir": str(image_dir)}
    with h5store.create(out_path, h5store.PREPROCESSED, **attrs) as f:
        h5store.create_preprocessed(f, ids, preprocessing.input_shape, labels)
        for row, sample_id in enumerate(progress(ids, "preprocess")):
            image = load_image(image_dir / sample_id)
            f["inputs"][row] = preprocessing.model_input(image)
            h5store.put_overlay_image(f, row, display_image(image))


def predict_shard(
    preprocessed_path: str | os.PathLike,
    model_path: str | os.PathLike,
    out_path: str | os.PathLike,
    batch_size: int,
) -> None:
    """Run the model on one preprocessed shard and cache the class scores."""
    from xaipipe.model import load_model, predict_batch, sha256_file

    model = load_model(model_path)
    with h5store.PreprocessedShard.open(preprocessed_path) as shard:
        n_batches = -(-len(shard) // batch_size)
        scores = np.concatenate(
            [predict_batch(model, x) for _, x in progress(shard.batches(batch_size), "predict", n_batches, "batch")]
        )
        class_names = h5store.json_attr(shard.file, "class_names")
        h5store.write_predictions(
            out_path,
            shard.ids,
            shard.labels,
            scores,
            class_names=class_names,
            model_sha256=sha256_file(model_path),
            model_path=str(model_path),
        )


def merge_predictions(paths: Sequence[str | os.PathLike], out_path: str | os.PathLike) -> None:
    """Write one tab-separated table of all predictions (one row per sample)."""
    with atomic_path(out_path) as tmp, open(tmp, "w") as out:
        header_written = False
        for path in paths:
            table = h5store.read_predictions(path)
            k = table["probabilities"].shape[1]
            names = table["class_names"] if len(table["class_names"]) == k else [str(c) for c in range(k)]
            if not header_written:
                out.write("\t".join(["sample", "label", "predicted", *(f"p_{n}" for n in names)]) + "\n")
                header_written = True
            for sample_id, label, predicted, probs in zip(
                table["ids"], table["labels"], table["predicted"], table["probabilities"], strict=True
            ):
                label_name = names[label] if label >= 0 else ""
                cells = [sample_id, label_name, names[predicted], *(f"{p:.6f}" for p in probs)]
                out.write("\t".join(cells) + "\n")


def compute_heatmaps_shard(
    preprocessed_path: str | os.PathLike,
    predictions_path: str | os.PathLike,
    model_path: str | os.PathLike,
    method: str,
    method_params: dict[str, Any],
    targets: str,
    batch_size: int,
    out_path: str | os.PathLike,
) -> None:
    """Compute one method's maps for every sample and target class of a shard."""
    from xaipipe import methods
    from xaipipe.methods.base import target_classes
    from xaipipe.model import load_model, sha256_file

    model = load_model(model_path)
    explainer = methods.create(method, model, **method_params)
    scores = h5store.read_predictions(predictions_path)["probabilities"]
    classes = target_classes(scores, targets)
    n, n_targets = classes.shape
    log.info("method %s, target layer %s, %d samples x %d targets", method, explainer.target_layer, n, n_targets)
    attrs = {
        "method": methods.canonical_name(method),
        "method_params": {**method_params, **explainer.params},
        "target_layer": explainer.target_layer,
        "targets": targets,
        "model_sha256": sha256_file(model_path),
        "model_path": str(model_path),
    }
    with h5store.PreprocessedShard.open(preprocessed_path) as shard, h5store.create(
        out_path, h5store.HEATMAPS, **attrs
    ) as f:
        h5store.create_heatmaps(f, shard.ids, n * n_targets, explainer.spatial_shape)
        n_batches = -(-n // batch_size)
        for rows, inputs in progress(shard.batches(batch_size), f"heatmaps {method}", n_batches, "batch"):
            raw, normalized = explainer.explain(inputs, classes[rows])
            maps = slice(rows.start * n_targets, rows.stop * n_targets)
            f["sample_index"][maps] = np.repeat(np.arange(rows.start, rows.stop), n_targets)
            f["class_index"][maps] = classes[rows].reshape(-1)
            f["raw"][maps] = raw.reshape(-1, *explainer.spatial_shape)
            f["normalized"][maps] = normalized.reshape(-1, *explainer.spatial_shape)


def render_shard(
    preprocessed_path: str | os.PathLike,
    heatmaps_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    overlay: bool,
    alpha: float,
    colormap: str,
    class_suffix: bool,
) -> list[Path]:
    """Write one PNG per map of a heatmaps file; returns the paths written."""
    from xaipipe.render import render

    written = []
    with h5store.PreprocessedShard.open(preprocessed_path) as shard, h5store.open_checked(
        heatmaps_path, h5store.HEATMAPS
    ) as maps:
        ids = shard.ids
        sample_index, class_index = maps["sample_index"][()], maps["class_index"][()]
        for m in progress(range(len(sample_index)), "render", unit="map"):
            row = int(sample_index[m])
            picture = render(maps["normalized"][m], shard.overlay_image(row), overlay, alpha, colormap)
            path = Path(out_dir) / overlay_name(ids[row], int(class_index[m]) if class_suffix else None)
            write_png(path, picture)
            written.append(path)
    return written


def write_json(path: str | os.PathLike, data: Any) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(data, indent=2) + "\n")
