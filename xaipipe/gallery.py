"""The study's report pages (``results/report/``): a gallery of every sample and its maps, and a summary.

Both pages are single static HTML files that open from a file path (``file://``, no server):
their CSS and JavaScript are inlined from ``xaipipe/templates/``, and the gallery's data (the
per-shard JSON manifests, merged) is inlined as one ``<script type="application/json">`` block,
since a page opened from a file may not ``fetch()`` another file. The gallery's script
(``gallery.js``) builds only the current page of rows (50), so a study of 10,000 samples opens
in about the time its data takes to parse. The summary page is drawn here, without script.

A manifest (one per shard, written by the thumbnail job) holds ``methods``, ``class_names``,
``spatial_dims``, ``signed`` (the methods whose maps are signed, in [-1, 1]: the gallery
shows them with the signed colour scale), ``metrics`` and ``samples``; each sample ``id``, ``label`` (-1: unknown),
``predicted`` (-1 where skipped), ``probabilities`` (null where skipped), ``skipped``,
``image`` (its view paths, relative to the report folder: 1 in 2D, axial/coronal/sagittal in
3D) and ``maps`` (method -> [{``class``, ``views``, ``peak``, ``metrics``}]).
"""

from __future__ import annotations

import html
import json
import math
import numbers
import os
import re
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

import cv2
import numpy as np

from xaipipe.atomic import atomic_path, write_bytes_atomic
from xaipipe.drawing import colorize, value_range
from xaipipe.evaluate import COMPARISON_HEADER

#: Rows per page of the gallery (gallery.js reads it from the data block).
PAGE_SIZE = 50
#: The colour scale bar's size (width, height) in pixels.
COLORMAP_SIZE = (256, 16)
#: The colour scale of signed maps, beside ``colormap.png``.
SIGNED_SCALE = "colormap-signed.png"
COMPARISON_COLUMNS = tuple(COMPARISON_HEADER.rstrip("\n").split("\t"))
EVALUATION_COLUMNS = ("variant", "method", "class", "metric", "mean", "ci_low", "ci_high", "n")
AGREEMENT_COLUMNS = ("method_a", "method_b", "mean_spearman", "n")


def write_gallery(manifest_paths: Sequence[str | os.PathLike], out_dir: str | os.PathLike, summary: Mapping) -> None:
    """Write ``out_dir/index.html`` (the gallery), ``out_dir/summary.html``, ``out_dir/colormap.png``
    and ``out_dir/colormap-signed.png`` (the colour scale of signed maps, -1 to 1).

    ``manifest_paths``: the shards' JSON manifests, in order; their view paths are relative to
    ``out_dir``. ``summary``: ``title``, ``colormap`` (a name in :data:`xaipipe.drawing.COLORMAPS`),
    ``evaluation_rows`` (dicts with :data:`EVALUATION_COLUMNS`), ``plots`` (image paths relative
    to ``out_dir``), ``agreement_rows`` (dicts with :data:`AGREEMENT_COLUMNS`), ``config_yaml``,
    ``model_path``, ``model_sha256``, ``versions`` (name -> version) and ``failures`` (a count).
    Each file is written atomically.
    """
    out_dir = Path(out_dir)
    data = merge_manifests(manifest_paths)
    title = str(summary.get("title") or "xaipipe report")
    colormap = str(summary.get("colormap") or "jet")
    write_bytes_atomic(out_dir / "colormap.png", colormap_png(colormap))
    write_bytes_atomic(out_dir / SIGNED_SCALE, colormap_png(colormap, signed=True))
    _write_text(out_dir / "index.html", gallery_html(data, title))
    _write_text(out_dir / "summary.html", summary_html(data, summary, title))


