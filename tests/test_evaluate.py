"""The evaluation stage (xaipipe.evaluate) against independent computations.

Every value is compared with a closed form, a hand calculation or numpy/scipy written here:
the per-shard metrics of hand-built files and a tiny linear Keras model whose softmax the
tests compute in numpy, the masks and their errors, the metric selection, the mask paths,
the bootstrap interval, the summary, the agreement between methods and the randomization test.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import scipy.stats

from xaipipe import evaluate, faithfulness, h5store
from xaipipe.errors import Issue, SampleError
from xaipipe.model import sha256_file
from xaipipe.writers import write_png

# the evaluation file's reader and schema (moving from xaipipe.evaluate to xaipipe.h5store)
EvaluationFile = h5store.EvaluationFile
EVALUATION = "xaipipe.evaluation"

SHAPES = {"2d": (8, 8), "3d": (4, 4, 4)}
STEPS = 4


# --- helpers: a linear model and hand-built files ----------------------------------------------


def linear_model(path, w: np.ndarray) -> np.ndarray:
    """Input(*w.shape, 1) -> Flatten -> Dense(2, softmax) with logits (w.x, -w.x); returns the kernel."""
    import keras

    inputs = keras.Input((*w.shape, 1))
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, outputs)
    kernel = np.stack([w.ravel(), -w.ravel()], axis=1).astype(np.float32)
    model.layers[-1].set_weights([kernel, np.zeros(2, np.float32)])
    model.save(path)
    return kernel


def softmax_numpy(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """(B, 2) softmax of the linear model, in float64 numpy."""
    z = x.reshape(len(x), -1).astype(np.float64) @ kernel.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def build_files(tmp_path, x, maps, model_path, kernel, skipped_rows=(), method="saliency", overlay_shape=None,
                labels=None, normalize="absolute"):  # fmt: skip
    """Preprocessed, predictions and heatmaps files for inputs x (n, *spatial, 1).

    ``maps``: (sample row, class, normalized map or None for a skipped sample's map). The maps are stored
    as raw maps normalized ``absolute`` (|v| / max |v|), which leaves a map of values in [0, 1] reaching 1
    as it is, and scales a constant map to ones instead of min-max's zeros.
    """
    n, spatial = len(x), x.shape[1:-1]
    ids = [f"case/s{k}.png" for k in range(n)]
    pre, pred, hm = tmp_path / "pre.h5", tmp_path / "pred.h5", tmp_path / f"maps-{method}.h5"
    overlay = np.zeros((*(overlay_shape or spatial), 3), np.uint8)
    with h5store.preprocessed_writer(
        pre, ids, [0] * n if labels is None else labels, x.shape[1:], spatial_dims=len(spatial), class_names=["a", "b"],
        preprocessing={}, preprocess_overlay=True,
    ) as writer:  # fmt: skip
        for row in range(n):
            writer.write(row, x[row], overlay)
    record = h5store.SkipRecord(n)
    for row in skipped_rows:
        record.skip(row, Issue(ids[row], "predict", "skipped", "simulated"))
    digest = sha256_file(model_path)
    probabilities = softmax_numpy(x, kernel)
    h5store.write_predictions(
        pred, ids, np.zeros(n) if labels is None else labels, probabilities, class_names=["a", "b"], record=record,
        model_sha256=digest, model_path=str(model_path),
    )  # fmt: skip
    carried = h5store.SkipRecord(n, record.skipped, record.reasons)
    with h5store.heatmaps_writer(
        hm, ids, len(maps), spatial, carried, method=method, model_sha256=digest,
        method_params={"normalize": normalize},
    ) as w:  # fmt: skip
        for m, (row, c, heat) in enumerate(maps):
            if heat is None:
                w.write_skipped(slice(m, m + 1), row)
            else:
                heat = np.asarray(heat, np.float32)[None]
                w.write(slice(m, m + 1), np.array([row]), np.array([c]), heat)
    return ids, pre, pred, hm


def settings(metrics, replacement=0.0, steps=STEPS, tolerance=0):
    return {"metrics": list(metrics), "steps": steps, "replacement": replacement, "pointing_tolerance": tolerance}


def write_mask(path, region: np.ndarray) -> str:
    if region.ndim == 2:
        write_png(path, region.astype(np.uint8) * 255)
    else:
        np.save(path, region.astype(np.uint8))
    return str(path)


def mask_suffix(kind: str) -> str:
    return ".png" if kind == "2d" else ".npy"


def positive_linear_setup(tmp_path, shape, seed=0):
    """A linear model with positive weights, positive inputs: class 0 is predicted for every sample."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    w = rng.uniform(0.05, 1.0, shape) * (3.0 / n)
    kernel = linear_model(tmp_path / "model.keras", w)
    return rng, w, kernel


# --- 1. the per-shard stage ----------------------------------------------------------------


LOCALIZATION_AND_COMPLEXITY = (
    "pointing_game", "relevance_mass", "relevance_rank", "roc_auc", "sparseness", "complexity",
)  # fmt: skip


@pytest.mark.parametrize("kind", ["2d", "3d"])
def test_localization_and_complexity_of_maps_on_the_mask_elsewhere_and_constant(tmp_path, kind):
    shape = SHAPES[kind]
    n = int(np.prod(shape))
    _, _, kernel = positive_linear_setup(tmp_path, shape)
    region = np.zeros(shape, bool)
    region[(slice(1, 3),) * len(shape)] = True  # a 2x2 (2x2x2) block
    on_mask = region.astype(np.float32)
    elsewhere = np.zeros(shape, np.float32)
    elsewhere[(-1,) * len(shape)] = 1.0  # one-hot outside the block
    constant = np.full(shape, 0.5, np.float32)
    blank = np.zeros(shape, np.float32)  # a map of nothing (Grad-CAM where no evidence is positive)
    x = np.ones((4, *shape, 1), np.float32)
    maps = [(0, 0, on_mask), (1, 0, elsewhere), (2, 1, constant), (3, 0, blank)]
    ids, pre, pred, hm = build_files(tmp_path, x, maps, tmp_path / "model.keras", kernel)
    mask = write_mask(tmp_path / f"mask{mask_suffix(kind)}", region)
    out = tmp_path / "eval.h5"
    evaluate.evaluate_shard(
        pre, pred, hm, tmp_path / "model.keras", out, settings(LOCALIZATION_AND_COMPLEXITY), [mask] * 4, batch_size=2
    )
    found = EvaluationFile.read(out)
    v = found.values
    k = int(region.sum())
    assert found.method == "saliency" and found.ids == ids and found.issues == []
    np.testing.assert_array_equal(found.sample_index, [0, 1, 2, 3])
    np.testing.assert_array_equal(found.class_index, [0, 0, 1, 0])
    # a constant map points nowhere: a miss (counted as Quantus counts ties, its peaks include the mask, and a method
    # whose maps were all blank ranked first in the pointing game; left out as NaN, one that went blank on its hard
    # cases ranked on its easy ones alone)
    np.testing.assert_array_equal(v["pointing_game"], [1.0, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(v["relevance_mass"], [1.0, 0.0, k / n, 0.0])
    # the one-hot peak lies outside; the k - 1 remaining top slots are shared by the n - 1 tied zeros
    np.testing.assert_allclose(v["relevance_rank"], [1.0, (k - 1) / (n - 1), k / n, k / n])
    # the one-hot map's pixel ranks above the k mask pixels' (tied with n - k - 1 others below): AUC 0.5 - 0.5/(n-k)
    np.testing.assert_allclose(v["roc_auc"], [1.0, 0.5 - 0.5 / (n - k), 0.5, 0.5])
    # Gini: 0 for a constant map, (n-1)/n for a one-hot map; the block map has k equal values of n. The blank map
    # counts as the constant map it is the limit of (the formulas' 0/0 left it out: ranked on the other maps alone)
    np.testing.assert_allclose(v["sparseness"], [1 - k / n, (n - 1) / n, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(v["complexity"], [math.log(k), 0.0, math.log(n), math.log(n)], atol=1e-12)
    assert set(found.curves) == set()


def hand_ranking(heat: np.ndarray) -> list[int]:
    """C-order positions of the pixels, most relevant first, ties in the documented tie order (the seeded
    permutation's place of each position; written out, not argsort)."""
    flat = [float(v) for v in heat.ravel()]
    priority = np.random.default_rng(faithfulness.TIE_SEED).permutation(len(flat))
    return sorted(range(len(flat)), key=lambda p: (-flat[p], priority[p]))


def hand_curves(x: np.ndarray, heat: np.ndarray, kernel: np.ndarray, c: int, replacement: float, steps: int):
    """Deletion and insertion curves of one image by building every copy in numpy."""
    n = heat.size
    order = hand_ranking(heat)
    deletion, insertion = [], []
    for t in range(steps + 1):
        k = (t * n) // steps
        chosen = np.zeros(n, bool)
        chosen[order[:k]] = True
        chosen = chosen.reshape(heat.shape)[..., None]
        deleted = np.where(chosen, replacement, x)
        inserted = np.where(chosen, x, replacement)
        deletion.append(softmax_numpy(deleted[None], kernel)[0, c])
        insertion.append(softmax_numpy(inserted[None], kernel)[0, c])
    return np.array(deletion), np.array(insertion)


def trapezoid(curve: np.ndarray) -> float:
    h = 1.0 / (len(curve) - 1)
    return float(sum((curve[i] + curve[i + 1]) * h / 2 for i in range(len(curve) - 1)))


@pytest.mark.parametrize("kind", ["2d", "3d"])
def test_deletion_and_insertion_curves_equal_copies_built_by_hand(tmp_path, kind):
    shape = SHAPES[kind]
    rng, w, kernel = positive_linear_setup(tmp_path, shape)
    x = rng.uniform(0.2, 1.0, (2, *shape, 1)).astype(np.float32)
    contribution = np.abs(w * x[0, ..., 0])
    informed = (contribution / contribution.max()).astype(np.float32)
    random_map = rng.uniform(0, 1, shape).astype(np.float32)
    tied = np.round(rng.uniform(0, 1, shape) * 2).astype(np.float32) / 2  # values 0, 0.5, 1: many ties
    maps = [(0, 0, informed), (0, 0, random_map), (1, 0, tied), (1, 1, tied)]
    _, pre, pred, hm = build_files(tmp_path, x, maps, tmp_path / "model.keras", kernel)
    out = tmp_path / "eval.h5"
    evaluate.evaluate_shard(
        pre, pred, hm, tmp_path / "model.keras", out, settings(["deletion", "insertion"], 0.0), batch_size=3
    )
    found = EvaluationFile.read(out)
    np.testing.assert_allclose(found.fractions, [0.0, 0.25, 0.5, 0.75, 1.0])
    for m, (row, c, heat) in enumerate(maps):
        deletion, insertion = hand_curves(x[row].astype(np.float64), heat, kernel, c, 0.0, STEPS)
        np.testing.assert_allclose(found.curves["deletion"][m], deletion, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(found.curves["insertion"][m], insertion, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(found.values["deletion"][m], trapezoid(deletion), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(found.values["insertion"][m], trapezoid(insertion), rtol=1e-5, atol=1e-6)
    # the ends: the image itself and the all-replaced image (logits 0: probability 1/2)
    np.testing.assert_allclose(found.curves["deletion"][:, -1], 0.5, atol=1e-6)
    np.testing.assert_allclose(found.curves["insertion"][:, 0], 0.5, atol=1e-6)
    # |w*x| of a linear model with positive contributions is the best order for both curves
    assert found.values["deletion"][0] < found.values["deletion"][1]
    assert found.values["insertion"][0] > found.values["insertion"][1]


def test_skipped_samples_give_nan_values_and_are_not_counted(tmp_path):
    shape = SHAPES["2d"]
    rng, _, kernel = positive_linear_setup(tmp_path, shape)
    x = rng.uniform(0.2, 1.0, (3, *shape, 1)).astype(np.float32)
    region = np.zeros(shape, bool)
    region[2:5, 2:5] = True
    good = region.astype(np.float32)
    maps = [(0, 0, good), (1, -1, None), (2, 0, good)]
    ids, pre, pred, hm = build_files(tmp_path, x, maps, tmp_path / "model.keras", kernel, skipped_rows=[1])
    mask = write_mask(tmp_path / "mask.png", region)
    masks = [mask, str(tmp_path / "no-such-mask.png"), mask]  # the skipped sample's mask is never read
    wanted = ["deletion", "insertion", *LOCALIZATION_AND_COMPLEXITY]
    out = tmp_path / "eval.h5"
    evaluate.evaluate_shard(pre, pred, hm, tmp_path / "model.keras", out, settings(wanted), masks, on_error="fail")
    found = EvaluationFile.read(out)
    for name in wanted:
        assert math.isnan(found.values[name][1]), name
        assert np.isfinite(found.values[name][[0, 2]]).all(), name
    assert np.isnan(found.curves["deletion"][1]).all() and np.isfinite(found.curves["deletion"][[0, 2]]).all()
    deletion, _ = hand_curves(x[2].astype(np.float64), good, kernel, 0, 0.0, STEPS)
    np.testing.assert_allclose(found.curves["deletion"][2], deletion, rtol=1e-5, atol=1e-6)
    rows = evaluate.summary_rows(
        ["saliency"], [out], {}, {"metrics": wanted, "bootstrap_samples": 50, "bootstrap_seed": 0}
    )
    assert {r["metric"]: r["n"] for r in rows} == {name: 2 for name in wanted}
    mass = {r["metric"]: r["mean"] for r in rows}["relevance_mass"]
    assert mass == pytest.approx(1.0)


def one_sample_with_mask(tmp_path, mask_path, overlay_shape=None, heat=None):
    shape = SHAPES["2d"]
    _, _, kernel = positive_linear_setup(tmp_path, shape)
    x = np.ones((2, *shape, 1), np.float32)
    region = np.zeros(shape, bool)
    region[1:3, 1:3] = True
    heat = region.astype(np.float32) if heat is None else heat
    maps = [(0, 0, heat), (1, 0, heat)]
    ids, pre, pred, hm = build_files(tmp_path, x, maps, tmp_path / "model.keras", kernel, overlay_shape=overlay_shape)
    good = write_mask(tmp_path / "good.png", region)
    return ids, pre, pred, hm, [mask_path, good]


def bad_mask(tmp_path, problem: str) -> str:
    path = tmp_path / "masks" / "bad.png"
    path.parent.mkdir(exist_ok=True)
    if problem == "empty":
        path.write_bytes(b"")
    elif problem == "unreadable":
        path.write_bytes(b"this is no PNG file" * 4)
    return str(path)


LOCALIZATION = ("pointing_game", "relevance_mass", "relevance_rank", "roc_auc")


@pytest.mark.parametrize("problem", ["missing", "empty", "unreadable"])
def test_a_bad_mask_fails_naming_sample_and_file_or_is_left_out_with_a_warning(tmp_path, problem):
    path = bad_mask(tmp_path, problem)
    ids, pre, pred, hm, masks = one_sample_with_mask(tmp_path, path)
    out = tmp_path / "eval.h5"
    wanted = settings([*LOCALIZATION, "sparseness"])
    with pytest.raises(SampleError, match=r"sample 'case/s0\.png'.*masks/bad\.png") as caught:
        evaluate.evaluate_shard(pre, pred, hm, None, out, wanted, masks, on_error="fail")
    assert caught.value.sample_id == "case/s0.png"
    assert not out.exists()
    evaluate.evaluate_shard(pre, pred, hm, None, out, wanted, masks, on_error="skip")
    found = EvaluationFile.read(out)
    for name in LOCALIZATION:
        assert math.isnan(found.values[name][0]), name
    np.testing.assert_allclose([found.values[name][1] for name in LOCALIZATION], [1.0, 1.0, 1.0, 1.0])
    # the complexity metrics need no mask: the sample keeps them (Gini of 4 equal values among 64)
    np.testing.assert_allclose(found.values["sparseness"], [1 - 4 / 64] * 2)
    assert len(found.issues) == 1
    issue = found.issues[0]
    assert (issue.sample, issue.kind, issue.stage) == ("case/s0.png", "warning", "evaluate:saliency")
    assert path in issue.reason


def test_a_mask_of_another_shape_than_the_image_is_resized_with_a_warning(tmp_path):
    # a 16x16 mask for an 8x8 image: map pixel i takes mask pixel floor((i + 0.5) * 2) = 2i + 1
    big = np.zeros((16, 16), bool)
    big[3, 5] = big[3, 7] = big[9, 11] = True  # odd rows and columns: land on map pixels (1,2), (1,3), (4,5)
    big[2, 2] = big[4, 6] = True  # even: dropped by the nearest-neighbour resize
    expected = np.zeros((8, 8), bool)
    expected[1, 2] = expected[1, 3] = expected[4, 5] = True
    path = write_mask(tmp_path / "big.png", big)
    heat = expected.astype(np.float32)
    ids, pre, pred, hm, masks = one_sample_with_mask(tmp_path, path, heat=heat)
    out = tmp_path / "eval.h5"
    evaluate.evaluate_shard(pre, pred, hm, None, out, settings(LOCALIZATION), masks, on_error="fail")
    found = EvaluationFile.read(out)
    np.testing.assert_allclose([found.values[name][0] for name in LOCALIZATION], [1.0, 1.0, 1.0, 1.0])
    # the second sample's 2x2 block mask does not hold the 3 map pixels: mass 0 there
    block = np.zeros((8, 8), bool)
    block[1:3, 1:3] = True
    assert found.values["relevance_mass"][1] == pytest.approx((heat * block).sum() / heat.sum())
    assert len(found.issues) == 1
    issue = found.issues[0]
    assert (issue.sample, issue.kind) == ("case/s0.png", "warning")
    assert "big.png" in issue.reason and "(16, 16)" in issue.reason and "(8, 8)" in issue.reason


def test_a_mask_of_the_image_shape_is_no_warning_even_where_the_map_is_smaller(tmp_path):
    # the overlay image (16x16) is larger than the map (8x8): a 16x16 mask fits the image
    big = np.zeros((16, 16), bool)
    big[3, 5] = True
    path = write_mask(tmp_path / "big.png", big)
    heat = np.zeros((8, 8), np.float32)
    heat[1, 2] = 1.0
    ids, pre, pred, hm, masks = one_sample_with_mask(tmp_path, path, overlay_shape=(16, 16), heat=heat)
    masks[1] = None  # no mask for the second sample
    out = tmp_path / "eval.h5"
    evaluate.evaluate_shard(pre, pred, hm, None, out, settings(LOCALIZATION), masks, on_error="fail")
    found = EvaluationFile.read(out)
    assert found.issues == []
    assert found.values["pointing_game"][0] == 1.0 and found.values["relevance_mass"][0] == 1.0
    assert all(math.isnan(found.values[name][1]) for name in LOCALIZATION)


def test_an_all_zero_mask_gives_no_localization_and_no_error(tmp_path):
    path = write_mask(tmp_path / "zero.png", np.zeros((8, 8), bool))
    ids, pre, pred, hm, masks = one_sample_with_mask(tmp_path, path)
    out = tmp_path / "eval.h5"
    evaluate.evaluate_shard(pre, pred, hm, None, out, settings([*LOCALIZATION, "complexity"]), masks, on_error="fail")
    found = EvaluationFile.read(out)
    assert found.issues == []
    assert all(math.isnan(found.values[name][0]) for name in LOCALIZATION)
    np.testing.assert_allclose([found.values[name][1] for name in LOCALIZATION], [1.0, 1.0, 1.0, 1.0])
    np.testing.assert_allclose(found.values["complexity"], [math.log(4)] * 2)


def test_a_mask_over_the_whole_image_has_no_roc_auc(tmp_path):
    path = write_mask(tmp_path / "full.png", np.ones((8, 8), bool))
    ids, pre, pred, hm, masks = one_sample_with_mask(tmp_path, path)
    out = tmp_path / "eval.h5"
    evaluate.evaluate_shard(pre, pred, hm, None, out, settings(LOCALIZATION), masks, on_error="fail")
    found = EvaluationFile.read(out)
    assert math.isnan(found.values["roc_auc"][0])  # no pixel outside the mask
    assert found.values["relevance_mass"][0] == 1.0 and found.values["pointing_game"][0] == 1.0
    assert found.values["relevance_rank"][0] == 1.0  # K = n: every pixel is in the top K


def test_localization_needs_one_mask_path_per_sample(tmp_path):
    ids, pre, pred, hm, masks = one_sample_with_mask(tmp_path, None)
    with pytest.raises(ValueError, match="one mask path"):
        evaluate.evaluate_shard(pre, pred, hm, None, tmp_path / "e.h5", settings(LOCALIZATION), None)


# --- 2. the metric selection ----------------------------------------------------------------------

ALL = [
    "deletion", "insertion", "road_morf", "road_lerf", "pointing_game", "relevance_mass", "relevance_rank",
    "roc_auc", "sparseness", "complexity", "randomization", "randomization_ssim",
]  # fmt: skip


def section(**overrides):
    base = {
        "metrics": None, "steps": 20, "replacement": "blur", "pointing_tolerance": 0, "sanity_samples": 16,
        "sanity_stages": 4, "bootstrap": {"samples": 1000, "seed": 0},
    }  # fmt: skip
    return {**base, **overrides}


def test_default_metrics_leave_out_localization_without_masks():
    assert evaluate.select_metrics(None, has_masks=True) == ALL
    without = evaluate.select_metrics(None, has_masks=False)
    assert without == [m for m in ALL if m not in LOCALIZATION] and len(without) == 8
    assert list(evaluate.Settings.from_config(section(), True).metrics) == ALL
    found = evaluate.Settings.from_config(section(), False)
    assert list(found.metrics) == without and not found.localization and found.randomization
    assert found.per_map == ("deletion", "insertion", "road_morf", "road_lerf", "sparseness", "complexity")
    # requested ones come back in the summary's order
    assert evaluate.select_metrics(["complexity", "deletion"], False) == ["deletion", "complexity"]
    assert evaluate.select_metrics([], False) == []


def test_a_localization_metric_without_masks_or_an_unknown_metric_is_an_error_naming_the_key():
    with pytest.raises(ValueError, match=r"evaluation\.metrics.*roc_auc.*data\.masks"):
        evaluate.select_metrics(["deletion", "roc_auc"], has_masks=False)
    with pytest.raises(ValueError, match=r"evaluation\.metrics.*data\.masks"):
        evaluate.Settings.from_config(section(metrics=["pointing_game"]), False)
    assert evaluate.select_metrics(["pointing_game"], True) == ["pointing_game"]
    with pytest.raises(ValueError, match=r"evaluation\.metrics.*'faithfulness'"):
        evaluate.select_metrics(["deletion", "faithfulness"], True)
    with pytest.raises(ValueError, match=r"evaluation\.replacement"):
        evaluate.Settings.from_config(section(replacement="zeros"), True)
    found = evaluate.Settings.from_config(section(replacement=0, steps=5, bootstrap={"samples": 7, "seed": 3}), False)
    assert (found.replacement, found.steps, found.bootstrap_samples, found.bootstrap_seed) == (0.0, 5, 7, 3)
    assert evaluate.Settings.from_config(section(replacement="road"), False).replacement == "road"


# --- 3. the mask paths ----------------------------------------------------------------------------


def data_config(**data):
    base = {"samples": None, "id_column": "id", "masks": None, "mask_column": None}
    return {"data": {**base, **data}, "demo": {"build": False}, "output": "results"}


def test_a_mask_file_the_table_names_but_that_does_not_exist_stops_the_run_before_any_job(tmp_path):
    # it stopped the first evaluation job, after every prediction and map had been computed
    from xaipipe.config import missing_masks_warning, sample_masks
    from xaipipe.samples import SampleSheet

    (tmp_path / "m.png").write_bytes(b"x")
    table = tmp_path / "samples.csv"
    table.write_text("id,mask\na.png,m.png\nb.png,nothere.png\nc.png,\n")
    sheet = SampleSheet(("a.png", "b.png", "c.png"))
    config = {**data_config(samples=str(table), mask_column="mask"), "on_error": "fail"}
    with pytest.raises(ValueError, match=r"data\.mask_column: 1 mask file named in column 'mask'.*sample 'b\.png'.*nothere"):
        sample_masks(config, sheet)
    config["on_error"] = "skip"  # the evaluation leaves b.png out, and the run says so at its start
    paths = sample_masks(config, sheet)
    assert paths == [str(tmp_path / "m.png"), str(tmp_path / "nothere.png"), None]
    assert "1 mask file(s)" in missing_masks_warning(config, sheet, paths)
    table.write_text("id,mask\na.png,m.png\nb.png,\nc.png,\n")
    assert missing_masks_warning(config, sheet, sample_masks(config, sheet)) is None


def test_a_masks_folder_mirrors_the_ids_with_any_extension(tmp_path):
    root = tmp_path / "masks"
    (root / "a").mkdir(parents=True)
    (root / "a" / "x.png").write_bytes(b"x")
    (root / "b.jpg").write_bytes(b"x")
    (root / "c.png").write_bytes(b"x")
    ids = ["a/x.jpg", "a/y.jpg", "b.jpg", "c", "d.png"]
    found = evaluate.mask_paths(data_config(masks=str(root)), ids)
    assert found == [f"{root}/a/x.png", None, f"{root}/b.jpg", f"{root}/c.png", None]
    assert evaluate.mask_paths(data_config(), ids) == [None] * 5
    with pytest.raises(ValueError, match=r"data\.masks"):
        evaluate.mask_paths(data_config(masks=str(tmp_path / "none")), ids)


def test_a_mask_column_is_relative_to_the_table_and_an_empty_cell_is_no_mask(tmp_path):
    (tmp_path / "study").mkdir()
    table = tmp_path / "study" / "samples.csv"
    table.write_text("id,label,mask\nx.png,0,masks/x.png\ny.png,1,\nz.png,1,  other/z.png  \n")
    config = data_config(samples=str(table), mask_column="mask")
    found = evaluate.mask_paths(config, ["z.png", "y.png", "x.png", "w.png"])
    assert found == [
        str(tmp_path / "study" / "other" / "z.png"), None, str(tmp_path / "study" / "masks" / "x.png"), None
    ]  # fmt: skip
    with pytest.raises(ValueError, match=r"data\.mask_column.*'lesion'"):
        evaluate.mask_paths(data_config(samples=str(table), mask_column="lesion"), ["x.png"])


def test_sample_masks_configured_but_found_for_none_is_an_error_naming_the_key(tmp_path):
    from xaipipe.config import sample_masks
    from xaipipe.samples import SampleSheet

    root = tmp_path / "masks"
    root.mkdir()
    (root / "other.png").write_bytes(b"x")
    sheet = SampleSheet(("a.png", "b.png"))
    with pytest.raises(ValueError, match=r"data\.masks.*no mask for any of the 2 samples"):
        sample_masks(data_config(masks=str(root)), sheet)
    (root / "b.png").write_bytes(b"x")
    assert sample_masks(data_config(masks=str(root)), sheet) == [None, f"{root}/b.png"]
    assert sample_masks(data_config(), sheet) is None
    table = tmp_path / "samples.csv"
    table.write_text("id,mask\na.png,\nb.png,\n")
    with pytest.raises(ValueError, match=r"data\.mask_column.*no mask for any"):
        sample_masks(data_config(samples=str(table), mask_column="mask"), sheet)


# --- 4. the bootstrap interval --------------------------------------------------------------------


def test_bootstrap_interval_of_constant_single_and_normal_values():
    assert evaluate.bootstrap_interval(np.full(30, 0.7), 200, 0) == pytest.approx((0.7, 0.7))
    assert evaluate.bootstrap_interval(np.array([2.5]), 200, 0) == (2.5, 2.5)
    low, high = evaluate.bootstrap_interval(np.zeros(0), 200, 0)
    assert math.isnan(low) and math.isnan(high)
    values = np.random.default_rng(1).normal(3.0, 2.0, 400)
    low, high = evaluate.bootstrap_interval(values, 2000, 5)
    expected = 1.96 * values.std(ddof=1) / math.sqrt(len(values))
    assert abs((high - low) / 2 - expected) <= 0.15 * expected
    assert low < values.mean() < high
    assert evaluate.bootstrap_interval(values, 2000, 5) == (low, high)
    assert evaluate.bootstrap_interval(values, 2000, 6) != (low, high)


# --- 5. the summary -------------------------------------------------------------------------------


def write_evaluation(path, method, class_index, values: dict[str, np.ndarray]):
    """An evaluation file (schema xaipipe.evaluation) in its documented layout, written by hand."""
    m = len(class_index)
    with h5store.create(path, EVALUATION, method=method, settings={}, model_sha256="") as f:
        h5store.write_strings(f, "ids", [f"s{k}" for k in range(m)])
        f.create_dataset("sample_index", data=np.arange(m, dtype=np.int32))
        f.create_dataset("class_index", data=np.asarray(class_index, np.int32))
        f.create_dataset("fractions", data=np.linspace(0, 1, 5))
        for name, value in values.items():
            f.create_dataset(f"values/{name}", data=np.asarray(value, np.float64))


def write_randomization(path, method, rows):
    with open(path, "w") as out:
        out.write(evaluate.RANDOMIZATION_HEADER)
        for stage, c, rho, ssim in rows:
            out.write(f"{method}\t{stage}\t{stage}\tdense\ts\t{c}\t{rho}\t{ssim}\n")


def summary_inputs(tmp_path):
    rng = np.random.default_rng(3)
    data = {}
    paths = []
    for method in ("gradcam", "saliency"):
        for shard in range(2):
            classes = np.array([0, 1, 0, -1, 1, 0])
            values = {"deletion": rng.uniform(0, 1, 6), "sparseness": rng.uniform(0, 1, 6)}
            values["deletion"][3] = values["sparseness"][3] = np.nan  # the skipped map
            values["sparseness"][1] = np.nan  # undefined
            path = tmp_path / f"{method}-{shard}.h5"
            write_evaluation(path, method, classes, values)
            paths.append(path)
            data.setdefault(method, []).append((classes, values))
    tables = {}
    for method in ("gradcam", "saliency"):
        tables[method] = tmp_path / f"rand-{method}.tsv"
        write_randomization(
            tables[method], method,
            [(1, 0, 0.9, 0.8), (1, 1, 0.7, 0.6), (2, 0, 0.2, 0.1), (2, 1, -0.4, 0.3), (2, 1, 0.1, "nan")],
        )  # fmt: skip
    return paths, tables, data


def test_summary_rows_are_nan_means_of_the_values_written_per_method_and_class(tmp_path):
    paths, tables, data = summary_inputs(tmp_path)
    wanted = ["deletion", "sparseness", "randomization", "randomization_ssim"]
    params = {"metrics": wanted, "bootstrap_samples": 300, "bootstrap_seed": 0}
    rows = evaluate.summary_rows(["gradcam", "saliency"], paths, tables, params)
    assert [(r["model"], r["variant"], r["method"], r["class"], r["metric"]) for r in rows] == [
        ("model", m, m, "all", name) for m in ("gradcam", "saliency") for name in wanted
    ]
    # variants of other methods, of a named model: each row names all three
    labelled = evaluate.summary_rows({"gc-a": "gradcam", "sg": "saliency"}, paths, {}, params, model="seed7")
    assert {(r["model"], r["variant"], r["method"]) for r in labelled} == {
        ("seed7", "gc-a", "gradcam"), ("seed7", "sg", "saliency")
    }
    final = {"randomization": np.array([0.2, -0.4, 0.1]), "randomization_ssim": np.array([0.1, 0.3, np.nan])}
    final_classes = np.array([0, 1, 1])
    for r in rows:
        if r["metric"] in final:
            expected = final[r["metric"]]
        else:
            expected = np.concatenate([values[r["metric"]] for _, values in data[r["variant"]]])
        assert r["mean"] == pytest.approx(np.nanmean(expected)), r
        assert r["n"] == int(np.isfinite(expected).sum()), r
        assert r["ci_low"] <= r["mean"] <= r["ci_high"]
    per_class = evaluate.summary_rows(["gradcam", "saliency"], paths, tables, params, class_names=["cat", "dog"])
    assert len(per_class) == 2 * len(wanted) * 2
    for r in per_class:
        c = ["cat", "dog"].index(r["class"])
        if r["metric"] in final:
            expected = final[r["metric"]][final_classes == c]
        else:
            expected = np.concatenate(
                [values[r["metric"]][classes == c] for classes, values in data[r["variant"]]]
            )
        assert r["n"] == int(np.isfinite(expected).sum()), r
        assert r["mean"] == pytest.approx(np.nanmean(expected)), r
    by_key = {(r["variant"], r["class"], r["metric"]): r for r in per_class}
    assert by_key[("saliency", "cat", "randomization")]["n"] == 1
    assert by_key[("saliency", "cat", "randomization")]["ci_low"] == pytest.approx(0.2)
    # the file round trip keeps the numbers at 4 decimals
    evaluate.write_summary(per_class, tmp_path / "summary.tsv")
    read = evaluate.read_summary(tmp_path / "summary.tsv")
    keys = ("model", "variant", "method", "class", "metric", "n")
    assert [tuple(r[k] for k in keys) for r in read] == [tuple(r[k] for k in keys) for r in per_class]
    for a, b in zip(read, per_class, strict=True):
        assert a["mean"] == pytest.approx(b["mean"], abs=5e-5)


def test_summary_per_class_without_a_randomization_table_gives_empty_rows(tmp_path):
    paths, _, _ = summary_inputs(tmp_path)
    params = {"metrics": ["deletion", "randomization"], "bootstrap_samples": 50, "bootstrap_seed": 0}
    rows = evaluate.summary_rows(["gradcam", "saliency"], paths, {}, params, class_names=["cat", "dog"])
    randomization = [r for r in rows if r["metric"] == "randomization"]
    assert len(randomization) == 4 and all(r["n"] == 0 and math.isnan(r["mean"]) for r in randomization)


def test_summary_without_class_names_and_without_a_randomization_table_gives_empty_rows(tmp_path):
    paths, _, data = summary_inputs(tmp_path)
    params = {"metrics": ["deletion", "randomization"], "bootstrap_samples": 50, "bootstrap_seed": 0}
    rows = evaluate.summary_rows(["gradcam", "saliency"], paths, {}, params)
    by_metric = {(r["variant"], r["metric"]): r for r in rows}
    assert by_metric[("gradcam", "randomization")]["n"] == 0
    assert math.isnan(by_metric[("gradcam", "randomization")]["mean"])
    expected = np.concatenate([values["deletion"] for _, values in data["saliency"]])
    assert by_metric[("saliency", "deletion")]["mean"] == pytest.approx(np.nanmean(expected))


# --- 6. the agreement between methods -------------------------------------------------------------


def write_maps(path, ids, maps, skipped=()):
    """A heatmaps file of 2D maps: (sample row, class, map or None), normalized ``absolute`` (see build_files)."""
    record = h5store.SkipRecord(len(ids))
    for row in skipped:
        record.skip(row, Issue(ids[row], "predict", "skipped", "simulated"))
    shape = next(heat.shape for _, _, heat in maps if heat is not None)
    with h5store.heatmaps_writer(path, ids, len(maps), shape, record, method="m",
                                 method_params={"normalize": "absolute"}) as w:  # fmt: skip
        for m, (row, c, heat) in enumerate(maps):
            if heat is None:
                w.write_skipped(slice(m, m + 1), row)
            else:
                heat = np.asarray(heat, np.float32)[None]
                w.write(slice(m, m + 1), np.array([row]), np.array([c]), heat)


def test_agreement_table_against_scipy_spearman(tmp_path):
    rng = np.random.default_rng(4)
    ids = ["s0", "s1", "s2", "s3"]
    shards = []
    for shard in range(2):
        base = [rng.uniform(0, 1, (8, 8)).astype(np.float32) for _ in range(4)]
        base[0] = np.round(base[0] * 3) / 3  # ties
        other = [rng.uniform(0, 1, (8, 8)).astype(np.float32) for _ in range(4)]
        keys = [(0, 0), (1, 0), (1, 1), (2, 1)]
        a = [(r, c, base[k]) for k, (r, c) in enumerate(keys)] + [(3, -1, None)]
        same = [(r, c, base[k].copy()) for k, (r, c) in enumerate(keys)] + [(3, -1, None)]
        negated = [(r, c, 1 - base[k]) for k, (r, c) in enumerate(keys)] + [(3, -1, None)]
        unrelated = [(r, c, other[k]) for k, (r, c) in enumerate(keys)] + [(3, -1, None)]
        if shard == 1:
            unrelated[2] = (1, 1, np.full((8, 8), 0.5, np.float32))  # constant: left out of n
        shards.append((a, same, negated, unrelated))
    names = ["a", "same", "negated", "unrelated"]
    paths = []
    for k, name in enumerate(names):
        for s in range(2):
            path = tmp_path / f"{name}-{s}.h5"
            write_maps(path, ids, shards[s][k], skipped=[3])
            paths.append(path)
    evaluate.agreement_table(names, paths, tmp_path / "agreement.tsv")
    rows = {(r["method_a"], r["method_b"]): r for r in evaluate.read_table(tmp_path / "agreement.tsv")}
    assert len(rows) == 6
    for i in range(4):
        for j in range(i + 1, 4):
            rhos = []
            for s in range(2):
                for (_, _, x), (_, _, y) in zip(shards[s][i], shards[s][j]):
                    if x is None or np.ptp(x) == 0 or np.ptp(y) == 0:
                        continue
                    x, y = x.ravel(), y.ravel()  # the heatmaps file keeps them exactly (normalized |v| / max |v|)
                    rhos.append(scipy.stats.spearmanr(x, y).statistic)
            row = rows[(names[i], names[j])]
            assert int(row["n"]) == len(rhos), (names[i], names[j])
            assert float(row["mean_spearman"]) == pytest.approx(np.mean(rhos), abs=1e-4)
    assert float(rows[("a", "same")]["mean_spearman"]) == pytest.approx(1.0)
    assert float(rows[("a", "negated")]["mean_spearman"]) == pytest.approx(-1.0)
    assert int(rows[("a", "unrelated")]["n"]) == 7 and int(rows[("a", "same")]["n"]) == 8
    names_, matrix, counts = evaluate.agreement_matrix(tmp_path / "agreement.tsv")
    assert names_ == names and matrix[2, 0] == pytest.approx(-1.0) and counts[0, 3] == 7


# --- 7. the randomization test --------------------------------------------------------------------


def test_cascade_cuts_by_hand():
    assert evaluate.cascade_cuts(5, 4) == [1, 2, 4, 5]  # linspace 1, 2.33, 3.67, 5
    assert evaluate.cascade_cuts(3, 2) == [1, 3]
    assert evaluate.cascade_cuts(3, 4) == [1, 2, 3]  # no more stages than layers
    assert evaluate.cascade_cuts(3, 3) == [1, 2, 3]
    assert evaluate.cascade_cuts(10, 4) == [1, 4, 7, 10]
    assert evaluate.cascade_cuts(1, 4) == [1]
    with pytest.raises(ValueError, match="no layer with weights"):
        evaluate.cascade_cuts(0, 2)


def test_a_cascade_of_one_stage_randomizes_every_layer():
    assert evaluate.cascade_cuts(4, 1) == [4]


def conv_model(path):
    import keras

    keras.utils.set_random_seed(11)
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(2, 3, padding="same", activation="relu")(inputs)
    h = keras.layers.Conv2D(2, 3, activation="relu")(h)
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(h))
    keras.Model(inputs, outputs).save(path)


def test_randomization_table_against_the_maps_of_a_randomized_copy(tmp_path):
    from xaipipe import methods
    from xaipipe.model import load_model

    model_path = tmp_path / "conv.keras"
    conv_model(model_path)
    model = load_model(model_path)
    rng = np.random.default_rng(5)
    x = rng.uniform(0, 1, (4, 8, 8, 1)).astype(np.float32)
    ids = ["s0", "s1", "s2", "s3"]
    probabilities = np.asarray(model.predict_on_batch(x), np.float64)
    with h5store.preprocessed_writer(
        tmp_path / "pre.h5", ids, [0] * 4, (8, 8, 1), spatial_dims=2, class_names=["a", "b"],
        preprocessing={}, preprocess_overlay=True,
    ) as writer:  # fmt: skip
        for row in range(4):
            writer.write(row, x[row], np.zeros((8, 8, 3), np.uint8))
    record = h5store.SkipRecord(4)
    record.skip(1, Issue("s1", "predict", "skipped", "simulated"))
    h5store.write_predictions(
        tmp_path / "pred.h5", ids, np.zeros(4), probabilities, class_names=["a", "b"], record=record,
        model_sha256=sha256_file(model_path),
    )  # fmt: skip
    out = tmp_path / "rand.tsv"
    evaluate.randomization_table(
        [tmp_path / "pre.h5"], [tmp_path / "pred.h5"], model_path, "saliency", {}, 3, 2, 0, out
    )
    rows = evaluate.read_table(out)
    used = [0, 2, 3]  # the first 3 samples not skipped
    assert [(r["stage"], r["randomized_layers"], r["sample"]) for r in rows] == [
        (str(stage), str(cut), ids[k]) for stage, cut in ((1, 1), (2, 3)) for k in used
    ]
    layer_names = [layer.name for layer in model.layers if layer.weights]
    assert {r["down_to"] for r in rows if r["stage"] == "1"} == {layer_names[-1]}  # the top (dense) layer
    assert {r["down_to"] for r in rows if r["stage"] == "2"} == {layer_names[0]}  # down to the first conv
    target = probabilities[used].argmax(axis=1)
    assert [int(r["class"]) for r in rows[:3]] == target.tolist()
    explain = methods.create("saliency", load_model(model_path)).explain
    trained = explain(x[used], target[:, None])[1][:, 0]
    random_model = evaluate.randomized_copy(load_model(model_path), 0)
    randomized = methods.create("saliency", random_model).explain(x[used], target[:, None])[1][:, 0]
    assert all(np.ptp(a) > 0 for a in trained)  # the trained maps rank their pixels
    for r, a, b in zip(rows[3:], trained, randomized, strict=True):
        expected = 0.0 if np.ptp(b) == 0 else scipy.stats.spearmanr(a.ravel(), b.ravel()).statistic
        assert float(r["spearman"]) == pytest.approx(expected, abs=2e-6)
        assert math.isfinite(float(r["ssim"]))
    # stage 1: only the top layer (the dense one) takes the randomized copy's weights
    top = load_model(model_path)
    top.layers[-1].set_weights(random_model.layers[-1].get_weights())
    partly = methods.create("saliency", top).explain(x[used], target[:, None])[1][:, 0]
    stage1 = []
    for r, a, b in zip(rows[:3], trained, partly, strict=True):
        expected = 0.0 if np.ptp(b) == 0 else scipy.stats.spearmanr(a.ravel(), b.ravel()).statistic
        assert float(r["spearman"]) == pytest.approx(expected, abs=2e-6)
        stage1.append(expected)
    assert any(0 < abs(v) < 0.999 for v in stage1 + [float(r["spearman"]) for r in rows[3:]])
    # the summary takes the last stage's values
    params = {"metrics": ["randomization"], "bootstrap_samples": 50, "bootstrap_seed": 0}
    summary = evaluate.summary_rows(["saliency"], [], {"saliency": out}, params)
    assert summary[0]["n"] == 3


def test_randomization_samples_are_spread_over_the_study_not_its_first_class(tmp_path):
    """Samples listed class by class (folders) put one class first: the test's samples span every shard."""
    model_path = tmp_path / "conv.keras"
    conv_model(model_path)
    rng = np.random.default_rng(2)
    ids = [f"a{k}" for k in range(5)] + [f"b{k}" for k in range(5)]
    pre, pred = [], []
    for s in range(2):
        shard_ids = ids[5 * s : 5 * s + 5]
        with h5store.preprocessed_writer(
            tmp_path / f"pre{s}.h5", shard_ids, [s] * 5, (8, 8, 1), spatial_dims=2, class_names=["a", "b"],
            preprocessing={}, preprocess_overlay=True,
        ) as writer:  # fmt: skip
            for row in range(5):
                writer.write(row, rng.uniform(0, 1, (8, 8, 1)).astype(np.float32), np.zeros((8, 8, 3), np.uint8))
        record = h5store.SkipRecord(5)
        if s == 1:
            record.skip(2, Issue("b2", "predict", "skipped", "simulated"))
        h5store.write_predictions(
            tmp_path / f"pred{s}.h5", shard_ids, np.full(5, s), np.tile([[0.6, 0.4]], (5, 1)), class_names=["a", "b"],
            record=record, model_sha256=sha256_file(model_path),
        )  # fmt: skip
        pre.append(tmp_path / f"pre{s}.h5")
        pred.append(tmp_path / f"pred{s}.h5")
    out = tmp_path / "rand.tsv"
    evaluate.randomization_table(pre, pred, model_path, "saliency", {}, 3, 1, 0, out)
    # 9 samples not skipped (a0-a4, b0, b1, b3, b4): the 1st, 5th and 9th of them; the first 3 were a0-a2
    assert [r["sample"] for r in evaluate.read_table(out)] == ["a0", "a4", "b4"]
    assert evaluate.spread_rows(4, 16).tolist() == [0, 1, 2, 3]
    assert evaluate.spread_rows(100, 4).tolist() == [0, 33, 66, 99]
    assert evaluate.spread_rows(0, 4).tolist() == []


def test_randomization_spearman_convention():
    a = np.arange(16.0).reshape(4, 4)
    assert evaluate.randomization_spearman(a, np.full((4, 4), 0.3)) == 0.0
    assert math.isnan(evaluate.randomization_spearman(np.ones((4, 4)), a))
    assert evaluate.randomization_spearman(a, -a) == pytest.approx(-1.0)


@pytest.mark.parametrize("kind", ["2d", "3d"])
def test_replacement_road_imputes_deletion_and_insertion(tmp_path, kind):
    """With ``replacement: road`` deletion's first copy is the image and its last the per-channel mean
    (plus noise 0.01), insertion the reverse: the end points by hand, with the linear model's softmax."""
    shape = SHAPES[kind]
    rng = np.random.default_rng(3)
    w = rng.uniform(0.05, 1.0, shape) * (4.0 / np.prod(shape))
    kernel = linear_model(tmp_path / "model.keras", w)
    x = np.stack([(w / w.max()) ** 2, (w / w.max()) ** 3])[..., None].astype(np.float32)  # bright where w is large
    maps = [(row, 0, np.abs(w * x[row, ..., 0])) for row in range(2)]
    _, pre, pred, hm = build_files(tmp_path, x, maps, tmp_path / "model.keras", kernel)
    out = tmp_path / "eval.h5"
    evaluate.evaluate_shard(
        pre, pred, hm, tmp_path / "model.keras", out, settings(["deletion", "insertion"], replacement="road")
    )
    found = EvaluationFile.read(out)
    image = softmax_numpy(x, kernel)[:, 0]
    mean = softmax_numpy(np.broadcast_to(x.mean(axis=tuple(range(1, x.ndim)), keepdims=True), x.shape), kernel)[:, 0]
    assert np.all(image - mean > 0.05)  # so the end points below tell the image from the mean
    deletion, insertion = found.curves["deletion"], found.curves["insertion"]
    np.testing.assert_allclose(deletion[:, 0], image, rtol=1e-5)  # nothing removed yet
    np.testing.assert_allclose(insertion[:, -1], image, rtol=1e-5)  # everything revealed
    np.testing.assert_allclose(deletion[:, -1], mean, atol=0.01)  # all imputed: the mean, and the noise
    np.testing.assert_allclose(insertion[:, 0], mean, atol=0.01)
    assert np.all(found.values["deletion"] < found.values["insertion"])  # the |w x| map is faithful


def test_comparison_ranks_the_variants_of_each_metric_by_its_direction(tmp_path):
    # a summary written by hand: deletion (lower is better) and pointing game (higher is better)
    summary = tmp_path / "summary.tsv"
    summary.write_text(
        evaluate.SUMMARY_HEADER
        + "model\tos-8\tocclusion\tall\tdeletion\t0.30\t0.25\t0.35\t60\n"
        + "model\tos-16\tocclusion\tall\tdeletion\t0.20\t0.15\t0.26\t60\n"
        + "model\tgradcam\tgradcam\tall\tdeletion\t0.50\t0.45\t0.55\t60\n"
        + "model\tempty\tsaliency\tall\tdeletion\tnan\tnan\tnan\t0\n"
        + "model\tos-8\tocclusion\tall\tpointing_game\t0.90\t0.80\t0.97\t40\n"
        + "model\tos-16\tocclusion\tall\tpointing_game\t0.50\t0.35\t0.65\t40\n"
        + "model\tgradcam\tgradcam\tall\tpointing_game\t0.95\t0.90\t1.00\t40\n"
        + "model\tos-8\tocclusion\tall\trandomization\t-0.60\t-0.70\t-0.50\t8\n"  # inverted: still tied to the weights
        + "model\tgradcam\tgradcam\tall\trandomization\t0.05\t0.00\t0.10\t8\n"
    )
    out = tmp_path / "comparison.tsv"
    evaluate.write_comparison([summary], out)
    rows = evaluate.read_table(out)
    assert {(r["variant"], r["method"]) for r in rows} == {
        ("os-8", "occlusion"), ("os-16", "occlusion"), ("gradcam", "gradcam"), ("empty", "saliency")
    }
    got = [(r["metric"], r["rank"], r["variant"], r["within_ci_of_best"]) for r in rows]
    assert got == [
        ("deletion", "1", "os-16", "yes"),
        ("deletion", "2", "os-8", "yes"),  # [0.25, 0.35] overlaps the best's [0.15, 0.26]
        ("deletion", "3", "gradcam", "no"),
        ("deletion", "", "empty", ""),  # no value: last, unranked, not judged
        ("pointing_game", "1", "gradcam", "yes"),
        ("pointing_game", "2", "os-8", "yes"),  # [0.80, 0.97] overlaps [0.90, 1.00]
        ("pointing_game", "3", "os-16", "no"),
        ("randomization", "1", "gradcam", "yes"),  # nearer zero is better: |0.05| < |-0.60|
        ("randomization", "2", "os-8", "no"),
    ]
    assert {r["better"] for r in rows if r["metric"] == "deletion"} == {"lower"}
    assert [float(r["mean"]) for r in rows[:3]] == [0.20, 0.30, 0.50]


def test_equal_means_share_their_rank(tmp_path):
    # two models' pointing game of exactly 115/116 were ranked 1 and 2, in the config's order
    summary = tmp_path / "summary.tsv"
    summary.write_text(
        evaluate.SUMMARY_HEADER
        + "m1\tgradcam\tgradcam\tall\tpointing_game\t0.9914\t0.9741\t1.0000\t116\n"
        + "m2\tsaliency\tsaliency\tall\tpointing_game\t0.6810\t0.5948\t0.7672\t116\n"
        + "m2\tgradcam\tgradcam\tall\tpointing_game\t0.9914\t0.9741\t1.0000\t116\n"
        + "m1\tsaliency\tsaliency\tall\tpointing_game\t0.5000\t0.4100\t0.5900\t116\n"
    )
    out = tmp_path / "comparison.tsv"
    evaluate.write_comparison([summary], out)
    got = [(r["rank"], r["model"], r["variant"]) for r in evaluate.read_table(out)]
    assert got == [("1", "m1", "gradcam"), ("1", "m2", "gradcam"), ("3", "m2", "saliency"), ("4", "m1", "saliency")]


def test_nearer_zero_compares_the_distances_from_zero(tmp_path):
    # randomization is ranked by |mean|, but within_ci_of_best compared the signed intervals: -0.12 [-0.16, -0.08]
    # was told apart from +0.10 [0.06, 0.14] although their distances from zero, [0.08, 0.16] and [0.06, 0.14], overlap
    summary = tmp_path / "summary.tsv"
    summary.write_text(
        evaluate.SUMMARY_HEADER
        + "model\tgradcam\tgradcam\tall\trandomization\t0.10\t0.06\t0.14\t8\n"
        + "model\tocc\tocclusion\tall\trandomization\t-0.12\t-0.16\t-0.08\t8\n"
        + "model\tig\tintegratedgradients\tall\trandomization\t-0.40\t-0.50\t-0.30\t8\n"
        + "model\tsal\tsaliency\tall\trandomization\t0.20\t-0.10\t0.50\t8\n"  # straddles 0: [0, 0.50]
    )
    out = tmp_path / "comparison.tsv"
    evaluate.write_comparison([summary], out)
    got = [(r["rank"], r["variant"], r["within_ci_of_best"]) for r in evaluate.read_table(out)]
    assert got == [("1", "gradcam", "yes"), ("2", "occ", "yes"), ("3", "sal", "yes"), ("4", "ig", "no")]


def test_with_several_models_score_curve_metrics_rank_each_models_variants_among_themselves(tmp_path):
    # a model without a softmax: its insertion and deletion areas are in its raw scores (1.2-1.3), and ranked with a
    # softmax model's (0.6) its every variant came first on insertion and last on deletion, by the scale alone
    soft, raw = tmp_path / "soft.tsv", tmp_path / "raw.tsv"
    soft.write_text(
        evaluate.SUMMARY_HEADER
        + "soft\tgradcam\tgradcam\tall\tinsertion\t0.59\t0.55\t0.63\t12\n"
        + "soft\tocc\tocclusion\tall\tinsertion\t0.40\t0.35\t0.45\t12\n"
        + "soft\tgradcam\tgradcam\tall\tpointing_game\t0.50\t0.25\t0.75\t12\n"
        + "soft\tocc\tocclusion\tall\tpointing_game\t0.92\t0.75\t1.00\t12\n"
    )
    raw.write_text(
        evaluate.SUMMARY_HEADER
        + "raw\tgradcam\tgradcam\tall\tinsertion\t1.25\t1.20\t1.30\t12\n"
        + "raw\tocc\tocclusion\tall\tinsertion\t1.31\t1.28\t1.34\t12\n"
        + "raw\tgradcam\tgradcam\tall\tpointing_game\t0.75\t0.50\t0.92\t12\n"
        + "raw\tocc\tocclusion\tall\tpointing_game\t1.00\t1.00\t1.00\t12\n"
    )
    out = tmp_path / "comparison.tsv"
    evaluate.write_comparison([soft, raw], out)
    got = [(r["metric"], r["rank"], r["model"], r["variant"], r["within_ci_of_best"], r["ranked_among"])
           for r in evaluate.read_table(out)]  # fmt: skip
    assert got == [
        ("insertion", "1", "soft", "gradcam", "yes", "its model"),
        ("insertion", "2", "soft", "occ", "no", "its model"),  # [0.35, 0.45] against [0.55, 0.63]
        ("pointing_game", "1", "raw", "occ", "yes", "all models"),  # a map's hits: comparable between models
        ("pointing_game", "2", "soft", "occ", "yes", "all models"),
        ("pointing_game", "3", "raw", "gradcam", "no", "all models"),  # [0.50, 0.92] below 1.00
        ("pointing_game", "4", "soft", "gradcam", "no", "all models"),
        ("insertion", "1", "raw", "occ", "yes", "its model"),
        ("insertion", "2", "raw", "gradcam", "yes", "its model"),  # [1.20, 1.30] overlaps [1.28, 1.34]
    ]


@pytest.mark.parametrize(
    "step, expected_of",
    [
        ({"name": "padding", "shape": "square"}, lambda m: np.pad(m, ((10, 10), (0, 0)))),  # 20x40 -> 40x40
        ({"name": "crop", "shape": [10, 20]}, lambda m: m[5:15, 10:30]),  # the centre: rows 5.., columns 10..
    ],
)
def test_a_mask_is_padded_or_cropped_as_its_image_was(tmp_path, step, expected_of):
    # the mask of the source was stretched onto the padded image: 12 of 18 pointing-game values were wrong
    from xaipipe.preprocess import Preprocessing
    from xaipipe.stages import preprocess_shard

    image = np.zeros((20, 40), np.uint8)
    image[5:10, 24:32] = 255
    mask = image > 0
    write_png(tmp_path / "img.png", image)
    write_png(tmp_path / "mask.png", mask.astype(np.uint8) * 255)
    pre = Preprocessing.from_config(
        {"size": [16, 16], "channels": 1, "standardize": "minmax", "subfunctions": [step]}
    )
    preprocess_shard([tmp_path / "img.png"], ["img"], None, None, pre, tmp_path / "pre.h5")
    expected = expected_of(mask)
    record = h5store.SkipRecord(1)
    regions = evaluate._mask_regions(
        tmp_path / "pre.h5", ["img"], [str(tmp_path / "mask.png")], ["pointing_game"], expected.shape,
        np.zeros(1, bool), "fail", "evaluate:gradcam", record,
    )  # fmt: skip
    np.testing.assert_array_equal(regions[0], expected)
    assert not record.issues  # the mask fits its source: no warning that it was resized
    with h5store.PreprocessedShard.open(tmp_path / "pre.h5") as shard:  # the mask lies where the lesion's pixels do
        assert (shard.overlay_image(0)[..., 0][expected] == 255).all()


def test_a_volumes_mask_meets_the_map_in_world_coordinates_whatever_its_grid(tmp_path):
    # a mask stored x-flipped (direction -1) or cropped to the lesion (origin moved, as Slicer exports) was matched
    # by array shape alone: pointing game 0 where the map hit the lesion
    import SimpleITK as sitk

    from xaipipe.preprocess import Preprocessing
    from xaipipe.stages import preprocess_shard

    spacing, origin = (0.7, 0.8, 3.0), (10.0, -20.0, 5.0)  # SimpleITK's (x, y, z)
    volume = np.zeros((8, 10, 12), np.uint8)  # (z, y, x)
    volume[2:5, 3:6, 7:11] = 200
    truth = volume > 0

    def write(array, path, origin=origin, direction=(1, 0, 0, 0, 1, 0, 0, 0, 1)):
        image = sitk.GetImageFromArray(array)
        image.SetSpacing(spacing), image.SetOrigin(origin), image.SetDirection(direction)
        sitk.WriteImage(image, str(path))

    write(volume, tmp_path / "vol.nii.gz")
    write(truth.astype(np.uint8), tmp_path / "same.nii.gz")
    # x flipped: voxel x of the array at world x = origin_x + (11 - x) * 0.7, the direction's x axis -1
    write(truth[:, :, ::-1].astype(np.uint8), tmp_path / "flipped.nii.gz", origin=(10.0 + 11 * 0.7, -20.0, 5.0),
          direction=(-1, 0, 0, 0, 1, 0, 0, 0, 1))  # fmt: skip
    # cropped to the lesion's bounding box: origin at voxel (z 2, y 3, x 7)
    write(truth[2:5, 3:6, 7:11].astype(np.uint8), tmp_path / "box.nii.gz", origin=(10.0 + 7 * 0.7, -20 + 3 * 0.8, 11.0))
    pre = Preprocessing.from_config({"size": [8, 10, 12], "channels": 1, "standardize": "minmax"})
    ids = ["same", "flipped", "box"]
    preprocess_shard([tmp_path / "vol.nii.gz"] * 3, ids, None, None, pre, tmp_path / "pre.h5")
    masks = [str(tmp_path / f"{name}.nii.gz") for name in ids]
    regions = evaluate._mask_regions(
        tmp_path / "pre.h5", ids, masks, ["pointing_game"], truth.shape, np.zeros(3, bool), "fail", "evaluate:gc",
        h5store.SkipRecord(3),
    )  # fmt: skip
    for row in range(3):
        np.testing.assert_array_equal(regions[row], truth, err_msg=ids[row])
    # an .npy volume or mask has no grid of its own (one is made up): a mask of its shape meets it voxel for voxel
    np.save(tmp_path / "vol.npy", volume)
    np.save(tmp_path / "mask.npy", truth.astype(np.uint8))
    pairs = [("vol.npy", "same.nii.gz"), ("vol.nii.gz", "mask.npy"), ("vol.npy", "mask.npy")]
    preprocess_shard([tmp_path / image for image, _ in pairs], ["a", "b", "c"], None, None, pre, tmp_path / "npy.h5")
    regions = evaluate._mask_regions(
        tmp_path / "npy.h5", ["a", "b", "c"], [str(tmp_path / mask) for _, mask in pairs], ["pointing_game"],
        truth.shape, np.zeros(3, bool), "fail", "evaluate:gc", h5store.SkipRecord(3),
    )  # fmt: skip
    for row in range(3):
        np.testing.assert_array_equal(regions[row], truth, err_msg=str(pairs[row]))


@pytest.mark.parametrize("kind", ["2d", "3d"])
def test_a_lesion_smaller_than_a_map_voxel_counts_where_it_lies(tmp_path, kind):
    # a one-voxel lesion on a grid twice as fine as the maps': nearest neighbour samples the odd voxels only, so a
    # lesion at an even one vanished and its sample left localization without a word (n 1 of 2 in the summary)
    shape = SHAPES[kind]
    _, _, kernel = positive_linear_setup(tmp_path, shape)
    fine = np.zeros(tuple(2 * n for n in shape), bool)
    fine[(4,) * len(shape)] = True  # under map voxel 2 (its centre at fine 4.5 and 5.5 ... of map voxel 2)
    peak = np.zeros(shape, np.float32)
    peak[(2,) * len(shape)] = 1.0
    elsewhere = np.zeros(shape, np.float32)
    elsewhere[(0,) * len(shape)] = 1.0
    x = np.ones((2, *shape, 1), np.float32)
    _, pre, pred, hm = build_files(tmp_path, x, [(0, 0, peak), (1, 0, elsewhere)], tmp_path / "model.keras", kernel)
    mask = write_mask(tmp_path / f"mask{mask_suffix(kind)}", fine)
    out = tmp_path / "eval.h5"
    evaluate.evaluate_shard(
        pre, pred, hm, tmp_path / "model.keras", out, settings(["pointing_game", "relevance_mass"]), [mask] * 2,
        on_error="skip",
    )  # fmt: skip
    found = EvaluationFile.read(out)
    np.testing.assert_array_equal(found.values["pointing_game"], [1.0, 0.0])
    np.testing.assert_allclose(found.values["relevance_mass"], [1.0, 0.0])
    held = [issue.reason for issue in found.issues if "smaller than a voxel" in issue.reason]
    assert len(held) == 2 and "counts as the 1 voxel(s) that hold its voxels' centres" in held[0]


def test_a_volumes_small_lesion_on_a_coarser_model_grid_counts_where_it_lies(tmp_path):
    # preprocessing.spacing 3 mm for a 1 mm volume: the mask is resampled onto the maps' grid by nearest neighbour in
    # world coordinates, which lost a one-voxel lesion; and a larger region that lost voxels to the coarser grid was
    # said to lie off its image, blaming the mask's header (the same header as the image's)
    import SimpleITK as sitk

    from xaipipe.preprocess import Preprocessing
    from xaipipe.stages import preprocess_shard

    volume = np.zeros((12, 12, 12), np.uint8)
    volume[2:9, 3:10, 1:8] = 100

    def write(array, path):
        image = sitk.GetImageFromArray(array)
        image.SetOrigin((5.0, -3.0, 2.0))
        sitk.WriteImage(image, str(path))

    write(volume, tmp_path / "vol.nii.gz")
    tiny = np.zeros_like(volume)
    tiny[7, 7, 7] = 1  # the 3 mm grid's voxel centres lie on 1 mm voxels 0, 3, 6 and 9: nearest misses voxel 7
    write(tiny, tmp_path / "tiny.nii.gz")
    block = np.zeros_like(volume)
    block[1:5, 1:5, 1:5] = 1  # 64 mm^3, of which nearest keeps voxel 3 alone, 27 mm^3: "42% within the image"
    write(block, tmp_path / "block.nii.gz")
    pre = Preprocessing.from_config(
        {"size": [4, 4, 4], "channels": 1, "standardize": "minmax", "spacing": [3.0, 3.0, 3.0]}
    )
    ids = ["tiny", "block"]
    preprocess_shard([tmp_path / "vol.nii.gz"] * 2, ids, None, None, pre, tmp_path / "pre.h5")
    record = h5store.SkipRecord(2)
    regions = evaluate._mask_regions(
        tmp_path / "pre.h5", ids, [str(tmp_path / f"{i}.nii.gz") for i in ids], ["pointing_game"], (4, 4, 4),
        np.zeros(2, bool), "skip", "evaluate:gc", record,
    )  # fmt: skip
    expected = np.zeros((4, 4, 4), bool)
    expected[2, 2, 2] = True  # 1 mm voxel 7 lies in 3 mm voxel 2 (centre at 6 mm, from 4.5 to 7.5 mm)
    np.testing.assert_array_equal(regions[0], expected)
    warned = {issue.sample: issue.reason for issue in record.issues}
    assert set(warned) == {"tiny"} and "smaller than a voxel of the maps' grid" in warned["tiny"]
    assert regions[1].sum() == 1 and regions[1][1, 1, 1]


def test_a_volumes_mask_whose_header_places_it_off_its_image_is_named(tmp_path):
    """A mask saved without its image's header (nib.Nifti1Image(mask, np.eye(4)), a common export) is placed by
    its own header in world coordinates: its region fell outside the image and the sample got NaN without a word
    (n 3 of 4 in the summary). Now a warning names the mask; a mask half outside is named with the share kept."""
    import SimpleITK as sitk

    from xaipipe.preprocess import Preprocessing
    from xaipipe.stages import preprocess_shard

    spacing, origin, flipped = (1.0, 1.5, 2.5), (30.0, 40.0, -20.0), (-1, 0, 0, 0, -1, 0, 0, 0, 1)
    volume = np.zeros((8, 10, 12), np.uint8)  # (z, y, x)
    volume[2:6, 3:7, 4:10] = 200
    truth = volume > 0

    def write(array, path, spacing=spacing, origin=origin, direction=flipped):
        image = sitk.GetImageFromArray(array)
        image.SetSpacing(spacing), image.SetOrigin(origin), image.SetDirection(direction)
        sitk.WriteImage(image, str(path))

    write(volume, tmp_path / "vol.nii.gz")
    write(truth.astype(np.uint8), tmp_path / "own.nii.gz")  # the image's header: no warning
    identity = (1, 0, 0, 0, 1, 0, 0, 0, 1)
    write(truth.astype(np.uint8), tmp_path / "eye.nii.gz", (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), identity)
    # moved by 4 voxels along z (10 mm): z 2..5 lands on 6..9, of which 6 and 7 lie in the image: half the region
    write(truth.astype(np.uint8), tmp_path / "moved.nii.gz", origin=(30.0, 40.0, -10.0))
    pre = Preprocessing.from_config({"size": [8, 10, 12], "channels": 1, "standardize": "minmax"})
    ids = ["own", "eye", "moved"]
    preprocess_shard([tmp_path / "vol.nii.gz"] * 3, ids, None, None, pre, tmp_path / "pre.h5")
    record = h5store.SkipRecord(3)
    regions = evaluate._mask_regions(
        tmp_path / "pre.h5", ids, [str(tmp_path / f"{i}.nii.gz") for i in ids], ["pointing_game"], truth.shape,
        np.zeros(3, bool), "skip", "evaluate:gc", record,
    )  # fmt: skip
    np.testing.assert_array_equal(regions[0], truth)
    assert 1 not in regions  # nothing of it within the image
    moved = np.zeros_like(truth)
    moved[6:8] = truth[2:4]
    np.testing.assert_array_equal(regions[2], moved)
    warned = {issue.sample: issue.reason for issue in record.issues}
    assert set(warned) == {"eye", "moved"}
    assert "eye.nii.gz: none of its region lies within the image" in warned["eye"]
    assert "left out of localization" in warned["eye"]
    assert "moved.nii.gz: only 50% of its region" in warned["moved"]


def test_maps_of_no_positive_evidence_miss_and_only_the_labels_map_meets_the_mask(tmp_path):
    """Two ways localization was silently wrong (a helper's study):
    - a signed map with nothing positive (occlusion of a class the image does not show) has its maximum, 0, at
      many pixels, some inside the mask: a pointing-game hit (the disk row read 1.00, half of it such maps);
    - with targets: all, every class's map met the sample's one mask, and the rows of class 'disk' held the disk
      maps of square images measured against the square's outline.
    Now such a map misses (relevance mass 0), and of a labelled sample's maps per class only its label's meets
    the mask; an unlabelled sample's maps all do."""
    shape = SHAPES["2d"]
    _, _, kernel = positive_linear_setup(tmp_path, shape)
    region = np.zeros(shape, bool)
    region[1:3, 1:3] = True
    negative = -np.linspace(0, 1, region.size, dtype=np.float32).reshape(shape)  # 0 at pixel (0, 0), < 0 elsewhere
    negative[region] = 0.0  # ties at the maximum, 0, inside the mask
    on_mask = region.astype(np.float32)
    x = np.ones((2, *shape, 1), np.float32)
    maps = [(0, 0, negative), (0, 1, on_mask), (1, 0, negative), (1, 1, on_mask)]
    ids, pre, pred, hm = build_files(tmp_path, x, maps, tmp_path / "model.keras", kernel, labels=[0, -1],
                                     normalize="signed")  # fmt: skip
    mask = write_mask(tmp_path / "mask.png", region)
    out = tmp_path / "eval.h5"
    evaluate.evaluate_shard(pre, pred, hm, None, out, settings(LOCALIZATION), [mask, mask])
    v = EvaluationFile.read(out).values
    # sample 0 (label a): its class-a map misses, its class-b map is not measured; sample 1 (no label): both are
    np.testing.assert_array_equal(v["pointing_game"], [0.0, np.nan, 0.0, 1.0])
    np.testing.assert_array_equal(v["relevance_mass"], [0.0, np.nan, 0.0, 1.0])
    assert np.isnan(v["relevance_rank"][1]) and np.isnan(v["roc_auc"][1]) and v["roc_auc"][3] == 1.0


@pytest.mark.parametrize("high", [255, 1])
def test_a_jpeg_mask_is_its_region_without_the_compression_noise(tmp_path, high):
    """A mask saved as JPEG (quality 75) was read as 'non-zero = inside': the compression's noise around a
    64-pixel square made it 96 pixels, relevance mass 0.96 instead of 0.78. The region is now where the mask
    exceeds half its largest value (0/255 and 0/1 masks alike); a PNG mask stays 'non-zero = inside'."""
    square = np.zeros((32, 32), np.uint8)
    square[10:18, 12:20] = high
    cv2.imwrite(str(tmp_path / "m.jpg"), square * (255 // high), [cv2.IMWRITE_JPEG_QUALITY, 75])
    stored = cv2.imread(str(tmp_path / "m.jpg"), cv2.IMREAD_GRAYSCALE)
    assert np.count_nonzero(stored) > 64  # the noise is there
    mask, _ = evaluate.load_mask(tmp_path / "m.jpg", 2)
    np.testing.assert_array_equal(mask, square > 0)
    cv2.imwrite(str(tmp_path / "rgb.jpg"), np.dstack([square * (255 // high)] * 3), [cv2.IMWRITE_JPEG_QUALITY, 75])
    np.testing.assert_array_equal(evaluate.load_mask(tmp_path / "rgb.jpg", 2)[0], square > 0)
    labels = np.zeros((32, 32), np.uint8)
    labels[0, 0], labels[5, 5] = 1, 3  # a label map in a PNG: every non-zero label is the region
    write_png(tmp_path / "labels.png", labels)
    assert np.count_nonzero(evaluate.load_mask(tmp_path / "labels.png", 2)[0]) == 2


def test_a_mask_with_its_axes_in_another_order_is_left_out_and_said(tmp_path):
    """A .npy mask saved in nibabel's (x, y, z) order for a (z, y, x) volume was 'resized to the map's' (a warning
    that describes a transposition as a resize) and scored where it did not lie. It is left out now, said so."""
    shape = (4, 5, 6)
    _, _, kernel = positive_linear_setup(tmp_path, shape)
    region = np.zeros(shape, bool)
    region[1:3, 1:3, 4:6] = True
    x = np.ones((1, *shape, 1), np.float32)
    ids, pre, pred, hm = build_files(tmp_path, x, [(0, 0, region.astype(np.float32))], tmp_path / "model.keras", kernel)
    mask = write_mask(tmp_path / "mask.npy", region.transpose())  # (6, 5, 4)
    out = tmp_path / "eval.h5"
    evaluate.evaluate_shard(pre, pred, hm, None, out, settings(LOCALIZATION), [mask], on_error="skip")
    found = EvaluationFile.read(out)
    assert all(np.isnan(found.values[name][0]) for name in LOCALIZATION)
    (issue,) = found.issues
    assert "(6, 5, 4) is the image's (4, 5, 6) with its axes in another order" in issue.reason
    assert "left out of localization" in issue.reason
