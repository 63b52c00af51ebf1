"""The evaluation stage's plots (xaipipe.plots): what the PNG and SVG files show, checked against the inputs."""

from __future__ import annotations

import math
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import matplotlib
import numpy as np
import pytest
from matplotlib.figure import Figure

from xaipipe import plots

SVG = "{http://www.w3.org/2000/svg}"


def svg_texts(path: Path) -> list[str]:
    """Every <text> element's content, in document order."""
    return ["".join(t.itertext()) for t in ET.parse(path).getroot().iter(f"{SVG}text")]


def svg_size_inches(path: Path) -> tuple[float, float]:
    root = ET.parse(path).getroot()
    return float(root.get("width").removesuffix("pt")) / 72, float(root.get("height").removesuffix("pt")) / 72


def trapezoid_by_hand(y: np.ndarray, x: np.ndarray) -> float:
    return float(sum((x[i + 1] - x[i]) * (y[i] + y[i + 1]) / 2 for i in range(len(x) - 1)))


def only_files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


# ---------------------------------------------------------------------------------------------------------------
# Curves

X = np.linspace(0, 1, 11)
CURVES = {
    "deletion": {"gradcam": 1 - X, "lime": np.full(11, 0.25)},
    "insertion": {"gradcam": X**2, "lime": np.sqrt(X)},
    "road_lerf": {"gradcam": 1 - X},
}


def test_curves_legend_gives_each_methods_area_and_count(tmp_path):
    counts = {"deletion": {"gradcam": 12, "lime": 9}}
    paths = plots.curves_plot(X, CURVES, tmp_path / "curves", counts=counts)
    assert paths == [tmp_path / "curves.png", tmp_path / "curves.svg"]
    texts = svg_texts(paths[1])
    legend = [t for t in texts if ": area " in t]
    assert len(legend) == 5  # one entry per (kind, method), in order
    parsed = [re.fullmatch(r"(\w+): area ([0-9.]+)(?:, n=(\d+))?", t).groups() for t in legend]
    expected = [(k, m, c) for k, by in CURVES.items() for m, c in by.items()]
    for (method, area, n), (kind, want_method, curve) in zip(parsed, expected):
        assert method == want_method
        assert float(area) == pytest.approx(trapezoid_by_hand(curve, X), abs=5e-4)
        assert n == (str(counts[kind][method]) if kind in counts else None)
    # by hand: a line from 1 to 0 has area 1/2, a constant 0.25 has 0.25; trapezoids overestimate x^2 (1/3) by 1/600
    assert [float(a) for _, a, _ in parsed[:2]] == [0.5, 0.25]
    assert float(parsed[2][1]) == pytest.approx(1 / 3 + 1 / 600, abs=5e-4)
    for needle in [
        "deletion",
        "insertion",
        "road_lerf",
        "(lower is better)",
        "(higher is better)",
        "fraction of pixels removed, most relevant first",
        "fraction of pixels revealed, most relevant first",
        "fraction imputed (ROAD), least relevant first",
        "target-class score (mean over maps)",
    ]:
        assert needle in texts, needle
    assert only_files(tmp_path) == {"curves.png", "curves.svg"}


def test_curve_areas_use_the_given_fractions_not_an_even_grid():
    x = np.array([0.0, 0.1, 0.5, 1.0])
    y = np.array([1.0, 0.2, 0.1, 0.0])
    areas = plots.curve_areas(x, {"deletion": {"m": y}})
    # 0.1 * 0.6 + 0.4 * 0.15 + 0.5 * 0.05 = 0.145
    assert areas == {"deletion": {"m": pytest.approx(0.145)}}


def test_a_curve_with_nan_has_no_area_and_says_so(tmp_path):
    curve = np.where(X > 0.5, np.nan, 1 - X)
    svg = plots.curves_plot(X, {"deletion": {"ig": curve}}, tmp_path / "c")[1]
    assert "ig: area n/a" in svg_texts(svg)


