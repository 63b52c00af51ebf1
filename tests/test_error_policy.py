"""The error policy for long runs (``on_error``) and the warning about small images.

With ``on_error: skip`` a sample that cannot be read, holds non-finite values or whose
heatmap fails is left out of later stages, listed in ``failures.tsv`` and counted in the
run's summary; with ``fail`` (the default) the same sample stops the run naming it.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from xaipipe import h5store
from xaipipe.errors import SampleError
from xaipipe.preprocess import Preprocessing
from xaipipe.stages import compute_heatmaps_shard, predict_shard, preprocess_shard
from xaipipe.writers import write_png

SIZE = (32, 32)
TRUNCATED_PNG = b"\x89PNG\r\n\x1a\n truncated"


def intensity_model(path, size=SIZE) -> None:
    """Class 0's score is the mean intensity (an identity 1x1 conv, pooling, dense): Grad-CAM is the image."""
    import keras

    inputs = keras.Input((*size, 1))
    features = keras.layers.Conv2D(1, 1, use_bias=False, name="features")
    dense = keras.layers.Dense(2, activation="softmax", name="classes")
    model = keras.Model(inputs, dense(keras.layers.GlobalAveragePooling2D()(features(inputs))))
    features.set_weights([np.ones(features.get_weights()[0].shape, np.float32)])
    dense.set_weights([np.array([[4.0, -4.0]], np.float32), np.array([5.0, 0.0], np.float32)])
    model.save(path)


def good_image(k: int, shape=SIZE) -> np.ndarray:
    rng = np.random.default_rng(k)
    image = rng.integers(0, 60, shape).astype(np.uint8)
    y, x = np.indices(shape)
    image[(y - 8 - 4 * k) ** 2 + (x - 10 - 3 * k) ** 2 <= 16] = 220  # a bright disk
    return image


PRE = Preprocessing(size=SIZE, channels=1, standardize="tf")


# --- preprocessing ------------------------------------------------------------------------


def test_preprocess_skip_records_unreadable_and_non_finite_samples_and_warns_about_small_ones(tmp_path, caplog):
    paths = [tmp_path / "a.png", tmp_path / "bad.png", tmp_path / "nan.npy", tmp_path / "tiny.png"]
    write_png(paths[0], good_image(0))
    paths[1].write_bytes(TRUNCATED_PNG)
    corrupt = good_image(1).astype(np.float32)
    corrupt[3, 4] = np.nan
    np.save(paths[2], corrupt)
    write_png(paths[3], np.full((1, 1), 90, np.uint8))
    ids = ["a.png", "bad.png", "nan.npy", "tiny.png"]
    out = tmp_path / "pre.h5"
    with caplog.at_level("WARNING"):
        preprocess_shard(paths, ids, None, None, PRE, out, on_error="skip")
    with h5store.PreprocessedShard.open(out) as shard:
        assert shard.skipped.tolist() == [False, True, True, False]
        assert shard.skip_reasons[0] == "" and "bad.png" in shard.skip_reasons[1]
        assert np.all(shard.inputs(slice(1, 3)) == 0)
        issues = shard.issues
    assert [(i.sample, i.stage, i.kind) for i in issues] == [
        ("bad.png", "preprocess", "skipped"),
        ("nan.npy", "preprocess", "skipped"),
        ("tiny.png", "preprocess", "warning"),
    ]
    assert "bad.png" in issues[0].reason and "truncated" in issues[0].reason
    assert "nan.npy" in issues[1].reason and "non-finite" in issues[1].reason
    assert "1x1" in issues[2].reason and "32x32" in issues[2].reason
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("tiny.png" in m and "1x1" in m and "32x32" in m for m in warned)


