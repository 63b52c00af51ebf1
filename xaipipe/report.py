"""The study's report (``results/report/``): what the gallery page shows, gathered from the run.

:func:`build_report` joins each shard's views (:mod:`xaipipe.thumbnails`) with the
predictions and the evaluation's per-map values into the gallery's data, one JSON file per
shard (``data/shard-NNNNN.json``, the format :mod:`xaipipe.gallery` reads), copies the
evaluation's plots beside the page, and writes the pages with what reproduces the study:
the config, the model's checksum and the versions of xaipipe, Keras and its backend.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from xaipipe import h5store
from xaipipe.atomic import atomic_path, write_bytes_atomic


def keras_backend() -> str:
    """The backend Keras runs on, found as Keras finds it (``KERAS_BACKEND``, else ``~/.keras/keras.json``,
    else TensorFlow) without importing it: the gallery job stays light."""
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        return json.loads(Path(home, "keras.json").read_text()).get("backend", "tensorflow")
    except (OSError, ValueError):
        return "tensorflow"


def versions() -> dict[str, str]:
    """The versions of what computed the study: xaipipe, Keras and its backend, numpy, Snakemake."""
    import importlib.metadata as metadata

    from xaipipe import __version__

    found = {"xaipipe": __version__, "keras backend": keras_backend()}
    for package in ("keras", "tensorflow", "jax", "torch", "numpy", "h5py", "snakemake"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return found


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def shard_data(
    views_path: str | os.PathLike,
    predictions_path: str | os.PathLike,
    methods: Sequence[str],
    evaluation_paths: Mapping[str, str | os.PathLike],
) -> dict[str, Any]:
    """One shard's gallery data: each sample's views, label, prediction and its maps' metric values."""
    views = json.loads(Path(views_path).read_text())
    predictions = h5store.read_predictions(predictions_path)
    if [s["id"] for s in views["samples"]] != list(predictions.ids):
        raise ValueError(f"{views_path} and {predictions_path} list other samples; delete {views_path} to redo it")
    values: dict[str, dict[tuple[int, int], dict[str, float | None]]] = {}
    metric_names: list[str] = []
    for method, path in evaluation_paths.items():
        found = h5store.EvaluationFile.read(path)
        metric_names += [name for name in found.values if name not in metric_names]
        values[method] = {
            (int(row), int(c)): {name: _finite(v[m]) for name, v in found.values.items()}
            for m, (row, c) in enumerate(zip(found.sample_index, found.class_index, strict=True))
        }
    skipped = predictions.skipped if predictions.skipped is not None else np.zeros(len(predictions.ids), bool)
    samples = []
    for row, record in enumerate(views["samples"]):
        maps = {
            method: [{**entry, "metrics": values.get(method, {}).get((row, entry["class"]), {})} for entry in entries]
            for method, entries in record["maps"].items()
        }
        samples.append(
            {
                "id": record["id"],
                "label": int(predictions.labels[row]),
                "predicted": int(predictions.predicted[row]),
                "probabilities": None if skipped[row] else [float(p) for p in predictions.probabilities[row]],
                "skipped": bool(skipped[row] or not record["image"]),
                "image": record["image"],
                "maps": maps,
            }
        )
    return {
        "methods": list(methods),
        "class_names": list(predictions.class_names),
        "spatial_dims": views["spatial_dims"],
        "signed": list(views.get("signed") or []),
        "metrics": metric_names,
        "samples": samples,
    }