def test_png_is_the_figure_size_at_150_dpi(tmp_path):
    png, svg = plots.curves_plot(X, CURVES, tmp_path / "curves")
    image = cv2.imread(str(png))
    assert image is not None and image.ndim == 3
    width, height = svg_size_inches(svg)  # the SVG's size in points, written by another backend
    fig_w, fig_h = plots.curves_figure(X, CURVES).get_size_inches()
    assert (width, height) == (pytest.approx(fig_w), pytest.approx(fig_h))
    assert image.shape[:2] == (round(height * 150), round(width * 150))
    # more panels and methods make a larger figure (nothing squeezed)
    more = {k: {f"method_{i}": 1 - X for i in range(8)} for k in ["deletion", "insertion", "road_morf", "road_lerf"]}
    big_w, big_h = plots.curves_figure(X, more).get_size_inches()
    assert big_w > fig_w and big_h > fig_h


def test_curves_reject_lengths_that_do_not_match_the_fractions(tmp_path):
    with pytest.raises(ValueError, match=r"curve 'insertion' of method 'lime' has shape \(10,\).*11 fractions"):
        plots.curves_plot(X, {"deletion": {"gc": 1 - X}, "insertion": {"lime": np.ones(10)}}, tmp_path / "c")
    with pytest.raises(ValueError, match="increase strictly"):
        plots.curves_plot(X[::-1], {"deletion": {"gc": 1 - X}}, tmp_path / "c")
    with pytest.raises(ValueError, match="at least 2 points"):
        plots.curves_plot([0.0], {"deletion": {"gc": [1.0]}}, tmp_path / "c")
    with pytest.raises(ValueError, match="curves is empty"):
        plots.curves_plot(X, {}, tmp_path / "c")
    assert only_files(tmp_path) == set()


# ---------------------------------------------------------------------------------------------------------------
# Metric means


def row(method, cls, metric, mean, low, high, n):
    return {"variant": method, "class": cls, "metric": metric, "mean": mean, "ci_low": low, "ci_high": high, "n": n}


ROWS = [
    row("gradcam", "all", "deletion", 0.20, 0.15, 0.25, 10),
    row("lime", "all", "deletion", 0.35, 0.30, 0.42, 10),
    row("ig", "all", "deletion", math.nan, math.nan, math.nan, 0),  # no maps: missing, not 0
    row("gradcam", "all", "sparseness", 0.60, 0.55, 0.70, 10),
    row("lime", "all", "sparseness", 0.40, math.nan, math.nan, 1),  # a mean without an interval
    row("ig", "all", "sparseness", 0.50, 0.45, 0.58, 0),  # n == 0: missing although a mean is there
    row("gradcam", "all", "my_metric", 1.5, 1.0, 2.0, 3),
]


def marker_and_bars(ax) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """The (x, y) of the mean markers and the (x0, x1) of the horizontal bars of a panel."""
    points = [(float(l.get_xdata()[0]), float(l.get_ydata()[0])) for l in ax.lines if l.get_marker() == "o"]
    bars = []
    for collection in ax.collections:
        for segment in collection.get_segments():
            (x0, y0), (x1, y1) = segment
            if y0 == y1:
                bars.append((round(float(x0), 9), round(float(x1), 9)))  # drawn as centre +- half width
    return sorted(points), sorted(bars)