@pytest.mark.parametrize(
    ("image", "mode", "expected"),
    [
        (np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8), "tf", "float32 values up to 1 fill less than 1/16"),
        (np.linspace(0, 4095, 64).astype(np.uint16).reshape(8, 8), "torch", "scaled by 255/65535 to 15.9"),
        (np.linspace(0, 4095, 64).astype(np.uint16).reshape(8, 8), "minmax", None),  # per image: any range
        (np.linspace(0, 65535, 64).astype(np.uint16).reshape(8, 8), "tf", None),
        (np.linspace(0, 200, 64, dtype=np.float32).reshape(8, 8), "caffe", None),
        (np.full((8, 8), 3, np.uint8), "tf", None),  # a dark 8-bit image is what it is
    ],
)
def test_a_sample_that_fills_a_sliver_of_a_fixed_range_is_warned_about(tmp_path, image, mode, expected):
    """0..1 floats under standardize tf reach the model as -1..-0.992, 12-bit data in 16-bit files as 0..16 of
    0..255: nearly black inputs, with no word (found by a new-user session)."""
    np.save(tmp_path / "x.npy", image)
    pre = Preprocessing(size=(8, 8), channels=1, standardize=mode)
    preprocess_shard([tmp_path / "x.npy"], ["x.npy"], None, None, pre, tmp_path / "pre.h5")
    with h5store.PreprocessedShard.open(tmp_path / "pre.h5") as shard:
        issues = shard.issues
        inputs = shard.inputs(slice(0, 1))
    if expected is None:
        assert issues == []
        return
    assert [(i.sample, i.kind) for i in issues] == [("x.npy", "warning")] and expected in issues[0].reason
    if mode == "tf":  # what the model sees, by hand: x / 127.5 - 1 for x in 0..1
        np.testing.assert_allclose(inputs.max(), 1 / 127.5 - 1, rtol=1e-5)


def test_a_photo_whose_exif_orientation_turns_it_is_warned_about(tmp_path):
    """A phone photo stored 48x64 with Orientation 6: read as stored (as Keras's load_img reads it), and said."""
    from PIL import Image

    pixels = np.zeros((48, 64), np.uint8)
    pixels[:, :8] = 255  # a bright band on the left of the pixels as stored
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(pixels).save(tmp_path / "turned.jpg", exif=exif, quality=95)
    Image.fromarray(pixels).save(tmp_path / "plain.jpg", quality=95)
    pre = Preprocessing(size=(48, 64), channels=1, standardize="minmax")
    paths = [tmp_path / "turned.jpg", tmp_path / "plain.jpg"]
    preprocess_shard(paths, ["turned.jpg", "plain.jpg"], None, None, pre, tmp_path / "pre.h5")
    with h5store.PreprocessedShard.open(tmp_path / "pre.h5") as shard:
        issues = shard.issues
        inputs = shard.inputs(slice(0, 2))
    assert [(i.sample, i.kind) for i in issues] == [("turned.jpg", "warning")]
    assert "EXIF orientation (6: rotated 90 degrees clockwise) is not applied" in issues[0].reason
    np.testing.assert_allclose(inputs[0], inputs[1])  # the pixels as stored, both
    assert inputs[0][:, :8].mean() > 0.9 and inputs[0][:, 16:].mean() < 0.1


def test_a_png_whose_exif_orientation_turns_it_is_warned_about_too(tmp_path):
    # PNG has an eXIf chunk (Pillow writes and reads it; viewers differ in applying it): read as stored, as the JPEG,
    # but without the JPEG's warning
    from PIL import Image

    pixels = np.zeros((48, 64), np.uint8)
    pixels[:, :8] = 255
    exif = Image.Exif()
    exif[0x0112] = 8
    Image.fromarray(pixels).save(tmp_path / "turned.png", exif=exif)
    assert Image.open(tmp_path / "turned.png").getexif().get(0x0112) == 8
    pre = Preprocessing(size=(48, 64), channels=1, standardize="minmax")
    preprocess_shard([tmp_path / "turned.png"], ["turned.png"], None, None, pre, tmp_path / "pre.h5")
    with h5store.PreprocessedShard.open(tmp_path / "pre.h5") as shard:
        issues, inputs = shard.issues, shard.inputs(slice(0, 1))
    assert [(i.sample, i.kind) for i in issues] == [("turned.png", "warning")]
    assert "EXIF orientation (8: rotated 90 degrees counter-clockwise) is not applied" in issues[0].reason
    assert inputs[0][:, :8].mean() > 0.9 and inputs[0][:, 16:].mean() < 0.1  # as stored


def test_preprocess_fail_stops_at_the_unreadable_file_and_writes_nothing(tmp_path):
    paths = [tmp_path / "a.png", tmp_path / "bad.png"]
    write_png(paths[0], good_image(0))
    paths[1].write_bytes(TRUNCATED_PNG)
    with pytest.raises(SampleError, match="bad.png") as caught:
        preprocess_shard(paths, ["a.png", "bad.png"], None, None, PRE, tmp_path / "pre.h5")
    assert caught.value.stage == "preprocess"
    assert not (tmp_path / "pre.h5").exists()