def build_report(
    views_paths: Sequence[str | os.PathLike],
    predictions_paths: Sequence[str | os.PathLike],
    methods: Sequence[str],
    evaluation_paths: Sequence[str | os.PathLike],
    summary_path: str | os.PathLike | None,
    agreement_path: str | os.PathLike | None,
    plot_paths: Sequence[str | os.PathLike],
    failures_path: str | os.PathLike,
    checksum_path: str | os.PathLike,
    config: Mapping[str, Any],
    report_dir: str | os.PathLike,
) -> None:
    """The gallery (``index.html``) and summary page (``summary.html``) of a run in ``report_dir``.

    ``evaluation_paths``: every method's evaluation files, method by method in the order of
    ``methods`` with the shards of ``views_paths`` (empty without the evaluation).
    """
    from xaipipe import gallery
    from xaipipe.evaluate import read_summary, read_table

    report_dir = Path(report_dir)
    per_method = len(evaluation_paths) // len(methods) if evaluation_paths else 0
    data_paths = []
    for s, (views, predictions) in enumerate(zip(views_paths, predictions_paths, strict=True)):
        evaluation = {m: evaluation_paths[k * per_method + s] for k, m in enumerate(methods)} if per_method else {}
        data = shard_data(views, predictions, methods, evaluation)
        path = report_dir / "data" / Path(views).name
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            Path(tmp).write_text(json.dumps(data) + "\n")
        data_paths.append(path)
    plots = []
    for plot in plot_paths:
        target = report_dir / "evaluation" / Path(plot).name
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as tmp:
            shutil.copyfile(plot, tmp)
        plots.append(Path(os.path.relpath(target, report_dir)).as_posix())
    failures = [line.split("\t") for line in Path(failures_path).read_text().splitlines()[1:] if line.strip()]
    checksum = Path(checksum_path).read_text().split()  # "<sha256>  <model path>", as sha256sum writes it
    model_path = checksum[1] if len(checksum) > 1 else str(config["model"]["path"])
    several = len(config.get("models") or {}) > 1
    summary = {
        "title": f"xaipipe: {model_path + ': ' if several else ''}{', '.join(methods)}",
        "colormap": config["render"]["colormap"],
        "evaluation_rows": read_summary(summary_path) if summary_path else [],
        "agreement_rows": read_table(agreement_path) if agreement_path else [],
        "plots": plots,
        "config_yaml": yaml.safe_dump(dict(config), sort_keys=False),
        "model_path": model_path,
        "model_sha256": checksum[0] if checksum else "",
        "versions": versions(),
        "warnings": sum(len(row) > 2 and row[2] == "warning" for row in failures),  # skipped samples: in the data
    }
    gallery.write_gallery(data_paths, report_dir, summary)
    for method in methods:
        write_examples(data_paths, report_dir, method, report_dir / "examples" / f"{method}.png")


#: Samples per predicted class on a method's sheet of examples (Snakemake's report).
EXAMPLES_PER_CLASS = 4


def write_examples(
    data_paths: Sequence[str | os.PathLike],
    report_dir: str | os.PathLike,
    method: str,
    out_path: str | os.PathLike,
    per_class: int = EXAMPLES_PER_CLASS,
) -> None:
    """A sheet of one method's maps: a row per predicted class, its first ``per_class`` samples
    (the map of the predicted class; a volume's axial view), each under its id."""
    import cv2

    rows: dict[int, list[tuple[str, Path]]] = {}
    class_names: list[str] = []
    for path in data_paths:
        data = json.loads(Path(path).read_text())
        class_names = data["class_names"] or class_names
        for sample in data["samples"]:
            entries = sample["maps"].get(method, [])
            chosen = [e for e in entries if e["class"] == sample["predicted"]] or entries
            if sample["skipped"] or not chosen or len(rows.get(sample["predicted"], [])) >= per_class:
                continue
            rows.setdefault(sample["predicted"], []).append((sample["id"], Path(report_dir) / chosen[0]["views"][0]))
    cell, label = 160, 18
    sheet = np.full((max(1, len(rows)) * (cell + label + 8) + 8, 150 + per_class * (cell + 8), 3), 255, np.uint8)
    for r, c in enumerate(sorted(rows)):
        top = 8 + r * (cell + label + 8)
        name = class_names[c] if 0 <= c < len(class_names) else f"class {c}"
        cv2.putText(sheet, name[:16], (8, top + cell // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        for k, (sample_id, picture_path) in enumerate(rows[c]):
            picture = cv2.imread(str(picture_path))
            if picture is None:
                raise ValueError(f"{picture_path}: missing or unreadable; delete {report_dir} and run again")
            h, w = picture.shape[:2]
            scale = cell / max(h, w)
            picture = cv2.resize(picture, (max(1, round(w * scale)), max(1, round(h * scale))))
            left = 150 + k * (cell + 8)
            sheet[top : top + picture.shape[0], left : left + picture.shape[1]] = picture
            caption = sample_id[-22:]
            cv2.putText(sheet, caption, (left, top + cell + 13), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
    ok, data = cv2.imencode(".png", sheet)
    if not ok:
        raise ValueError(f"{out_path}: OpenCV could not encode the sheet")
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out_path, data.tobytes())