def test_metrics_draw_means_and_intervals_and_missing_rows_as_missing(tmp_path):
    paths = plots.metrics_plot(ROWS, tmp_path / "metrics")
    texts = svg_texts(paths[1])
    titles = [t for t in texts if t in ("deletion", "sparseness", "my_metric")]
    assert titles == ["deletion", "sparseness", "my_metric"]  # first-seen order
    assert texts.count("(lower is better)") == 1 and texts.count("(higher is better)") == 1  # none for my_metric
    assert texts.count("n/a") == 2
    assert {"gradcam", "lime", "ig"} <= set(texts)
    assert "class" not in texts and "all" not in texts  # one class: no class legend

    fig = plots.metrics_figure(ROWS)
    deletion, sparseness, mine = fig.axes
    # methods in first-seen order from the top: gradcam at y 0, lime 1, ig 2
    assert [t.get_text() for t in deletion.get_yticklabels()] == ["gradcam", "lime", "ig"]
    assert marker_and_bars(deletion) == ([(0.20, 0.0), (0.35, 1.0)], [(0.15, 0.25), (0.30, 0.42)])
    assert marker_and_bars(sparseness) == ([(0.40, 1.0), (0.60, 0.0)], [(0.55, 0.70)])  # lime: no interval, ig: n == 0
    assert marker_and_bars(mine) == ([(1.5, 0.0)], [(1.0, 2.0)])
    assert only_files(tmp_path) == {"metrics.png", "metrics.svg"}


def test_metrics_of_several_classes_are_one_series_each(tmp_path):
    rows = [
        row(m, c, "roc_auc", v, v - 0.1, v + 0.1, 5)
        for m, c, v in [
            ("gradcam", "benign", 0.7),
            ("gradcam", "malignant", 0.8),
            ("lime", "benign", 0.6),
            ("lime", "malignant", 0.5),
        ]
    ]
    texts = svg_texts(plots.metrics_plot(rows, tmp_path / "m")[1])
    assert {"class", "benign", "malignant", "(higher is better)"} <= set(texts)
    (ax,) = plots.metrics_figure(rows).axes
    series: dict[str, list[tuple[float, float]]] = {}
    for line in (l for l in ax.lines if l.get_marker() == "o"):
        series.setdefault(line.get_color(), []).append((float(line.get_ydata()[0]), float(line.get_xdata()[0])))
    assert len(series) == 2  # one colour per class
    by_class = {}
    for points in series.values():
        points.sort()  # by height: gradcam's row (0) above lime's (1)
        assert [round(y) for y, _ in points] == [0, 1] and all(abs(y - round(y)) < 0.5 for y, _ in points)
        by_class["benign" if points[0][1] == 0.7 else "malignant"] = points
    assert [x for _, x in by_class["benign"]] == [0.7, 0.6]
    assert [x for _, x in by_class["malignant"]] == [0.8, 0.5]
    for k in range(2):  # within a method's row the classes sit at distinct heights
        assert by_class["benign"][k][0] != by_class["malignant"][k][0]


def test_metrics_read_rows_as_in_summary_tsv(tmp_path):
    rows = [
        row("gradcam", "all", "complexity", "0.25", "0.2", "0.3", "4"),
        row("lime", "all", "complexity", "", "", "", "0"),
    ]
    fig = plots.metrics_figure(rows)
    assert marker_and_bars(fig.axes[0]) == ([(0.25, 0.0)], [(0.2, 0.3)])
    assert [t.get_text() for t in fig.axes[0].texts] == ["n/a"]


def test_metrics_reject_incomplete_rows(tmp_path):
    with pytest.raises(ValueError, match=r"row 1 lacks \['ci_high'\]"):
        plots.metrics_plot([ROWS[0], {k: v for k, v in ROWS[1].items() if k != "ci_high"}], tmp_path / "m")
    with pytest.raises(ValueError, match="must be numbers"):
        plots.metrics_plot([row("a", "all", "x", "high", 0, 1, 3)], tmp_path / "m")
    with pytest.raises(ValueError, match="rows is empty"):
        plots.metrics_plot([], tmp_path / "m")
    assert only_files(tmp_path) == set()


def test_better_directions():
    assert plots.BETTER == {
        "deletion": "lower", "insertion": "higher", "road_morf": "lower", "road_lerf": "higher",
        "pointing_game": "higher", "relevance_mass": "higher", "relevance_rank": "higher", "roc_auc": "higher",
        "sparseness": "higher", "complexity": "lower", "randomization": "nearer zero", "randomization_ssim": "lower",
    }  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# Agreement