@pytest.mark.parametrize(
    ("shape", "size", "warned"),
    [
        ((1, 1), (32, 32), True),
        ((7, 40), (32, 32), True),  # one side below a quarter
        ((8, 8), (32, 32), False),  # exactly a quarter
        ((1, 1), (2, 2), True),  # a single pixel, whatever the input
        ((30, 6, 40), (16, 32, 32), True),  # a volume
        ((4, 8, 8), (16, 32, 32), False),
    ],
)
def test_small_image_warning(shape, size, warned):
    from xaipipe.preprocess import small_image_warning

    message = small_image_warning(shape, size)
    assert (message is not None) == warned
    if warned:
        assert "x".join(map(str, shape)) in message and "x".join(map(str, size)) in message


# --- predictions and heatmaps -------------------------------------------------------------


def shard_with_marked_sample(tmp_path, on_error="fail"):
    """A preprocessed shard of 5 images, the fourth (s3) carrying a marker value 250, and its predictions."""
    paths = []
    for k in range(5):
        image = good_image(k)
        if k == 3:
            image[0, 0] = 250
        paths.append(tmp_path / f"s{k}.png")
        write_png(paths[-1], image)
    intensity_model(tmp_path / "model.keras")
    pre, pred = tmp_path / "pre.h5", tmp_path / "pred.h5"
    preprocess_shard(paths, [f"s{k}" for k in range(5)], None, None, PRE, pre, on_error=on_error)
    predict_shard(pre, tmp_path / "model.keras", pred, batch_size=2, on_error=on_error)
    return pre, pred


MARKER = 250 / 127.5 - 1  # the marker pixel after standardize: tf


@pytest.fixture
def nan_for_marked_sample(monkeypatch):
    """Grad-CAM returns NaN maps for an input whose first pixel is the marker."""
    from xaipipe.methods.gradcam import GradCAM

    original = GradCAM.raw_maps

    def raw_maps(self, inputs, classes):
        maps = np.array(original(self, inputs, classes))
        maps[np.isclose(inputs[:, 0, 0, 0], MARKER)] = np.nan
        return maps

    monkeypatch.setattr(GradCAM, "raw_maps", raw_maps)


@pytest.fixture
def overflow_for_marked_sample(monkeypatch):
    """Grad-CAM returns finite maps spanning more than float32 holds (+-3e38) for the marked input: normalized,
    they would be NaN ((v - min) / (max - min) with max - min = inf)."""
    from xaipipe.methods.gradcam import GradCAM

    original = GradCAM.raw_maps

    def raw_maps(self, inputs, classes):
        maps = np.array(original(self, inputs, classes))
        marked = np.isclose(inputs[:, 0, 0, 0], MARKER)
        maps[marked] = 3e38
        maps[marked, ..., 0] = -3e38
        return maps

    monkeypatch.setattr(GradCAM, "raw_maps", raw_maps)


@pytest.fixture
def exception_for_marked_sample(monkeypatch):
    """Grad-CAM raises for any batch that holds an input whose first pixel is the marker."""
    from xaipipe.methods.gradcam import GradCAM

    original = GradCAM.raw_maps

    def raw_maps(self, inputs, classes):
        if np.isclose(inputs[:, 0, 0, 0], MARKER).any():
            raise RuntimeError("simulated failure of the method")
        return original(self, inputs, classes)

    monkeypatch.setattr(GradCAM, "raw_maps", raw_maps)


def heatmaps(pre, pred, tmp_path, out, on_error):
    compute_heatmaps_shard(pre, pred, tmp_path / "model.keras", "gradcam", {}, "argmax", 2, out, on_error=on_error)


