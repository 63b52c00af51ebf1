"""All nine methods through the real pipeline on the trained demo model, checked for what they claim."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline_runs import ALL_METHODS, N_PER_CLASS
from xaipipe import h5store, methods
from xaipipe.autodiff import Scores
from xaipipe.evaluate import read_summary
from xaipipe.model import load_model
from xaipipe.naming import overlay_name

pytestmark = pytest.mark.e2e

CANONICAL = [methods.canonical_name(m if isinstance(m, str) else m["name"]) for m in ALL_METHODS]


def read_table(path) -> list[dict[str, str]]:
    lines = path.read_text().splitlines()
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"))) for line in lines[1:]]


def test_every_method_writes_heatmaps_and_overlays(all_methods_run):
    ids = [line.split("\t")[0] for line in (all_methods_run / "predictions.tsv").read_text().splitlines()[1:]]
    assert len(ids) == 3 * N_PER_CLASS
    for method in CANONICAL:
        shards = sorted((all_methods_run / "heatmaps" / method).glob("*.h5"))
        assert [s.name for s in shards] == ["shard-00000.h5", "shard-00001.h5"]
        with h5store.open_checked(shards[0], h5store.HEATMAPS) as f:
            assert f.attrs["method"] == method
            normalized = f["normalized"][()]
            assert normalized.shape == (16, 64, 64)
            assert normalized.min() >= 0.0 and normalized.max() <= 1.0
            assert np.isfinite(f["raw"][()]).all()
        overlays = {p.name for p in (all_methods_run / "overlays" / method).iterdir()}
        assert overlays == {overlay_name(i) for i in ids}


def summary_of(results) -> dict[tuple[str, str], dict]:
    return {(r["method"], r["metric"]): r for r in read_summary(results / "evaluation/summary.tsv")}


def test_cam_methods_localize_the_lesions(all_methods_run):
    summary = summary_of(all_methods_run)
    assert list(dict.fromkeys(method for method, _ in summary)) == CANONICAL
    for method in ("gradcam", "gradcam++"):
        row = summary[(method, "pointing_game")]
        assert row["n"] == 2 * N_PER_CLASS
        assert row["mean"] >= 0.9, (method, row)
        assert summary[(method, "roc_auc")]["mean"] > 0.9  # the lesion's pixels rank above the rest


def test_maps_depend_on_the_learned_weights(all_methods_run):
    """Adebayo et al. 2018: re-initializing the model must change these maps (Spearman below 0.5)."""
    summary = summary_of(all_methods_run)
    for method in ("gradcam", "gradcam++", "saliency", "integratedgradients"):
        row = summary[(method, "randomization")]
        assert row["n"] == 8, (method, row)  # evaluation.sanity_samples, no trained map constant
        assert row["mean"] < 0.5, (method, row)


def test_methods_agree_where_they_should(all_methods_run):
    """Grad-CAM and Grad-CAM++ share the layer's activations: they agree far more than Grad-CAM and LimeCon,
    which marks evidence against the class."""
    rows = {(r["method_a"], r["method_b"]): r for r in read_table(all_methods_run / "evaluation/agreement.tsv")}
    assert len(rows) == len(CANONICAL) * (len(CANONICAL) - 1) // 2
    assert float(rows[("gradcam", "gradcam++")]["mean_spearman"]) > 0.8
    assert float(rows[("gradcam", "gradcam++")]["mean_spearman"]) > float(rows[("gradcam", "limecon")]["mean_spearman"])
    assert int(rows[("gradcam", "gradcam++")]["n"]) == 3 * N_PER_CLASS


def test_integrated_gradients_are_complete_on_the_demo_model(demo_run):
    """sum of IG = f(x) - f(baseline), within 5% at the default 50 steps."""
    model = load_model(demo_run / "results/demo/model.keras")
    with h5store.PreprocessedShard.open(demo_run / "results/preprocessed/shard-00000.h5") as shard:
        x = shard.file["inputs"][:8]
    classes = Scores(model)(x).argmax(axis=1)[:, None]
    ig = methods.create("ig", model)
    attributions = ig.attributions(x, classes)
    scores, baseline_scores = Scores(model)(x), Scores(model)(np.zeros_like(x))
    expected = np.take_along_axis(scores - baseline_scores, classes, axis=1)[:, 0]
    total = attributions.reshape(len(x), -1).sum(axis=1)
    np.testing.assert_allclose(total, expected, rtol=0.05)