METHODS = ["gradcam", "lime", "integrated_gradients"]
MATRIX = np.array([[1.0, 0.345, np.nan], [0.345, 1.0, -1.0], [np.nan, -1.0, 1.0]])


def test_agreement_annotates_every_cell_and_names_the_methods(tmp_path):
    counts = np.array([[9, 8, 0], [8, 9, 7], [0, 7, 9]])
    svg = plots.agreement_plot(METHODS, MATRIX, tmp_path / "agree", counts=counts)[1]
    texts = svg_texts(svg)
    cells = [f"{v:.2f}" if not np.isnan(v) else "n/a" for v in MATRIX.ravel()]
    start = texts.index(cells[0])
    assert texts[start : start + 18] == [s for c, n in zip(cells, counts.ravel()) for s in (c, f"n={n}")]
    assert texts.count("n/a") == 2
    for name in METHODS:
        assert texts.count(name) == 2  # both axes
    assert "mean Spearman correlation" in texts  # the colorbar
    assert only_files(tmp_path) == {"agree.png", "agree.svg"}


def test_agreement_cells_have_the_colormaps_colours(tmp_path):
    png = plots.agreement_plot(METHODS, MATRIX, tmp_path / "agree")[0]
    image = cv2.cvtColor(cv2.imread(str(png)), cv2.COLOR_BGR2RGB).astype(int)
    fig = plots.agreement_figure(METHODS, MATRIX)  # the same figure, to locate the cells
    fig.canvas.draw()
    ax = fig.axes[0]
    height = image.shape[0]
    assert height == round(fig.get_size_inches()[1] * 150)
    cmap = matplotlib.colormaps["RdBu_r"]
    for i in range(3):
        for j in range(3):
            x, y = ax.transData.transform((j + 0.3, i + 0.3))  # off the annotation at the centre
            got = image[int(height - y), int(x)]
            v = MATRIX[i, j]
            if np.isnan(v):
                want = np.array([211, 211, 211])  # lightgrey
            else:
                want = np.round(np.array(cmap((v + 1) / 2)[:3]) * 255)
            assert np.abs(got - want).max() <= 3, (i, j, got, want)
            if v == 1:
                assert got[0] > 100 and got[0] > 2 * got[2]  # red
            if v == -1:
                assert got[2] > 2 * got[0]  # blue


def test_agreement_rejects_matrices_that_do_not_match_the_methods(tmp_path):
    out = tmp_path / "plots" / "agree"
    with pytest.raises(ValueError, match=r"must be square, 3 x 3 .* got shape \(3, 2\)"):
        plots.agreement_plot(METHODS, np.zeros((3, 2)), out)
    with pytest.raises(ValueError, match=r"must be square, 3 x 3 .* got shape \(2, 2\)"):
        plots.agreement_plot(METHODS, np.eye(2), out)
    with pytest.raises(ValueError, match=r"counts must have the matrix's shape \(3, 3\)"):
        plots.agreement_plot(METHODS, np.eye(3), out, counts=np.ones(3))
    with pytest.raises(ValueError, match=r"lie in \[-1, 1\]"):
        plots.agreement_plot(METHODS, 2 * np.eye(3), out)
    with pytest.raises(ValueError, match="distinct"):
        plots.agreement_plot(["a", "a"], np.eye(2), out)
    assert not out.parent.exists()


# ---------------------------------------------------------------------------------------------------------------
# Writing