@pytest.mark.parametrize(
    "failure", ["nan_for_marked_sample", "overflow_for_marked_sample", "exception_for_marked_sample"]
)
def test_a_heatmap_that_fails_for_one_sample_is_skipped_and_listed_or_raises(tmp_path, request, failure):
    pre, pred = shard_with_marked_sample(tmp_path)
    heatmaps(pre, pred, tmp_path, tmp_path / "clean.h5", "fail")  # before the method fails
    request.getfixturevalue(failure)
    with pytest.raises(SampleError, match="'s3'") as caught:  # the batch's error, narrowed down to the sample
        heatmaps(pre, pred, tmp_path, tmp_path / "failed.h5", "fail")
    assert caught.value.stage == "heatmaps:gradcam" and caught.value.sample_id == "s3"
    expected = {
        "nan_for_marked_sample": "hold 1024 non-finite values (NaN or infinite)",  # its whole 32x32 map
        "overflow_for_marked_sample": "span -3e+38 to 3e+38, beyond float32's range once normalized",
        "exception_for_marked_sample": "RuntimeError: simulated failure",
    }[failure]
    assert expected in caught.value.reason
    assert not (tmp_path / "failed.h5").exists()
    heatmaps(pre, pred, tmp_path, tmp_path / "skip.h5", "skip")
    with h5store.HeatmapsFile.open(tmp_path / "skip.h5") as maps, h5store.HeatmapsFile.open(
        tmp_path / "clean.h5"
    ) as clean:
        assert maps.skipped.tolist() == [False, False, False, True, False]
        assert maps.skip_reasons[3].startswith("heatmaps:gradcam: ")
        assert [(i.sample, i.stage, i.kind) for i in maps.issues] == [("s3", "heatmaps:gradcam", "skipped")]
        assert maps.class_index.tolist() == [*clean.class_index[:3], -1, clean.class_index[4]]
        assert np.isnan(maps.raw(3)).all() and np.isnan(maps.normalized(3)).all()
        for m in (0, 1, 2, 4):  # the other samples' maps as without the failure
            np.testing.assert_array_equal(maps.raw(m), clean.raw(m))
            np.testing.assert_array_equal(maps.normalized(m), clean.normalized(m))


def test_skipped_samples_travel_through_predictions_heatmaps_table_and_render(tmp_path):
    from xaipipe.stages import merge_predictions, render_shard

    paths = [tmp_path / "a.png", tmp_path / "bad.png", tmp_path / "c.png"]
    write_png(paths[0], good_image(0))
    paths[1].write_bytes(TRUNCATED_PNG)
    write_png(paths[2], good_image(2))
    intensity_model(tmp_path / "model.keras")
    pre, pred, maps_path = tmp_path / "pre.h5", tmp_path / "pred.h5", tmp_path / "maps.h5"
    preprocess_shard(paths, ["a.png", "bad.png", "c.png"], [0, 1, 0], ["x", "y"], PRE, pre, on_error="skip")
    predict_shard(pre, tmp_path / "model.keras", pred, batch_size=2, on_error="skip")
    predictions = h5store.read_predictions(pred)
    assert predictions.skipped.tolist() == [False, True, False]
    assert np.isnan(predictions.probabilities[1]).all() and np.isfinite(predictions.probabilities[[0, 2]]).all()
    assert predictions.predicted[1] == -1 and set(predictions.predicted[[0, 2]]) <= {0, 1}
    assert predictions.issues == []  # the preprocess stage found it; the table lists it once
    merge_predictions([pred], tmp_path / "predictions.tsv")
    rows = [line.split("\t") for line in (tmp_path / "predictions.tsv").read_text().splitlines()]
    assert rows[2] == ["bad.png", "y", "", "", ""]  # kept, its predicted class and probabilities empty
    assert rows[1][2] in ("x", "y") and rows[3][2] in ("x", "y")
    compute_heatmaps_shard(pre, pred, tmp_path / "model.keras", "gradcam", {}, "all", 2, maps_path, on_error="skip")
    with h5store.HeatmapsFile.open(maps_path) as maps:
        assert maps.skipped.tolist() == [False, True, False]
        assert maps.class_index.tolist() == [0, 1, -1, -1, 0, 1]  # targets: all
        assert maps.skip_reasons[1].startswith("preprocess: ") and maps.issues == []
    outs = [tmp_path / "out" / f"{k}.png" for k in range(6)]
    render_shard(pre, maps_path, outs, True, 0.25, "jet")
    placeholder = cv2.imread(str(outs[2]))
    rendered = cv2.imread(str(outs[0]))
    assert placeholder is not None and rendered is not None
    assert len(np.unique(placeholder.reshape(-1, 3), axis=0)) > 1  # text drawn on it
    assert placeholder.shape[:2] != rendered.shape[:2]  # not drawn over the (missing) image
    npys = [tmp_path / "out" / f"{k}.npy" for k in range(6)]
    render_shard(pre, maps_path, npys, True, 0.25, "jet")
    assert np.isnan(np.load(npys[2])).all() and np.isfinite(np.load(npys[0])).all()


