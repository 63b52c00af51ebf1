"""The real Snakemake pipeline on a small demo (run once per session, see conftest.py)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from xaipipe import h5store
from xaipipe.evaluate import read_summary
from xaipipe.model import load_model, sha256_file
from xaipipe.naming import overlay_name
from xaipipe.preprocess import Preprocessing
from xaipipe.readers import load_image

pytestmark = pytest.mark.e2e

from pipeline_runs import CONFIG, N_PER_CLASS, SHARD_SIZE, snakemake, snakemake_ok, use_demo_of


def mtimes(folder: Path) -> dict[Path, int]:
    """Modification times of the outputs under ``folder`` (logs and benchmark records left out)."""
    return {
        p: p.stat().st_mtime_ns
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not {"logs", "benchmarks"} & set(p.relative_to(folder).parts)
    }


def changed_since(before: dict[Path, int], folder: Path) -> set[Path]:
    return {p for p, t in mtimes(folder).items() if before.get(p) != t}


@pytest.fixture(scope="module")
def run(demo_run):
    return demo_run


def test_demo_model_reaches_the_promised_accuracy(run):
    metrics = yaml.safe_load((run / "results/demo/model_metrics.json").read_text())
    assert metrics["val_accuracy"] >= 0.95


def test_predictions_match_the_model_run_directly(run):
    model = load_model(run / "results/demo/model.keras")
    pre = Preprocessing(size=(64, 64), channels=1, standardize="tf")
    lines = (run / "results/predictions.tsv").read_text().splitlines()
    assert lines[0].split("\t") == ["sample", "label", "predicted", "p_disk", "p_none", "p_square"]
    rows = [line.split("\t") for line in lines[1:]]
    assert len(rows) == 3 * N_PER_CLASS
    ids = [r[0] for r in rows]
    x = np.stack([pre.model_input(load_image(run / "results/demo/images" / i)) for i in ids])
    direct = model.predict(x, verbose=0)
    np.testing.assert_allclose(np.array([r[3:] for r in rows], float), direct, atol=2e-6)
    assert [r[1] for r in rows] == [i.split("/")[0] for i in ids]
    accuracy = np.mean([r[1] == r[2] for r in rows])
    assert accuracy >= 0.9


def test_heatmap_files_hold_maps_and_provenance(run):
    files = sorted((run / "results/heatmaps/gradcam").glob("shard-*.h5"))
    assert [f.name for f in files] == ["shard-00000.h5", "shard-00001.h5", "shard-00002.h5", "shard-00003.h5"]
    with h5store.open_checked(files[0], h5store.HEATMAPS) as f:
        assert f.attrs["method"] == "gradcam"
        assert f.attrs["target_layer"] == "conv4"
        assert f.attrs["model_sha256"] == sha256_file(run / "results/demo/model.keras")
        assert h5store.json_attr(f, "method_params")["score"] == "logits"
        raw = f["raw"][()]
        assert raw.shape == (SHARD_SIZE, 64, 64) and raw.dtype == np.float32 and raw.min() >= 0
        assert "normalized" not in f  # derived from the raw maps and two numbers per map (schema_version 3)
    with h5store.HeatmapsFile.open(files[0]) as maps:
        normalized = np.stack([maps.normalized(m) for m in range(len(maps))])
    lo, hi = raw.min(axis=(1, 2), keepdims=True), raw.max(axis=(1, 2), keepdims=True)
    np.testing.assert_array_equal(normalized, (raw - lo) / (hi - lo))  # Grad-CAM's min-max, exactly
    with h5store.open_checked(files[0], h5store.HEATMAPS) as f:
        predicted = h5store.read_predictions(run / "results/predictions/shard-00000.h5").predicted
        assert f["class_index"][()].tolist() == predicted.tolist()
        assert f["sample_index"][()].tolist() == list(range(SHARD_SIZE))


def summary_of(results: Path) -> dict[tuple[str, str, str], dict]:
    return {(r["method"], r["class"], r["metric"]): r for r in read_summary(results / "evaluation/summary.tsv")}


def test_gradcam_peaks_inside_the_lesion(run):
    """The pointing game of the summary, checked by hand: the map's maximum inside the mask
    (read from the demo's files, resized to the 64 x 64 map by nearest neighbour)."""
    row = summary_of(run / "results")[("gradcam", "all", "pointing_game")]
    assert row["n"] == 2 * N_PER_CLASS  # the images with a lesion; the class none has empty masks
    hits = total = 0
    for path in sorted((run / "results/heatmaps/gradcam").glob("*.h5")):
        with h5store.HeatmapsFile.open(path) as maps:
            for m, sample in enumerate(maps.sample_index):
                mask = cv2.imread(str(run / "results/demo/masks" / maps.ids[sample]), cv2.IMREAD_GRAYSCALE) > 0
                if not mask.any():
                    continue
                small = cv2.resize(mask.astype(np.uint8), (64, 64), interpolation=cv2.INTER_NEAREST)
                heat = maps.normalized(m)
                total += 1
                hits += bool(small[np.unravel_index(int(heat.argmax()), heat.shape)])
    assert total == row["n"]
    assert row["mean"] == pytest.approx(hits / total, abs=2 / total)  # ties at the peak may count either way
    assert hits / total >= 0.9, f"{hits}/{total}"


def test_gradcam_is_more_faithful_than_a_random_map(run):
    """Deletion and insertion (RISE) on the demo: Grad-CAM's deletion area at least 0.2 below that of
    uniform random maps, its insertion area at least 0.1 above (measured: 0.39 vs 0.82, 0.96 vs 0.80)."""
    from xaipipe.faithfulness import DeletionInsertion

    summary = summary_of(run / "results")
    model = load_model(run / "results/demo/model.keras")
    inputs, classes = [], []
    for path in sorted((run / "results/preprocessed").glob("*.h5")):
        with h5store.PreprocessedShard.open(path) as shard:
            inputs.append(shard.file["inputs"][()])
        classes.append(h5store.read_predictions(run / "results/predictions" / path.name).predicted)
    x, c = np.concatenate(inputs), np.concatenate(classes)
    random_maps = np.random.default_rng(0).random(x.shape[:-1])
    random = DeletionInsertion(model, "probabilities", 20, "blur")(x, random_maps, c)
    deletion, insertion = summary[("gradcam", "all", "deletion")], summary[("gradcam", "all", "insertion")]
    assert deletion["n"] == insertion["n"] == 3 * N_PER_CLASS
    assert deletion["mean"] < random["deletion_area"].mean() - 0.2
    assert insertion["mean"] > random["insertion_area"].mean() + 0.1
    assert deletion["ci_low"] <= deletion["mean"] <= deletion["ci_high"]


def test_every_metric_is_in_the_summary(run):
    summary = summary_of(run / "results")
    metrics = [m for (method, _, m) in summary if method == "gradcam"]
    assert metrics == [
        "deletion", "insertion", "road_morf", "road_lerf", "pointing_game", "relevance_mass", "relevance_rank",
        "roc_auc", "sparseness", "complexity", "randomization", "randomization_ssim",
    ]  # fmt: skip
    randomization = summary[("gradcam", "all", "randomization")]
    assert randomization["n"] == 8 and randomization["mean"] < 0.5  # evaluation.sanity_samples of CONFIG
    for name in ("curves", "metrics"):
        assert cv2.imread(str(run / f"results/evaluation/{name}.png")) is not None
        assert "gradcam" in (run / f"results/evaluation/{name}.svg").read_text()


def test_overlays_are_drawn_at_the_image_resolution(run):
    overlays = sorted(p.name for p in (run / "results/overlays/gradcam").iterdir())
    assert overlays == sorted(overlay_name(i) for i in _ids(run))
    picture = cv2.imread(str(run / "results/overlays/gradcam/disk.disk_0000.png"))
    assert picture.shape == (192, 192, 3)
    assert np.ptp(picture[..., 2].astype(int) - picture[..., 0].astype(int)) > 50  # coloured, not gray


def _ids(workdir: Path) -> list[str]:
    return [line.split("\t")[0] for line in (workdir / "results/predictions.tsv").read_text().splitlines()[1:]]


def test_logs_record_progress(run):
    log = (run / "results/logs/heatmaps/gradcam/shard-00000.log").read_text()
    assert "heatmaps gradcam: 100%" in log and "2/2" in log


def test_reruns_do_only_what_changed(run):
    results = run / "results"
    assert "Nothing to be done" in snakemake(run, CONFIG, "-n").stdout

    # deleting one overlay re-renders only its shard
    before = mtimes(results)
    victim = results / "overlays/gradcam" / overlay_name("none/none_0001.png")  # sample 11: shard 1
    victim.unlink()
    assert snakemake(run, CONFIG).returncode == 0
    shard1 = {results / "overlays/gradcam" / overlay_name(i) for i in _ids(run)[8:16]}
    assert victim.exists()
    assert changed_since(before, results) == shard1

    # changing alpha re-renders only: the overlays, and the report's pictures and pages
    before = mtimes(results)
    alpha = {**CONFIG, "render": {"alpha": 0.6}}
    assert snakemake(run, alpha).returncode == 0
    report = {p for p in (results / "report").rglob("*") if p.is_file()}
    assert changed_since(before, results) == {results / "overlays/gradcam" / overlay_name(i) for i in _ids(run)} | report

    # changing the method's parameters recomputes its heatmaps and overlays, nothing upstream
    before = mtimes(results)
    probs = {**alpha, "methods": [{"name": "gradcam", "score": "probabilities"}]}
    assert snakemake(run, probs).returncode == 0
    changed = changed_since(before, results)
    heatmaps = set((results / "heatmaps/gradcam").glob("*.h5"))
    overlays = {results / "overlays/gradcam" / overlay_name(i) for i in _ids(run)}
    evaluation = set((results / "evaluation").rglob("*.*"))  # every file of the evaluation depends on the maps
    assert {results / "evaluation/gradcam/shard-00000.h5", results / "evaluation/randomization/gradcam.tsv"} <= evaluation
    failures = {results / "failures.tsv"}  # gathered from the heatmaps files among others
    experiments = {results / "experiments.tsv"}  # lists the method's parameters
    assert changed == heatmaps | overlays | evaluation | failures | report | experiments

    # deleting one evaluation shard recomputes it alone (and the summary and plots that read it)
    before = mtimes(results)
    (results / "evaluation/gradcam/shard-00002.h5").unlink()
    assert snakemake(run, probs).returncode == 0
    gathered = {results / "evaluation" / name for name in ("summary.tsv", "curves.png", "curves.svg", "metrics.png", "metrics.svg")}
    gathered.add(results / "evaluation/comparison.tsv")  # ranks the summary's rows
    gathered.add(results / "failures.tsv")  # lists the evaluation's warnings (masks) too
    gathered |= {p for p in report if "thumbs" not in p.parts and "shards" not in p.parts}  # the pages, not the pictures
    assert changed_since(before, results) == {results / "evaluation/gradcam/shard-00002.h5"} | gathered

    # a metric parameter recomputes the evaluation only: never maps, predictions or overlays
    before = mtimes(results)
    steps = {**probs, "evaluation": {**CONFIG["evaluation"], "steps": 10}}
    assert snakemake(run, steps).returncode == 0
    assert changed_since(before, results) == set((results / "evaluation/gradcam").glob("*.h5")) | gathered


def test_all_classes_are_named_with_their_class(run, tmp_path):
    config = {k: v for k, v in CONFIG.items() if k not in ("data", "model")}
    config = {**config, "targets": "all", "output": "all_classes"}
    use_demo_of(run, "all_classes")
    snakemake_ok(run, config)
    names = {p.name for p in (run / "all_classes/overlays/gradcam").iterdir()}
    assert names == {overlay_name(i, c) for i in _ids(run) for c in range(3)}
    with h5store.open_checked(run / "all_classes/heatmaps/gradcam/shard-00000.h5", h5store.HEATMAPS) as f:
        assert f["class_index"][()].tolist() == [0, 1, 2] * SHARD_SIZE
    # the summary per class: every class's maps (one per sample); localization only of each sample's label's map
    # (its mask outlines the lesion of its own class: a square image's disk map met the square's outline before)
    summary = summary_of(run / "all_classes")
    assert {c for (_, c, _) in summary} == {"disk", "none", "square"}
    assert [summary[("gradcam", c, "deletion")]["n"] for c in ("disk", "none", "square")] == [3 * N_PER_CLASS] * 3
    localized = [summary[("gradcam", c, "pointing_game")]["n"] for c in ("disk", "none", "square")]
    assert localized == [N_PER_CLASS, 0, N_PER_CLASS]


def test_a_config_typo_stops_before_any_job(tmp_path):
    bad = {**CONFIG, "rendr": {"alpha": 0.3}}
    result = snakemake(tmp_path, bad)
    assert result.returncode != 0
    assert "config key (top level)" in result.stderr and "'rendr' was unexpected" in result.stderr
    assert not (tmp_path / "results").exists()
    unknown = {**CONFIG, "methods": ["gradcamm"]}
    result = snakemake(tmp_path, unknown)
    assert result.returncode != 0
    assert "methods[0]" in result.stderr and "valid keys: gradcam, GradCAM, gc" in result.stderr
    assert not (tmp_path / "results").exists()


def test_snakemakes_report_holds_the_evaluation_and_the_gallery(run):
    """``snakemake --report report.zip``: the summary table as the run wrote it, the plots, a sheet of
    examples per method and the gallery's entry page, with their captions."""
    import zipfile

    result = snakemake_ok(run, CONFIG, "--report", str(run / "report.zip"))
    assert "Report created" in result.stderr
    with zipfile.ZipFile(run / "report.zip") as bundle:
        names = bundle.namelist()
        by_name = {n.rsplit("/", 1)[-1]: n for n in names}
        assert bundle.read(by_name["summary.tsv"]) == (run / "results/evaluation/summary.tsv").read_bytes()
        assert bundle.read(by_name["gradcam.png"]) == (run / "results/report/examples/gradcam.png").read_bytes()
        assert bundle.read(by_name["index.html"]) == (run / "results/report/index.html").read_bytes()
        assert {"curves.png", "metrics.png", "agreement.tsv", "report.html"} <= set(by_name)
        page = bundle.read(by_name["report.html"]).decode()
        assert "The evaluation's summary" in page  # the captions of workflow/report/