def merge_manifests(manifest_paths: Sequence[str | os.PathLike]) -> dict[str, Any]:
    """The shards' manifests as one: their samples in order; methods and metrics in order of first mention."""
    merged: dict[str, Any] = {
        "methods": [], "class_names": None, "spatial_dims": None, "signed": [], "metrics": [], "samples": []
    }  # fmt: skip
    for path in manifest_paths:
        manifest = json.loads(Path(path).read_text())
        names = manifest.get("class_names")
        if names:  # none, or an empty list: unknown (integer labels without config classes), named below
            if merged["class_names"] is not None and list(names) != merged["class_names"]:
                raise ValueError(f"{path}: class names {names} differ from the other shards' {merged['class_names']}")
            merged["class_names"] = list(names)
        dims = manifest.get("spatial_dims")
        if dims is not None:
            if merged["spatial_dims"] is not None and dims != merged["spatial_dims"]:
                raise ValueError(f"{path}: spatial_dims {dims} differs from the other shards' {merged['spatial_dims']}")
            merged["spatial_dims"] = dims
        samples = [_sample(s) for s in manifest.get("samples", [])]
        mentioned = list(manifest.get("methods") or []) + [m for s in samples for m in s["maps"]]
        merged["methods"] += [m for m in dict.fromkeys(mentioned) if m not in merged["methods"]]
        merged["metrics"] += [m for m in manifest.get("metrics") or [] if m not in merged["metrics"]]
        merged["signed"] += [m for m in manifest.get("signed") or [] if m not in merged["signed"]]
        merged["samples"] += samples
    if merged["class_names"] is None:
        width = max((len(s["probabilities"] or []) for s in merged["samples"]), default=0)
        merged["class_names"] = [str(c) for c in range(width)]
    merged["spatial_dims"] = merged["spatial_dims"] or 2
    return merged


def _sample(sample: Mapping) -> dict[str, Any]:
    skipped = bool(sample.get("skipped", False))
    return {
        "id": str(sample["id"]),
        "label": int(sample.get("label", -1)),
        "predicted": -1 if skipped else int(sample.get("predicted", -1)),
        "probabilities": None if skipped else sample.get("probabilities"),
        "skipped": skipped,
        "image": list(sample.get("image") or []),
        "maps": {} if skipped else dict(sample.get("maps") or {}),
    }


def confusion_matrix(data: Mapping) -> np.ndarray:
    """Counts of (label, predicted) over the samples with a known label that were not skipped."""
    k = len(data["class_names"])
    matrix = np.zeros((k, k), int)
    for s in data["samples"]:
        if s["label"] >= 0 and not s["skipped"] and 0 <= s["predicted"] < k and s["label"] < k:
            matrix[s["label"], s["predicted"]] += 1
    return matrix


