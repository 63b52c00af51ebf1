"""Plots of the evaluation stage, written as PNG (150 dpi) and SVG.

- :func:`curves_plot`: the mean deletion / insertion / ROAD curve of each method, one panel per curve kind.
- :func:`metrics_plot`: each metric's mean per method with its interval, one panel per metric.
- :func:`agreement_plot`: the mean Spearman correlation between every pair of methods as a heatmap.

Figures are built with :class:`matplotlib.figure.Figure` on a
:class:`~matplotlib.backends.backend_agg.FigureCanvasAgg` (never pyplot), so no GUI is
needed and no global matplotlib state (backend, open figures, rcParams) changes. Each
``*_figure`` function returns the figure; each ``*_plot`` function writes
``<out_stem>.png`` and ``<out_stem>.svg`` atomically and returns those two paths. The
SVG keeps its text as ``<text>`` elements (searchable, editable) and carries no date,
so the same input gives the same bytes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from xaipipe.atomic import atomic_path
from xaipipe.evaluate import BETTER  # noqa: F401 (which value of each metric is better)

DPI = 150

#: The x axis of each curve kind (others: :data:`DEFAULT_XLABEL`).
XLABELS: dict[str, str] = {
    "deletion": "fraction of pixels removed, most relevant first",
    "insertion": "fraction of pixels revealed, most relevant first",
    "road_morf": "fraction imputed (ROAD), most relevant first",
    "road_lerf": "fraction imputed (ROAD), least relevant first",
}
DEFAULT_XLABEL = "fraction of pixels changed"
YLABEL = "target-class score (mean over maps)"

CMAP = "RdBu_r"
NAN_COLOUR = "lightgrey"
_PANEL_COLUMNS = 3
_SVG_RC = {"svg.fonttype": "none", "svg.hashsalt": "xaipipe"}  # text as <text>; ids that do not change per run


# ---------------------------------------------------------------------------------------------------------------
# Writing


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, out_stem: str | os.PathLike) -> list[Path]:
    """Write ``fig`` to ``<out_stem>.png`` (150 dpi) and ``<out_stem>.svg``; return those two paths.

    Both are rendered to temporary files first and renamed only when both succeeded, so an
    interrupted write leaves neither (and any earlier pair untouched).
    """
    stem = os.fspath(out_stem)
    png, svg = Path(stem + ".png"), Path(stem + ".svg")
    with atomic_path(png) as png_tmp, atomic_path(svg) as svg_tmp:
        # The temporary names end in ".part": the format must be named.
        fig.savefig(png_tmp, format="png", dpi=DPI)
        with matplotlib.rc_context(_SVG_RC):
            fig.savefig(svg_tmp, format="svg", dpi=DPI, metadata={"Date": None})
    return [png, svg]


def _grid(n_panels: int) -> tuple[int, int]:
    cols = min(n_panels, _PANEL_COLUMNS)
    return math.ceil(n_panels / cols), cols


def _title(name: str) -> str:
    better = BETTER.get(name)
    return f"{name}\n({better} is better)" if better else name


# ---------------------------------------------------------------------------------------------------------------
# Curves

_trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy < 2 has only trapz


def _check_fractions(fractions: Any) -> np.ndarray:
    x = np.asarray(fractions, dtype=np.float64)
    if x.ndim != 1 or len(x) < 2:
        raise ValueError(f"fractions must be 1-D with at least 2 points, got shape {x.shape}")
    if not np.all(np.isfinite(x)) or x[0] < 0 or x[-1] > 1 or np.any(np.diff(x) <= 0):
        raise ValueError(f"fractions must increase strictly within [0, 1], got {x.tolist()}")
    return x


def curve_areas(fractions: np.ndarray, curves: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Area under each curve: the trapezoid rule over ``fractions`` (NaN where the curve has a NaN)."""
    x = _check_fractions(fractions)
    if not curves:
        raise ValueError("curves is empty: no curve kind to plot")
    areas: dict[str, dict[str, float]] = {}
    for kind, by_method in curves.items():
        areas[kind] = {}
        for method, curve in by_method.items():
            y = np.asarray(curve, dtype=np.float64)
            if y.shape != x.shape:
                raise ValueError(
                    f"curve {kind!r} of method {method!r} has shape {y.shape}, "
                    f"but there are {len(x)} fractions: it needs shape {x.shape}"
                )
            areas[kind][method] = float(_trapezoid(y, x))
    return areas