def test_a_non_finite_prediction_is_skipped_under_skip_and_an_error_under_fail(tmp_path):
    import keras

    paths = [tmp_path / "a.png", tmp_path / "b.png"]
    write_png(paths[0], good_image(0))
    write_png(paths[1], np.full(SIZE, 255, np.uint8))  # all ones after tf: a score beyond float32, softmax NaN
    inputs = keras.Input((*SIZE, 1))
    dense = keras.layers.Dense(2, activation="softmax")
    model = keras.Model(inputs, dense(keras.layers.GlobalAveragePooling2D()(inputs)))
    dense.set_weights([np.full((1, 2), 3e38, np.float32), np.full(2, 3e38, np.float32)])
    model.save(tmp_path / "m.keras")
    pre = tmp_path / "pre.h5"
    preprocess_shard(paths, ["a.png", "b.png"], None, None, PRE, pre)
    with pytest.raises(SampleError, match="'b.png'.*not finite") as caught:
        predict_shard(pre, tmp_path / "m.keras", tmp_path / "p.h5", 2)
    assert caught.value.stage == "predict"
    predict_shard(pre, tmp_path / "m.keras", tmp_path / "p.h5", 2, on_error="skip")
    predictions = h5store.read_predictions(tmp_path / "p.h5")
    assert predictions.skipped.tolist() == [False, True]
    assert [(i.sample, i.stage, i.kind) for i in predictions.issues] == [("b.png", "predict", "skipped")]


# --- the failures table and the summary ---------------------------------------------------


def test_failures_table_gathers_every_stage_and_the_summary_counts_it(tmp_path):
    from xaipipe.stages import failures_summary, write_failures_table

    pre, pred = shard_with_marked_sample(tmp_path)
    heatmaps(pre, pred, tmp_path, tmp_path / "clean.h5", "skip")
    table = tmp_path / "failures.tsv"
    write_failures_table([pre], [pred], [tmp_path / "clean.h5"], table)
    assert table.read_text() == "sample\tstage\tkind\treason\n"  # header only
    assert failures_summary(table) == f"xaipipe: 0 samples skipped, 0 warnings, see {table}"
    paths = [tmp_path / "bad.png", tmp_path / "tiny.png"]
    paths[0].write_bytes(TRUNCATED_PNG)
    write_png(paths[1], np.zeros((1, 1), np.uint8))
    preprocess_shard(paths, ["bad.png", "tiny.png"], None, None, PRE, tmp_path / "pre2.h5", on_error="skip")
    predict_shard(tmp_path / "pre2.h5", tmp_path / "model.keras", tmp_path / "pred2.h5", 2, on_error="skip")
    write_failures_table([pre, tmp_path / "pre2.h5"], [pred, tmp_path / "pred2.h5"], [tmp_path / "clean.h5"], table)
    rows = [line.split("\t") for line in table.read_text().splitlines()[1:]]
    assert [row[:3] for row in rows] == [["bad.png", "preprocess", "skipped"], ["tiny.png", "preprocess", "warning"]]
    assert failures_summary(table) == f"xaipipe: 1 sample skipped, 1 warning, see {table}"
    assert failures_summary(tmp_path / "absent.tsv") is None


# --- the workflow -------------------------------------------------------------------------


def study(folder, bad: bool) -> None:
    """Four good 32x32 PNGs and a 1x1 one; with ``bad``, also a truncated PNG and a .npy with NaN."""
    for k in range(4):
        write_png(folder / f"g{k}.png", good_image(k))
    write_png(folder / "tiny.png", np.full((1, 1), 90, np.uint8))
    if bad:
        (folder / "bad.png").write_bytes(TRUNCATED_PNG)
        corrupt = good_image(7).astype(np.float32)
        corrupt[5:9, 5:9] = np.nan
        np.save(folder / "nan.npy", corrupt)