def colormap_png(colormap: str, signed: bool = False) -> bytes:
    """The colour scale of ``colormap``, 0 on the left to 1 on the right, as PNG bytes; ``signed``:
    that of signed maps (:data:`xaipipe.drawing.SIGNED_COLORMAP`), -1 on the left to 1 on the right."""
    width, height = COLORMAP_SIZE
    lo, hi = value_range(signed)
    ramp = np.tile(np.linspace(lo, hi, width, dtype=np.float32), (height, 1))
    ok, png = cv2.imencode(".png", cv2.cvtColor(colorize(ramp, colormap, signed), cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("could not encode the colour scale as PNG")
    return png.tobytes()


def gallery_html(data: Mapping, title: str) -> str:
    """The gallery page: the template with its CSS, script and data inlined."""
    payload = {
        **data, "title": title, "page_size": PAGE_SIZE, "colormap": "colormap.png", "colormap_signed": SIGNED_SCALE,
        "summary": "summary.html",
    }  # fmt: skip
    return _fill(
        _template("gallery.html"),
        title=html.escape(title),
        css=_template("gallery.css"),
        js=_script(_template("gallery.js")),
        data=json_for_script(payload),
    )


def summary_html(data: Mapping, summary: Mapping, title: str) -> str:
    """The summary page: evaluation, plots, agreement, confusion matrix, configuration and versions."""
    samples = data["samples"]
    skipped = sum(s["skipped"] for s in samples)
    matrix = confusion_matrix(data)
    warnings = int(summary.get("warnings") or 0)
    return _fill(
        _template("summary.html"),
        title=html.escape(title),
        css=_template("gallery.css"),
        counts=html.escape(
            f"{len(samples)} samples, {skipped} skipped, {int(np.trace(matrix))} of {int(matrix.sum())} labelled "
            f"samples classified correctly; {warnings} warning{'' if warnings == 1 else 's'} (failures.tsv)"
        ),
        evaluation=_table("evaluation", EVALUATION_COLUMNS, summary.get("evaluation_rows") or []),
        plots=_figures(summary.get("plots") or []),
        agreement=_table("agreement", AGREEMENT_COLUMNS, summary.get("agreement_rows") or []),
        confusion=_confusion_table(matrix, data["class_names"]),
        config=html.escape(str(summary.get("config_yaml") or "")),
        model_path=html.escape(str(summary.get("model_path") or "")),
        model_sha256=html.escape(str(summary.get("model_sha256") or "")),
        versions=_table(
            "versions", ("package", "version"),
            [{"package": k, "version": v} for k, v in (summary.get("versions") or {}).items()],
        ),
    )  # fmt: skip


def study_data(models: Mapping[str, Sequence[str | os.PathLike]], out_dir: str | os.PathLike) -> dict[str, Any]:
    """Several models' gallery data as one gallery's, for a page in ``out_dir``.

    ``models``: model name -> its shards' data files (``{model}/report/data/*.json``, whose view
    paths are relative to their report folder). A sample (matched by id; the first model's
    order, then samples only later models have) carries each model's prediction and picture (its
    preprocessed input) under ``predictions`` (the first model's are also its own, as a single model's
    gallery has them) and
    a map column per model and variant, ``"{model} / {variant}"``, variant by variant with the
    models side by side; ``columns`` names each column's model and variant. Models whose class
    names differ cannot share one page: ValueError naming the model.
    """
    out_dir = Path(out_dir)
    merged: dict[str, Any] = {
        "models": list(models), "class_names": None, "spatial_dims": None, "metrics": [], "signed": []
    }  # fmt: skip
    variants: dict[str, list[str]] = {}
    samples: dict[str, dict[str, Any]] = {}
    for model, paths in models.items():
        data = merge_manifests(paths)
        if merged["class_names"] is not None and data["class_names"] != merged["class_names"]:
            raise ValueError(f"model {model!r}: class names {data['class_names']} differ from {merged['class_names']}")
        merged["class_names"] = data["class_names"]
        merged["spatial_dims"] = merged["spatial_dims"] or data["spatial_dims"]
        merged["metrics"] += [m for m in data["metrics"] if m not in merged["metrics"]]
        merged["signed"] += [f"{model} / {variant}" for variant in data["signed"]]
        # the model's report folder, seen from the page
        prefix = Path(os.path.relpath(Path(paths[0]).parent.parent, out_dir)).as_posix() if paths else "."
        for variant in data["methods"]:
            variants.setdefault(variant, []).append(model)
        for sample in data["samples"]:
            image = [f"{prefix}/{view}" for view in sample["image"]]
            # the model's own picture: models whose preprocessing differs (size, crop, window) see other inputs
            prediction = {**{key: sample[key] for key in ("predicted", "probabilities", "skipped")}, "image": image}
            new = {"id": sample["id"], "label": sample["label"], **prediction, "predictions": {}}
            entry = samples.setdefault(sample["id"], {**new, "maps": {}})
            entry["predictions"][model] = prediction
            for variant, maps in sample["maps"].items():
                entry["maps"][f"{model} / {variant}"] = [
                    {**m, "views": [f"{prefix}/{view}" for view in m["views"]]} for m in maps
                ]
    columns = {f"{m} / {v}": {"model": m, "variant": v} for v, owners in variants.items() for m in owners}
    return {
        **merged,
        "methods": list(columns),
        "variants": list(variants),
        "columns": columns,
        "class_names": merged["class_names"] or [],
        "spatial_dims": merged["spatial_dims"] or 2,
        "samples": list(samples.values()),
    }


def write_study(
    models: Mapping[str, Sequence[str | os.PathLike]],
    out_dir: str | os.PathLike,
    experiments: Sequence[Mapping[str, str]],
    comparison_rows: Sequence[Mapping[str, Any]],
    plots: Sequence[str | os.PathLike],
    colormap: str = "jet",
    title: str = "xaipipe: models compared",
) -> None:
    """The entry pages of a study with several models, in ``out_dir``: ``index.html``, one gallery of
    every model and variant side by side (:func:`study_data`; a selector shows one model or all,
    and whose predictions the rows show), ``summary.html`` (:func:`study_page`), ``colormap.png``
    and ``colormap-signed.png``.
    Each file is written atomically."""
    out_dir = Path(out_dir)
    write_bytes_atomic(out_dir / "colormap.png", colormap_png(colormap))
    write_bytes_atomic(out_dir / SIGNED_SCALE, colormap_png(colormap, signed=True))
    _write_text(out_dir / "index.html", gallery_html(study_data(models, out_dir), title))
    _write_text(out_dir / "summary.html", study_page(experiments, comparison_rows, plots, title))


def study_page(
    experiments: Sequence[Mapping[str, str]],
    comparison_rows: Sequence[Mapping[str, Any]],
    plots: Sequence[str | os.PathLike],
    title: str = "xaipipe: models compared",
) -> str:
    """The study's summary page: each model (file, sha256, variants) with links to its own gallery
    and summary (``../{model}/report/``), the comparison table and plots (paths relative to the page).

    ``experiments``: the rows of experiments.tsv; ``comparison_rows``: those of comparison.tsv.
    """
    models: dict[str, dict[str, Any]] = {}
    for row in experiments:
        found = {"path": row["model_path"], "sha256": row["model_sha256"], "variants": []}
        entry = models.setdefault(row["model"], found)
        entry["variants"].append(row["variant"])
    rows = "\n".join(
        f'<tr data-model="{html.escape(name)}"><td>{html.escape(name)}</td><td>{html.escape(m["path"])}</td>'
        f'<td><code>{html.escape(m["sha256"])}</code></td><td>{html.escape(", ".join(m["variants"]))}</td>'
        f'<td><a class="gallery" href="{_url(f"../{name}/report/index.html")}">gallery</a> · '
        f'<a class="summary" href="{_url(f"../{name}/report/summary.html")}">summary</a></td></tr>'
        for name, m in models.items()
    )
    head = "".join(f"<th>{c}</th>" for c in ("model", "file", "sha256", "variants", "pages"))
    n_variants = len({v for m in models.values() for v in m["variants"]})
    return _fill(
        _template("study.html"),
        title=html.escape(title),
        css=_template("gallery.css"),
        counts=html.escape(f"{len(models)} models x {n_variants} variants"),
        models=f'<table id="models"><thead><tr>{head}</tr></thead><tbody>\n{rows}\n</tbody></table>',
        comparison=_table("comparison", COMPARISON_COLUMNS, comparison_rows),
        plots=_figures([Path(p).as_posix() for p in plots]),
    )


def _figures(plots: Sequence[str]) -> str:
    """Each plot (a path relative to the page) as a figure captioned with its path."""
    return "\n".join(
        f'<figure><img class="plot" src="{html.escape(_url(p))}" alt="{html.escape(p)}">'
        f"<figcaption>{html.escape(p)}</figcaption></figure>"
        for p in plots
    ) or "<p>No plots.</p>"


def json_for_script(value: Any) -> str:
    """``value`` as JSON that cannot end or comment out the ``<script>`` element it sits in."""
    text = json.dumps(_finite(value), separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.replace("</", "<\\/").replace("<!--", "<\\u0021--")


def _finite(value: Any) -> Any:
    """``value`` with its NaNs and infinities as None (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _table(name: str, columns: Sequence[str], rows: Sequence[Mapping]) -> str:
    if not rows:
        return f'<p id="{name}-none">None.</p>'
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "\n".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(row.get(c, '')))}</td>" for c in columns) + "</tr>" for row in rows
    )
    return f'<table id="{name}"><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>'


def _confusion_table(matrix: np.ndarray, class_names: Sequence[str]) -> str:
    head = "".join(f"<th>{html.escape(n)}</th>" for n in class_names)
    rows = []
    for i, name in enumerate(class_names):
        cells = "".join(
            f'<td data-label="{i}" data-predicted="{j}"{" class=diagonal" if i == j else ""}>{matrix[i, j]}</td>'
            for j in range(len(class_names))
        )
        rows.append(f"<tr><th>{html.escape(name)}</th>{cells}</tr>")
    return (
        '<table id="confusion"><thead><tr><th>label \\ predicted</th>'
        f"{head}</tr></thead><tbody>\n" + "\n".join(rows) + "\n</tbody></table>"
    )


def _cell(value: Any) -> str:
    """A table cell's text: fractional numbers (also as the TSV's strings) with 4 decimals, the rest as it is."""
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        if value.strip().lstrip("+-").isdigit():
            return value
        value = number
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        return f"{float(value):.4f}"
    return str(value)


def _url(path: str) -> str:
    return quote(path, safe="/")


def _script(js: str) -> str:
    if re.search(r"</script|<!--", js, re.IGNORECASE):
        raise ValueError("an inlined script may not contain '</script' or '<!--'")
    return js


def _template(name: str) -> str:
    return (resources.files("xaipipe") / "templates" / name).read_text(encoding="utf-8")


def _fill(template: str, **parts: str) -> str:
    """Replace each ``{{name}}`` in ``template`` in one pass, so that inserted text is never read as a marker."""
    return re.sub(r"\{\{(\w+)\}\}", lambda m: parts[m.group(1)], template)


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