def curves_figure(
    fractions: np.ndarray,
    curves: Mapping[str, Mapping[str, np.ndarray]],
    counts: Mapping[str, Mapping[str, int]] | None = None,
) -> Figure:
    """The figure of :func:`curves_plot`."""
    areas = curve_areas(fractions, curves)  # checks everything
    x = _check_fractions(fractions)
    counts = counts or {}
    labels = {
        kind: [_curve_label(m, a, counts.get(kind, {}).get(m)) for m, a in by_method.items()]
        for kind, by_method in areas.items()
    }
    n_methods = max((len(v) for v in labels.values()), default=0)
    longest = max((len(s) for v in labels.values() for s in v), default=0)
    rows, cols = _grid(len(curves))
    panel_w = 3.6 + 0.075 * longest  # the legend sits to the right of its panel
    panel_h = max(3.2, 1.4 + 0.24 * n_methods)
    fig = _new_figure(cols * panel_w, rows * panel_h)
    for k, (kind, by_method) in enumerate(curves.items()):
        ax = fig.add_subplot(rows, cols, k + 1)
        for (method, curve), label in zip(by_method.items(), labels[kind]):
            ax.plot(x, np.asarray(curve, dtype=np.float64), label=label, linewidth=1.5)
        ax.set_title(_title(kind))
        ax.set_xlabel(XLABELS.get(kind, DEFAULT_XLABEL))
        ax.set_ylabel(YLABEL)
        ax.set_xlim(0, 1)
        ax.grid(True, alpha=0.3)
        if by_method:
            ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize="small", frameon=False)
        else:
            ax.text(0.5, 0.5, "no curves", transform=ax.transAxes, ha="center", va="center", color="grey")
    return fig


def _curve_label(method: str, area: float, n: int | None) -> str:
    value = "n/a" if math.isnan(area) else f"{area:.3f}"
    return f"{method}: area {value}" + ("" if n is None else f", n={int(n)}")


def curves_plot(
    fractions: np.ndarray,
    curves: dict[str, dict[str, np.ndarray]],
    out_stem: str | os.PathLike,
    counts: dict[str, dict[str, int]] | None = None,
) -> list[Path]:
    """Mean curves, one panel per kind (keys of ``curves``, in order) and one line per method.

    ``curves[kind][method]`` is the mean curve over maps (the target-class score) at
    ``fractions`` (strictly increasing within [0, 1]). The legend gives each method's
    area (trapezoid rule over ``fractions``, 3 decimals) and, from ``counts[kind][method]``
    where given, its number of maps. Writes ``<out_stem>.png`` and ``<out_stem>.svg``.
    """
    return save_figure(curves_figure(fractions, curves, counts), out_stem)


# ---------------------------------------------------------------------------------------------------------------
# Metric means with intervals

_ROW_KEYS = ("variant", "class", "metric", "mean", "ci_low", "ci_high", "n")


def _number(value: Any) -> float:
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return math.nan
    return float(value)


def _check_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    if len(rows) == 0:
        raise ValueError("rows is empty: no metric to plot")
    checked = []
    for i, row in enumerate(rows):
        missing = [key for key in _ROW_KEYS if key not in row]
        if missing:
            raise ValueError(f"row {i} lacks {missing} (rows need {list(_ROW_KEYS)}): {dict(row)!r}")
        try:
            values = {key: _number(row[key]) for key in ("mean", "ci_low", "ci_high", "n")}
        except (TypeError, ValueError) as error:
            raise ValueError(f"row {i}: mean, ci_low, ci_high and n must be numbers: {dict(row)!r}") from error
        checked.append(
            {"variant": str(row["variant"]), "class": str(row["class"]), "metric": str(row["metric"]), **values}
        )
    return checked


def _first_seen(values: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(values))


def metrics_figure(rows: Sequence[Mapping[str, Any]]) -> Figure:
    """The figure of :func:`metrics_plot`."""
    rows = _check_rows(rows)
    metrics = _first_seen([r["metric"] for r in rows])
    methods = _first_seen([r["variant"] for r in rows])
    classes = _first_seen([r["class"] for r in rows])
    by_class = len(classes) > 1
    spread = 0.6 if by_class else 0.0  # rows of one method share this height, one offset per class
    offsets = {c: (spread * (k / (len(classes) - 1) - 0.5) if by_class else 0.0) for k, c in enumerate(classes)}
    colours = {c: f"C{k % 10}" for k, c in enumerate(classes)}
    position = {m: k for k, m in enumerate(methods)}
    rows_n, cols = _grid(len(metrics))
    longest = max(len(m) for m in methods)
    panel_h = 1.5 + len(methods) * (0.35 + (0.12 * len(classes) if by_class else 0.0))
    fig = _new_figure(cols * (3.4 + 0.07 * longest), rows_n * panel_h + (0.4 if by_class else 0.0))
    axes = []
    for k, metric in enumerate(metrics):
        ax = fig.add_subplot(rows_n, cols, k + 1)
        axes.append(ax)
        for row in (r for r in rows if r["metric"] == metric):
            y = position[row["variant"]] + offsets[row["class"]]
            colour = colours[row["class"]]
            mean, low, high, n = row["mean"], row["ci_low"], row["ci_high"], row["n"]
            if math.isnan(mean) or math.isnan(n) or n == 0:  # missing: never drawn as a value
                ax.text(0.02, y, "n/a", transform=ax.get_yaxis_transform(), va="center", color="grey", fontsize="small")
                continue
            if not (math.isnan(low) or math.isnan(high)):
                ax.errorbar(
                    (low + high) / 2, y, xerr=abs(high - low) / 2, fmt="none", ecolor=colour, capsize=3, linewidth=1.2
                )
            ax.plot([mean], [y], "o", color=colour, markersize=5)
        ax.set_yticks(range(len(methods)), methods)
        ax.set_ylim(len(methods) - 0.5, -0.5)  # the first method on top
        ax.set_title(_title(metric))
        ax.set_xlabel("mean and interval")
        ax.grid(True, axis="x", alpha=0.3)
    if by_class:
        handles = [Line2D([], [], marker="o", linestyle="none", color=colours[c], label=c) for c in classes]
        fig.legend(handles=handles, title="class", loc="outside lower center", ncols=min(len(classes), 6))
    return fig


