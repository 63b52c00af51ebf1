"""The pipeline on users' data: NIfTI volumes with a 3D CNN, and a CSV-labelled set of 16-bit PNGs.

The models are built by hand so that the right map is known: an identity layer,
global average pooling and a dense layer whose class 0 score is the mean
intensity, so Grad-CAM of class 0 is the (ReLU of the) standardized image
itself and its peak lies on the brightest structure.
"""

from __future__ import annotations

import cv2
import keras
import numpy as np
import pytest

from pipeline_runs import snakemake, snakemake_ok
from xaipipe import h5store
from xaipipe.evaluate import read_summary
from xaipipe.readers import load_volume
from xaipipe.writers import write_nifti

pytestmark = pytest.mark.e2e


def intensity_model(input_shape: tuple[int, ...], path) -> None:
    conv = keras.layers.Conv3D if len(input_shape) == 4 else keras.layers.Conv2D
    pool = keras.layers.GlobalAveragePooling3D if len(input_shape) == 4 else keras.layers.GlobalAveragePooling2D
    inputs = keras.Input(input_shape)
    features = conv(1, 1, use_bias=False, name="features")
    dense = keras.layers.Dense(2, activation="softmax", name="classes")
    model = keras.Model(inputs, dense(pool()(features(inputs))))
    features.set_weights([np.ones(features.get_weights()[0].shape, np.float32)])
    dense.set_weights([np.array([[4.0, -4.0]], np.float32), np.array([5.0, 0.0], np.float32)])  # class 0 wins
    model.save(path)


def blob(shape: tuple[int, ...], centre: tuple[int, ...], radius: float) -> np.ndarray:
    grid = np.indices(shape)
    distance = np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, centre)))
    return distance <= radius


def base_config(tmp_path, **changes) -> dict:
    config = {
        "demo": {"build": False},
        "model": {"path": str(tmp_path / "model.keras")},
        "methods": ["gradcam", "saliency"],
        "shard_size": 3,
        "batch_size": 2,
    }
    return {**config, **changes}


def test_nifti_volumes_with_a_3d_cnn(tmp_path):
    rng = np.random.default_rng(0)
    centres = [(6, 10, 12), (14, 4, 20), (9, 15, 5), (4, 4, 4)]
    for k, centre in enumerate(centres):
        hu = rng.normal(-800, 30, (20, 20, 24))
        hu[blob(hu.shape, centre, 3)] = 400  # a bright nodule
        write_nifti(tmp_path / "ct" / f"case_{k}.nii.gz", hu.astype(np.int16), (2.5, 0.8, 0.7))
        nodule = blob(hu.shape, centre, 3).astype(np.uint8)  # its ground truth, as a segmentation tool writes it
        write_nifti(tmp_path / "labels" / f"case_{k}.nii.gz", nodule, (2.5, 0.8, 0.7))
    intensity_model((16, 16, 16, 1), tmp_path / "model.keras")
    config = base_config(
        tmp_path,
        data={"images": str(tmp_path / "ct"), "masks": str(tmp_path / "labels")},
        preprocessing={"size": [16, 16, 16], "channels": 1, "standardize": "z-score"},  # interpolation auto: linear
        evaluation={"sanity_samples": 2, "sanity_stages": 2},
        render={"colormap": "hot"},
    )
    snakemake_ok(tmp_path, config)
    # Grad-CAM of class 0 is the standardized volume: its peak is in the nodule, whose voxels outrank the rest
    summary = {(r["method"], r["metric"]): r for r in read_summary(tmp_path / "results/evaluation/summary.tsv")}
    assert summary[("gradcam", "pointing_game")]["mean"] == 1.0 and summary[("gradcam", "pointing_game")]["n"] == 4
    assert summary[("gradcam", "roc_auc")]["mean"] > 0.95
    assert summary[("gradcam", "deletion")]["n"] == 4 and summary[("gradcam", "randomization")]["n"] == 2
    assert (tmp_path / "results/failures.tsv").read_text().count("\n") == 1  # same shape as the images: no warning
    check_volume_gallery(tmp_path / "results")
    for k, centre in enumerate(centres):
        out = load_volume(tmp_path / "results/overlays/gradcam" / f"case_{k}.nii.gz")
        assert out.array.shape == (20, 20, 24)  # back at the volume's own size
        assert out.spacing == pytest.approx((2.5, 0.8, 0.7))  # and spacing
        peak = np.unravel_index(out.array.argmax(), out.array.shape)
        assert blob(out.array.shape, centre, 3.5)[peak], (k, peak, centre)
    with h5store.open_checked(tmp_path / "results/heatmaps/saliency/shard-00001.h5", h5store.HEATMAPS) as f:
        assert f["raw"].shape == (1, 16, 16, 16)
    # GIF output of the same maps: only the render step runs again
    snakemake_ok(tmp_path, {**config, "render": {"format": "gif", "colormap": "hot"}})
    ok, frames = cv2.imreadanimation(str(tmp_path / "results/overlays/gradcam/case_0.gif"))
    assert ok and len(frames.frames) == 20 and frames.frames[0].shape[:2] == (20, 24)