def workflow_config(tmp_path, images, on_error) -> dict:
    return {
        "demo": {"build": False},
        "data": {"images": str(images)},
        "model": {"path": str(tmp_path / "model.keras")},
        "preprocessing": {"size": list(SIZE), "channels": 1, "standardize": "tf"},
        "methods": ["gc"],
        "shard_size": 4,
        "batch_size": 2,
        "on_error": on_error,
    }


def read_table(path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text().splitlines()[1:]]


def maps_by_id(results) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    found = {}
    for path in sorted((results / "heatmaps/gradcam").glob("shard-*.h5")):
        with h5store.HeatmapsFile.open(path) as maps:
            ids, skipped = maps.ids, maps.skipped
            for m, row in enumerate(maps.sample_index):
                if not skipped[row]:
                    found[ids[row]] = (maps.raw(m), maps.normalized(m))
    return found


@pytest.mark.e2e
def test_the_workflow_skips_bad_samples_lists_them_and_picks_them_up_when_fixed(tmp_path):
    from pipeline_runs import snakemake, snakemake_ok

    intensity_model(tmp_path / "model.keras")
    images, reference_images = tmp_path / "images", tmp_path / "reference_images"
    for folder in ("images", "reference_images", "fail", "skip", "reference"):
        (tmp_path / folder).mkdir()
    study(images, bad=True)
    study(reference_images, bad=False)

    failed = snakemake(tmp_path / "fail", workflow_config(tmp_path, images, "fail"))
    # the run stops at the first bad sample, named with what is wrong with it; which shard's preprocess job runs
    # first is Snakemake's choice (both shards hold one: bad.png in the first, nan.npy in the second)
    assert failed.returncode != 0
    assert ("bad.png" in failed.stderr and "unreadable or truncated image" in failed.stderr) or (
        "nan.npy" in failed.stderr and "non-finite values" in failed.stderr
    ), failed.stderr[-3000:]

    run = tmp_path / "skip"
    result = snakemake_ok(run, workflow_config(tmp_path, images, "skip"))
    results = run / "results"
    rows = read_table(results / "failures.tsv")
    assert [row[:3] for row in rows] == [
        ["bad.png", "preprocess", "skipped"],
        ["nan.npy", "preprocess", "skipped"],
        ["tiny.png", "preprocess", "warning"],
    ]
    assert "bad.png" in rows[0][3] and "nan.npy" in rows[1][3] and "1x1" in rows[2][3]
    summary = "xaipipe: 2 samples skipped, 1 warning, see results/failures.tsv"
    lines = result.stderr.splitlines()
    assert summary in lines
    assert not any("Finished job" in line or "rule " in line for line in lines[lines.index(summary) :])
    predicted = {row[0]: row[2] for row in read_table(results / "predictions.tsv")}
    assert predicted["bad.png"] == "" and predicted["nan.npy"] == "" and predicted["g0.png"] in ("0", "1")
    placeholder = cv2.imread(str(results / "overlays/gradcam/bad.png"))
    assert placeholder is not None and len(np.unique(placeholder.reshape(-1, 3), axis=0)) > 1

    reference = tmp_path / "reference"
    snakemake_ok(reference, workflow_config(tmp_path, reference_images, "skip"))
    skipping, clean = maps_by_id(results), maps_by_id(reference / "results")
    assert sorted(skipping) == sorted(clean) == ["g0.png", "g1.png", "g2.png", "g3.png", "tiny.png"]
    for sample_id, (raw, normalized) in clean.items():
        np.testing.assert_array_equal(skipping[sample_id][0], raw, err_msg=sample_id)
        np.testing.assert_array_equal(skipping[sample_id][1], normalized, err_msg=sample_id)
    assert [row[:3] for row in read_table(reference / "results/failures.tsv")] == [rows[2][:3]]

    write_png(images / "bad.png", good_image(5))  # fixed: a newer file reruns its shard and what follows
    snakemake_ok(run, workflow_config(tmp_path, images, "skip"))
    rows = read_table(results / "failures.tsv")
    assert [row[:3] for row in rows] == [["nan.npy", "preprocess", "skipped"], ["tiny.png", "preprocess", "warning"]]
    assert "bad.png" in maps_by_id(results)
    assert {row[0]: row[2] for row in read_table(results / "predictions.tsv")}["bad.png"] in ("0", "1")
    overlay = cv2.imread(str(results / "overlays/gradcam/bad.png"))
    assert overlay.shape[:2] == SIZE  # the map over the image, no longer the placeholder