def test_an_interrupted_write_leaves_no_file_and_keeps_the_earlier_pair(tmp_path, monkeypatch):
    out = tmp_path / "agree"
    plots.agreement_plot(METHODS, MATRIX, out)
    before = {p: p.read_bytes() for p in tmp_path.iterdir()}
    real = Figure.savefig

    def fail_on_svg(self, fname, *args, **kwargs):
        if kwargs.get("format") == "svg":
            raise KeyboardInterrupt("killed while writing the SVG")
        return real(self, fname, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", fail_on_svg)
    with pytest.raises(KeyboardInterrupt):
        plots.agreement_plot(METHODS, -MATRIX, out)  # the PNG was rendered, but is not renamed alone
    assert {p: p.read_bytes() for p in tmp_path.iterdir()} == before
    with pytest.raises(KeyboardInterrupt):
        plots.curves_plot(X, CURVES, tmp_path / "new" / "curves")
    assert list((tmp_path / "new").iterdir()) == []


def test_same_input_same_bytes_and_no_global_state_changed(tmp_path):
    fonttype = matplotlib.rcParams["svg.fonttype"]
    a = plots.agreement_plot(METHODS, MATRIX, tmp_path / "a")
    b = plots.agreement_plot(METHODS, MATRIX, tmp_path / "b")
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    assert matplotlib.rcParams["svg.fonttype"] == fonttype
    # in a fresh interpreter: plotting imports no pyplot and leaves the backend as it was
    script = (
        "import sys, matplotlib, numpy as np\n"
        "backend = matplotlib.rcParams._get_backend_or_none()\n"
        "from xaipipe import plots\n"
        f"plots.agreement_plot(['a', 'b'], np.eye(2), {str(tmp_path / 'c')!r})\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
        "assert matplotlib.rcParams._get_backend_or_none() == backend\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)


def test_panels_legends_and_labels_do_not_overlap():
    long = {k: {f"method_with_a_long_name_{i}": (1 - X) ** (i + 1) for i in range(7)} for k in CURVES}
    rows = [
        row(f"method_{m}", c, metric, 0.5, 0.4, 0.6, 3)
        for metric in ["deletion", "insertion", "roc_auc", "complexity"]
        for m in range(6)
        for c in ["benign", "malignant", "nevus"]
    ]
    names = [f"a_long_method_name_{i}" for i in range(9)]
    for fig in [plots.curves_figure(X, long), plots.metrics_figure(rows), plots.agreement_figure(names, np.eye(9))]:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        boxes = [ax.get_tightbbox(renderer) for ax in fig.axes]  # each panel with its legend, ticks and labels
        boxes += [legend.get_window_extent(renderer) for legend in fig.legends]
        for a in range(len(boxes)):
            assert boxes[a].x0 >= -1 and boxes[a].y0 >= -1, "cut off at the figure's edge"
            assert boxes[a].x1 <= fig.bbox.x1 + 1 and boxes[a].y1 <= fig.bbox.y1 + 1, "cut off at the figure's edge"
            for b in range(a + 1, len(boxes)):
                overlap_x = min(boxes[a].x1, boxes[b].x1) - max(boxes[a].x0, boxes[b].x0)
                overlap_y = min(boxes[a].y1, boxes[b].y1) - max(boxes[a].y0, boxes[b].y0)
                assert overlap_x <= 1 or overlap_y <= 1, (a, b, boxes[a], boxes[b])


def test_comparison_plot_has_a_row_per_model_and_variant(tmp_path):
    from xaipipe.evaluate import SUMMARY_HEADER

    summaries = []
    for model, mean in (("seed42", 0.25), ("seed7", 0.75)):
        path = tmp_path / f"{model}.tsv"
        path.write_text(
            SUMMARY_HEADER + f"{model}\tgradcam\tgradcam\tall\tdeletion\t{mean}\t0.1\t0.9\t10\n"
            f"{model}\tos\tocclusion\tall\tdeletion\t0.5\t0.4\t0.6\t10\n"
        )
        summaries.append(path)
    svg = plots.comparison_plot(summaries, tmp_path / "comparison")[1]
    texts = svg_texts(svg)
    for label in ("seed42: gradcam", "seed42: os", "seed7: gradcam", "seed7: os"):
        assert label in texts, label