def check_volume_gallery(results):
    """The report of a volume study: three slices per map, through the map's peak (its argmax, read
    here from the heatmaps file), the axial slice brightest (colormap hot) at the peak's (y, x); in
    Chromium, three pictures per map."""
    import json

    from browser import chromium, severe_console_errors
    from selenium.webdriver.support.ui import WebDriverWait

    n_maps = 0
    for shard in ("00000", "00001"):
        data = json.loads((results / f"report/data/shard-{shard}.json").read_text())
        with h5store.HeatmapsFile.open(results / f"heatmaps/gradcam/shard-{shard}.h5") as maps:
            for m, row in enumerate(maps.sample_index):
                heat = maps.normalized(m)
                top = np.unravel_index(int(heat.argmax()), heat.shape)
                (entry,) = data["samples"][row]["maps"]["gradcam"]
                assert entry["peak"] == [int(i) for i in top]
                assert [p.rsplit(".", 2)[-2] for p in entry["views"]] == ["axial", "coronal", "sagittal"]
                axial = cv2.imread(str(results / "report" / entry["views"][0])).astype(int).sum(axis=2)
                y, x = np.unravel_index(int(axial.argmax()), axial.shape)  # "hot" rises to white at the peak
                expected = [(t + 0.5) / n for t, n in zip(top[1:], heat.shape[1:])]
                assert abs(y / axial.shape[0] - expected[0]) < 0.1 and abs(x / axial.shape[1] - expected[1]) < 0.1
                n_maps += 1
    assert n_maps == 4
    with chromium() as driver:
        driver.get((results / "report/index.html").as_uri())
        WebDriverWait(driver, 10).until(lambda d: d.execute_script("return window.galleryReady !== undefined"))
        views = [img.get_attribute("data-view") for img in driver.find_elements("css selector", "img.map")]
        assert len(views) == 4 * 2 * 3 and set(views) == {"axial", "coronal", "sagittal"}  # 4 volumes, 2 methods
        assert severe_console_errors(driver) == []


