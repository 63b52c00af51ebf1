"""All nine methods through the real pipeline on the trained demo model, checked for what they claim."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline_runs import ALL_METHODS, N_PER_CLASS
from xaipipe import h5store, methods
from xaipipe.autodiff import Scores
from xaipipe.model import load_model
from xaipipe.naming import overlay_name

pytestmark = pytest.mark.e2e

CANONICAL = [methods.canonical_name(m if isinstance(m, str) else m["name"]) for m in ALL_METHODS]


def read_table(path) -> dict[str, list[str]]:
    lines = path.read_text().splitlines()
    return {line.split("\t")[0]: line.split("\t")[1:] for line in lines[1:]}


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


def test_cam_methods_localize_the_lesions(all_methods_run):
    table = read_table(all_methods_run / "evaluation/localization.tsv")
    assert list(table) == CANONICAL
    for method in ("gradcam", "gradcam++"):
        hits, total, _ = table[method]
        assert int(total) == 2 * N_PER_CLASS
        assert int(hits) / int(total) >= 0.9, (method, hits, total)


def test_maps_depend_on_the_learned_weights(all_methods_run):
    """Adebayo et al. 2018: re-initializing the model must change these maps (Spearman below 0.5)."""
    table = read_table(all_methods_run / "evaluation/randomization.tsv")
    assert list(table) == CANONICAL
    for method in ("gradcam", "gradcam++", "saliency", "integratedgradients"):
        images, mean_spearman, constant = table[method]
        assert int(images) == 16 and int(constant) < int(images)
        assert float(mean_spearman) < 0.5, (method, mean_spearman)


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