def comparison_plot(summaries: Sequence[str | os.PathLike], out_stem: str | os.PathLike) -> list[Path]:
    """:func:`metrics_plot` of several models' summaries (their summary.tsv files), a row per
    model and variant, labelled ``model: variant``."""
    from xaipipe.evaluate import read_summary

    rows = [{**row, "variant": f"{row['model']}: {row['variant']}"} for path in summaries for row in read_summary(path)]
    return metrics_plot(rows, out_stem)


def metrics_plot(rows: list[dict], out_stem: str | os.PathLike) -> list[Path]:
    """Metric means with their intervals: one panel per metric (first-seen order), one row per method.

    ``rows`` as in summary.tsv: dicts with variant (the row's name), class, metric, mean, ci_low, ci_high, n
    (numbers, NaN or empty allowed). Each mean is a point with a bar from ci_low to ci_high
    (no bar where either is NaN); a row with n == 0 or a NaN mean or n is marked "n/a", never
    drawn as a value. With more than one class, each class is its own marker series. Panel
    titles give the metric and, from :data:`BETTER`, which direction is better. Writes
    ``<out_stem>.png`` and ``<out_stem>.svg``.
    """
    return save_figure(metrics_figure(rows), out_stem)


# ---------------------------------------------------------------------------------------------------------------
# Agreement between methods


def _check_agreement(methods: Sequence[str], matrix: Any, counts: Any) -> tuple[np.ndarray, np.ndarray | None]:
    k = len(methods)
    if k == 0:
        raise ValueError("methods is empty: no agreement to plot")
    if len(set(methods)) != k:
        raise ValueError(f"methods must be distinct, got {list(methods)}")
    values = np.asarray(matrix, dtype=np.float64)
    if values.shape != (k, k):
        raise ValueError(
            f"matrix must be square, {k} x {k} for the {k} methods {list(methods)}; got shape {values.shape}"
        )
    if np.any(np.abs(values[~np.isnan(values)]) > 1 + 1e-9):
        raise ValueError(f"matrix holds correlations, which lie in [-1, 1] (or NaN); got {values.tolist()}")
    if counts is None:
        return values, None
    n = np.asarray(counts, dtype=np.float64)
    if n.shape != (k, k):
        raise ValueError(f"counts must have the matrix's shape ({k}, {k}); got shape {n.shape}")
    return values, n


def agreement_figure(methods: Sequence[str], matrix: np.ndarray, counts: np.ndarray | None = None) -> Figure:
    """The figure of :func:`agreement_plot`."""
    values, n = _check_agreement(methods, matrix, counts)
    k = len(methods)
    longest = max(len(m) for m in methods)
    side = max(3.0, 0.75 * k) + 0.07 * longest  # cells plus the names beside them
    fig = _new_figure(side + 1.4, side + 0.6)
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps[CMAP].with_extremes(bad=NAN_COLOUR)
    norm = Normalize(vmin=-1, vmax=1)
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, norm=norm, interpolation="nearest")
    fig.colorbar(image, ax=ax, label="mean Spearman correlation", shrink=0.8)
    ax.set_xticks(range(k), list(methods), rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(k), list(methods))
    ax.set_title("agreement between methods")
    size = "small" if n is None else "x-small"
    for i in range(k):
        for j in range(k):
            v = values[i, j]
            text = "n/a" if math.isnan(v) else f"{v:.2f}"
            if n is not None and np.isfinite(n[i, j]):
                text += f"\nn={int(n[i, j])}"
            colour = "white" if not math.isnan(v) and abs(v) > 0.6 else "black"
            ax.text(j, i, text, ha="center", va="center", color=colour, fontsize=size)
    return fig


def agreement_plot(
    methods: list[str], matrix: np.ndarray, out_stem: str | os.PathLike, counts: np.ndarray | None = None
) -> list[Path]:
    """Heatmap of the mean Spearman correlation ``matrix[i, j]`` between methods i and j.

    Colormap RdBu_r from -1 to 1 with a colorbar; each cell annotated with its value to
    2 decimals (and ``counts[i, j]`` as n where given); NaN cells grey and annotated
    "n/a". Raises ValueError unless ``matrix`` (and ``counts``) is len(methods) square.
    Writes ``<out_stem>.png`` and ``<out_stem>.svg``.
    """
    return save_figure(agreement_figure(methods, matrix, counts), out_stem)