def test_csv_labelled_16bit_pngs(tmp_path):
    rng = np.random.default_rng(1)
    rows, squares = ["SAMPLE,CLASS"], {}
    (tmp_path / "png").mkdir()
    for k in range(5):
        image = rng.normal(9000, 300, (64, 64)).clip(0, 65535)
        y, x = rng.integers(12, 40, 2)
        image[y : y + 10, x : x + 10] = 40000
        cv2.imwrite(str(tmp_path / "png" / f"p{k}.png"), image.astype(np.uint16))
        squares[f"p{k}"] = (y, x)
        rows.append(f"p{k},{'bright' if k % 2 == 0 else 'dark'}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    intensity_model((32, 32, 1), tmp_path / "model.keras")
    config = base_config(
        tmp_path,
        data={"images": str(tmp_path / "png"), "samples": str(tmp_path / "labels.csv"), "image_format": "png"},
        classes=["bright", "dark"],
        targets="label",
        preprocessing={
            "size": [32, 32], "channels": 1, "standardize": "minmax",
            "subfunctions": [{"name": "crop", "shape": [60, 60]}],
        },
    )  # fmt: skip
    snakemake_ok(tmp_path, config)
    table = [line.split("\t") for line in (tmp_path / "results/predictions.tsv").read_text().splitlines()]
    assert table[0][:3] == ["sample", "label", "predicted"]
    assert [r[1] for r in table[1:]] == ["bright", "dark", "bright", "dark", "bright"]
    with h5store.open_checked(tmp_path / "results/heatmaps/gradcam/shard-00000.h5", h5store.HEATMAPS) as f:
        assert f["class_index"][()].tolist() == [0, 1, 0]  # the labels, not the predictions
    for k in (0, 2, 4):  # class 0's map is the image: its peak is on the square
        picture = cv2.imread(str(tmp_path / "results/overlays/gradcam" / f"p{k}.png"))
        assert picture.shape == (60, 60, 3)  # drawn on the cropped image (preprocess_overlay)
    with h5store.HeatmapsFile.open(tmp_path / "results/heatmaps/gradcam/shard-00000.h5") as maps:
        heat = cv2.resize(maps.normalized(0), (60, 60), interpolation=cv2.INTER_LINEAR)
    y, x = np.unravel_index(heat.argmax(), heat.shape)
    sy, sx = squares["p0"]
    assert sy - 2 <= y + 2 < sy + 10 and sx - 2 <= x + 2 < sx + 10  # crop offset (64 - 60) / 2 = 2
    check_overlay_selection_and_archive(tmp_path / "results", config)


def outputs_but_overlays(results) -> dict:
    """Modification times of the outputs outside ``overlays/`` (logs and benchmark records left out, and the report,
    whose summary page shows the config of the last run, render settings included)."""
    skip = {"overlays", "logs", "benchmarks", "report"}
    return {p: p.stat().st_mtime_ns for p in results.rglob("*") if p.is_file() and not skip & set(p.relative_to(results).parts)}


def check_overlay_selection_and_archive(results, config):
    """render.max_per_class and render.archive on the labelled PNGs (bright, dark, bright, dark, bright; shards
    of 3): with 2 per class p0-p3 keep their overlays, p4 (the third bright) none; as archives, one zip per
    shard and method holding exactly those names, their PNGs the same pixels as the loose files of the plain
    run above (decoded by OpenCV). Only overlays are drawn again: every other output stays, but the report's pages,
    which show the config."""
    import shutil
    import zipfile

    overlays, methods = results / "overlays", ("gradcam", "saliency")
    plain = {p.relative_to(overlays).as_posix(): cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in overlays.rglob("*.png")}
    assert sorted(plain) == sorted(f"{m}/p{k}.png" for m in methods for k in range(5))
    before = outputs_but_overlays(results)
    files = {}  # the overlay folder's file count per mode, as the README's scale section reports it
    shutil.rmtree(overlays)
    snakemake_ok(results.parent, {**config, "render": {"max_per_class": 2}})
    found = sorted(p.relative_to(overlays).as_posix() for p in overlays.rglob("*") if p.is_file())
    assert found == sorted(f"{m}/p{k}.png" for m in methods for k in range(4))
    for name in found:
        np.testing.assert_array_equal(cv2.imread(str(overlays / name), cv2.IMREAD_UNCHANGED), plain[name])
    files["max_per_class 2"] = len(found)
    shutil.rmtree(overlays)
    snakemake_ok(results.parent, {**config, "render": {"max_per_class": 2, "archive": True}})
    found = sorted(p.relative_to(overlays).as_posix() for p in overlays.rglob("*") if p.is_file())
    assert found == sorted(f"{m}/shard-{s}.zip" for m in methods for s in ("00000", "00001"))
    members = {"00000": ["p0.png", "p1.png", "p2.png"], "00001": ["p3.png"]}
    for name in found:
        with zipfile.ZipFile(overlays / name) as archive:
            method, shard = name.split("/")[0], name[-9:-4]
            assert archive.namelist() == members[shard]
            for info in archive.infolist():
                assert info.compress_type == zipfile.ZIP_STORED
                pixels = cv2.imdecode(np.frombuffer(archive.read(info), np.uint8), cv2.IMREAD_UNCHANGED)
                np.testing.assert_array_equal(pixels, plain[f"{method}/{info.filename}"])
    files["max_per_class 2, archive"] = len(found)
    shutil.rmtree(overlays)
    snakemake_ok(results.parent, {**config, "render": {"archive": True}})
    files["archive"] = sum(p.is_file() for p in overlays.rglob("*"))
    shutil.rmtree(overlays)
    snakemake_ok(results.parent, {**config, "render": {"max_per_class": 0}})
    assert not overlays.exists()  # no render job at all
    assert outputs_but_overlays(results) == before
    assert "max_per_class: 0" in (results / "report/summary.html").read_text()  # the page shows the last run's
    assert files == {"max_per_class 2": 8, "max_per_class 2, archive": 4, "archive": 4}, files
    print("overlay files: default 10,", files)


def test_masks_of_a_user_study_and_their_faults(tmp_path):
    """data.masks mirrors the ids: a mask at the image's size, one at twice the size (resized, with a
    warning), an empty file (an error naming it, or with on_error skip a warning, the sample left
    out of localization) and a sample without a mask (left out, no complaint)."""
    rng = np.random.default_rng(2)
    (tmp_path / "png").mkdir()
    (tmp_path / "masks").mkdir()
    for k in range(4):
        image = rng.normal(60, 5, (32, 32))
        image[4 + 5 * k : 12 + 5 * k, 6:14] = 250  # a bright square, the model's evidence for class 0
        cv2.imwrite(str(tmp_path / "png" / f"s{k}.png"), image.clip(0, 255).astype(np.uint8))
        mask = np.zeros((32, 32), np.uint8)
        mask[4 + 5 * k : 12 + 5 * k, 6:14] = 255
        if k == 0:
            cv2.imwrite(str(tmp_path / "masks" / "s0.png"), mask)
        if k == 1:
            cv2.imwrite(str(tmp_path / "masks" / "s1.png"), cv2.resize(mask, (64, 64), interpolation=cv2.INTER_NEAREST))
    (tmp_path / "masks" / "s2.png").write_bytes(b"")
    intensity_model((32, 32, 1), tmp_path / "model.keras")
    config = base_config(
        tmp_path,
        data={"images": str(tmp_path / "png"), "masks": str(tmp_path / "masks")},
        methods=["gradcam"],
        preprocessing={"size": [32, 32], "channels": 1, "standardize": "minmax"},
        evaluation={"metrics": ["pointing_game", "relevance_mass", "sparseness"]},
    )
    failed = snakemake(tmp_path, config)
    assert failed.returncode != 0
    assert "sample 's2.png'" in failed.stderr and "masks/s2.png: the file is empty" in failed.stderr
    snakemake_ok(tmp_path, {**config, "on_error": "skip"})
    rows = [line.split("\t") for line in (tmp_path / "results/failures.tsv").read_text().splitlines()[1:]]
    assert sorted((r[0], r[1], r[2]) for r in rows) == [
        ("s1.png", "evaluate:gradcam", "warning"), ("s2.png", "evaluate:gradcam", "warning")
    ]  # fmt: skip
    assert "shape (64, 64) differs from the image's (32, 32)" in " ".join(r[3] for r in rows)
    summary = {r["metric"]: r for r in read_summary(tmp_path / "results/evaluation/summary.tsv")}
    assert summary["pointing_game"]["n"] == 2 and summary["pointing_game"]["mean"] == 1.0  # s0 and the resized s1
    assert summary["sparseness"]["n"] == 4  # needs no mask
    assert summary["relevance_mass"]["mean"] > 0.2  # 64 of 1024 pixels (6%) hold far more than 6% of the map


def test_localization_without_masks_stops_before_any_job(tmp_path):
    intensity_model((32, 32, 1), tmp_path / "model.keras")
    (tmp_path / "png").mkdir()
    cv2.imwrite(str(tmp_path / "png" / "a.png"), np.zeros((32, 32), np.uint8))
    config = base_config(tmp_path, data={"images": str(tmp_path / "png")}, preprocessing={"size": [32, 32], "channels": 1})
    result = snakemake(tmp_path, {**config, "evaluation": {"metrics": ["deletion", "roc_auc"]}})
    assert result.returncode != 0 and "evaluation.metrics: roc_auc needs ground-truth masks" in result.stderr
    result = snakemake(tmp_path, {**config, "evaluation": {"metrics": ["delet"]}})
    assert result.returncode != 0 and "config key evaluation.metrics" in result.stderr and "'delet'" in result.stderr
    result = snakemake(tmp_path, {**config, "evaluation": {"step": 5}})
    assert result.returncode != 0 and "'step' was unexpected" in result.stderr
    result = snakemake(tmp_path, {**config, "data": {**config["data"], "masks": str(tmp_path / "none")}})
    assert result.returncode != 0 and "config key data.masks" in result.stderr
    assert not (tmp_path / "results").exists()


def test_bad_inputs_stop_before_the_model_runs(tmp_path):
    (tmp_path / "png").mkdir()
    for k in range(2):
        cv2.imwrite(str(tmp_path / "png" / f"p{k}.png"), np.zeros((8, 8), np.uint16))
    intensity_model((8, 8, 1), tmp_path / "model.keras")
    pre = {"size": [8, 8], "channels": 1}
    (tmp_path / "labels.csv").write_text("SAMPLE,CLASS\np0,a\np1,b\np2,a\n")
    config = base_config(tmp_path, data={"images": str(tmp_path / "png"), "samples": str(tmp_path / "labels.csv"),
                                         "image_format": "png"}, preprocessing=pre, classes=["a", "b"])  # fmt: skip
    result = snakemake(tmp_path, config)
    assert result.returncode != 0 and "p2.png" in result.stderr  # missing file named
    assert not (tmp_path / "results/predictions").exists()
    (tmp_path / "labels.csv").write_text("SAMPLE,CLASS\np0,a\np1,b\n")
    wrong_column = {**config, "data": {**config["data"], "class_column": "DIAGNOSIS"}}
    result = snakemake(tmp_path, wrong_column)
    assert result.returncode != 0 and "label column 'DIAGNOSIS' does not exist" in result.stderr
    (tmp_path / "png" / "p1.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    result = snakemake(tmp_path, config)
    assert result.returncode != 0 and "p1" in result.stderr
    assert not (tmp_path / "results/predictions").exists()
    assert not list((tmp_path / "results/preprocessed").glob("*.h5"))
