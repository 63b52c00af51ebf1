"""Method variants and sweeps on the real Snakemake pipeline: one study, several variants, resumable.

Runs in the small demo's folder (conftest.py's ``demo_run``), under an output folder of its own.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from xaipipe import h5store
from xaipipe.evaluate import BETTER, read_summary, read_table
from xaipipe.experiments import read_experiments
from xaipipe.model import sha256_file

pytestmark = pytest.mark.e2e

from pipeline_runs import CONFIG, snakemake, snakemake_ok, use_demo_of

OUTPUT = "variants"
# two models (the demo's, and one trained with another seed) x three variants, one from a sweep
MODELS = {
    "first": {"path": f"{OUTPUT}/demo/model.keras"},
    "second": {"path": f"{OUTPUT}/demo/model-seed7.keras", "score": "probabilities"},
}
METHODS = [
    {"name": "gradcam", "sweep": {"layer": ["conv4", "conv2"]}},
    {"name": "occlusion", "stride": 8, "patch_size": 16},
]
LABELS = ["gradcam-layer-conv4", "gradcam-layer-conv2", "occlusion"]
METHOD_OF = {"gradcam-layer-conv4": "gradcam", "gradcam-layer-conv2": "gradcam", "occlusion": "occlusion"}
STUDY = {
    **{k: v for k, v in CONFIG.items() if k not in ("data", "model")},
    "output": OUTPUT,
    "shard_size": 16,  # 2 shards: fewer jobs
    "models": MODELS,
    "methods": METHODS,
    "evaluation": {"metrics": ["deletion", "pointing_game", "sparseness"]},
}


def jobs(dry_run_stdout: str) -> list[tuple[str, str]]:
    """(rule, wildcards) of every job that a dry run lists."""
    found = []
    for block in re.split(r"\n(?=\s*(?:local)?rule )", dry_run_stdout):  # group jobs' rules are indented
        rule = re.match(r"\s*(?:local)?rule (\w+):", block)
        if rule:
            wildcards = re.search(r"wildcards: (.*)", block)
            found.append((rule.group(1), wildcards.group(1) if wildcards else ""))
    return found


def mtimes(folder: Path) -> dict[Path, int]:
    return {
        p: p.stat().st_mtime_ns
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not {"logs", "benchmarks"} & set(p.relative_to(folder).parts)
    }


@pytest.fixture(scope="module")
def study(demo_run):
    use_demo_of(demo_run, OUTPUT)
    snakemake_ok(demo_run, STUDY)
    return demo_run


def test_each_model_and_variant_has_its_folders_and_the_preprocessing_ran_once(study):
    results = study / OUTPUT
    for model in MODELS:
        for kind in ("heatmaps", "overlays", "evaluation"):
            assert {p.name for p in (results / model / kind).iterdir() if p.is_dir()} >= set(LABELS), (model, kind)
        assert not (results / model / "preprocessed").exists()  # both read the study's shards
        for kind in ("predictions.tsv", "failures.tsv", "report/index.html", "evaluation/summary.tsv"):
            assert (results / model / kind).is_file(), (model, kind)
    n_shards = len(list((results / "preprocessed").glob("shard-*.h5")))
    assert n_shards == 2
    # one preprocessing job per shard, for both models (each job leaves one benchmark record)
    assert len(list((results / "benchmarks/preprocess").glob("shard-*.tsv"))) == n_shards
    for model, params in MODELS.items():
        for label, layer in [("gradcam-layer-conv4", "conv4"), ("gradcam-layer-conv2", "conv2")]:
            with h5store.HeatmapsFile.open(results / model / f"heatmaps/{label}/shard-00000.h5") as maps:
                attrs = maps.file.attrs
                assert (attrs["variant"], attrs["target_layer"]) == (label, layer)
                assert json.loads(attrs["method_params"])["score"] == params.get("score", "logits")
                assert attrs["model_sha256"] == sha256_file(study / params["path"])
    first, second = (sha256_file(study / MODELS[m]["path"]) for m in MODELS)
    assert first != second  # two models indeed
    for model, params in MODELS.items():  # each report names its own model
        page = (results / model / "report/summary.html").read_text()
        assert params["path"] in page and sha256_file(study / params["path"]) in page, model


def test_experiments_table_lists_exactly_what_ran(study):
    results = study / OUTPUT
    rows = read_experiments(results / "experiments.tsv")
    assert [(r["model"], r["variant"]) for r in rows] == [(m, label) for m in MODELS for label in LABELS]
    assert [r["method"] for r in rows[:3]] == ["gradcam", "gradcam", "occlusion"]
    assert json.loads(rows[1]["parameters"]) == {"layer": "conv2", "score": "logits"}
    assert json.loads(rows[5]["parameters"]) == {"patch_size": 16, "score": "probabilities", "stride": 8}
    for row in rows:
        assert row["model_sha256"] == sha256_file(study / MODELS[row["model"]]["path"])
        assert row["heatmaps"] == f"{OUTPUT}/{row['model']}/heatmaps/{row['variant']}"
        assert (study / row["heatmaps"]).is_dir()


def test_comparison_ranks_every_model_and_variant_by_each_metric(study):
    results = study / OUTPUT
    summary = {}
    for model in MODELS:
        for r in read_summary(results / model / "evaluation/summary.tsv"):
            assert r["model"] == model and r["method"] == METHOD_OF[r["variant"]], r
            summary[(model, r["variant"], r["metric"])] = r["mean"]
    assert {(model, method) for model, method, _ in summary} == {(m, label) for m in MODELS for label in LABELS}
    rows = read_table(results / "evaluation/comparison.tsv")
    for metric in ("deletion", "pointing_game", "sparseness"):
        ranked = [(r["model"], r["variant"]) for r in rows if r["metric"] == metric]
        # by hand from the summaries' means, in the metric's better direction; deletion's areas are in each model's
        # own scores, so each model's variants are ranked among themselves, the maps' own measures across models
        sign = 1 if BETTER[metric] == "lower" else -1
        among = [[m] for m in MODELS] if metric == "deletion" else [list(MODELS)]
        expected = [
            key
            for models in among
            for key in sorted([(m, v) for m in models for v in LABELS], key=lambda k: sign * summary[(*k, metric)])
        ]
        assert ranked == expected, metric
        assert {r["ranked_among"] for r in rows if r["metric"] == metric} == {
            "its model" if metric == "deletion" else "all models"
        }


def test_the_study_page_links_every_models_pages_and_holds_the_comparison(study):
    results = study / OUTPUT
    page = (results / "report/summary.html").read_text()
    links = re.findall(r'<a class="(gallery|summary)" href="([^"]+)"', page)
    assert len(links) == 2 * len(MODELS)
    for _, href in links:
        assert (results / "report" / href).resolve().is_file(), href
    assert {href.split("/")[1] for _, href in links} == set(MODELS)
    assert 'href="index.html"' in page  # the study's own gallery
    table = page.split('<table id="comparison">')[1].split("</table>")[0]
    assert table.count("<tr>") - 1 == len(read_table(results / "evaluation/comparison.tsv"))  # less the header
    assert (results / "report/../evaluation/comparison.png").is_file() and "../evaluation/comparison.png" in page


def gallery_data(page: Path) -> dict:
    block = page.read_text().split('<script type="application/json" id="gallery-data">')[1].split("</script>")[0]
    return json.loads(block)


def test_the_study_gallery_shows_every_model_and_variant_side_by_side_with_a_model_selector(study):
    from browser import chromium, severe_console_errors
    from selenium.webdriver.support.ui import Select, WebDriverWait

    results = study / OUTPUT
    data = gallery_data(results / "report/index.html")
    assert data["methods"] == [f"{m} / {label}" for label in LABELS for m in MODELS]  # variant by variant
    assert data["models"] == list(MODELS) and data["variants"] == LABELS
    # each model's predictions, from its predictions table (written by another job than the pages)
    predicted, probabilities = {}, {}
    for model in MODELS:
        lines = (results / model / "predictions.tsv").read_text().splitlines()
        names = lines[0].split("\t")[3:]
        for line in lines[1:]:
            sample, _, _, *p = line.split("\t")
            predicted[(model, sample)] = int(np.argmax([float(v) for v in p]))
            probabilities[(model, sample)] = [f"{float(v):.3f}" for v in p]
        assert [n.removeprefix("p_") for n in names] == data["class_names"]
    assert len(data["samples"]) == len(predicted) // len(MODELS)
    for s in data["samples"]:
        for model in MODELS:
            assert s["predictions"][model]["predicted"] == predicted[(model, s["id"])], (model, s["id"])
            # each model's own picture (its preprocessed input), from its own report folder
            own = s["predictions"][model]["image"]
            assert own and all(v.startswith(f"../{model}/report/") for v in own), (model, own)
            assert all((results / "report" / v).is_file() for v in own), own
        for column, maps in s["maps"].items():
            for view in [v for m in maps for v in m["views"]] + s["image"]:
                assert (results / "report" / view).is_file(), (column, view)
    # the selector: one model's columns, and the rows show that model's predictions
    with chromium() as driver:
        driver.get((results / "report/index.html").as_uri())
        WebDriverWait(driver, 10).until(lambda d: d.execute_script("return window.galleryReady !== undefined"))
        header = lambda: [th.text for th in driver.find_elements("css selector", "#gallery thead th")]  # noqa: E731
        assert header()[6:] == data["methods"]
        Select(driver.find_element("id", "filter-model")).select_by_value("second")
        assert header()[6:] == [f"second / {label}" for label in LABELS] and header()[2] == "predicted (second)"
        # the picture beside the second model's maps is the second model's input, not the first model's
        assert header()[5] == "image (second)"
        pictures = driver.execute_script(
            "return Array.from(document.querySelectorAll('#gallery tbody img.image-view'), "
            "function (i) { return i.getAttribute('src'); });"
        )
        assert pictures and all(p.startswith("../second/report/") for p in pictures), pictures[:3]
        Select(driver.find_element("id", "filter-method")).select_by_value("occlusion")
        assert header()[6:] == ["second / occlusion"]
        shown = driver.execute_script(
            "var r = {}; document.querySelectorAll('#gallery tbody tr').forEach(function (tr) {"
            " r[tr.getAttribute('data-id')] = [tr.querySelector('td.predicted').textContent].concat("
            " Array.from(tr.querySelectorAll('td.probs .value'), function (v) { return v.textContent; })); });"
            " return r;"
        )
        assert len(shown) == min(50, len(data["samples"]))  # the first page
        for sample_id, (name, *values) in shown.items():
            assert name == data["class_names"][predicted[("second", sample_id)]], sample_id
            assert values == probabilities[("second", sample_id)], sample_id
        # the models' probabilities differ, so the first model's would fail above
        assert sum(probabilities[("first", i)] != probabilities[("second", i)] for i in shown) > len(shown) // 2
        assert severe_console_errors(driver) == []


def test_changing_one_variant_reruns_only_that_variant(study):
    results = study / OUTPUT
    changed = {**STUDY, "methods": [METHODS[0], {**METHODS[1], "patch_size": 8}]}
    dry = snakemake(study, changed, "-n")
    assert dry.returncode == 0, dry.stderr[-3000:]
    model_jobs = [(rule, w) for rule, w in jobs(dry.stdout) if rule in ("heatmaps", "evaluate", "randomization")]
    assert len(model_jobs) == 2 * 2 * 2, model_jobs  # heatmaps and evaluate, of 2 models x 2 shards
    assert all(re.search(r"method=occlusion\b", w) for _, w in model_jobs), model_jobs
    assert {rule for rule, _ in jobs(dry.stdout)} & {"preprocess", "predict", "demo_model", "demo_model_seed"} == set()

    before = mtimes(results)
    snakemake_ok(study, changed)
    rewritten = {p.relative_to(results) for p, t in mtimes(results).items() if before.get(p) != t}
    per_variant = {p for p in rewritten if len(p.parts) > 3 and p.parts[1] in ("heatmaps", "overlays", "evaluation")}
    assert per_variant and {p.parts[2] for p in per_variant} == {"occlusion"}, sorted(per_variant)[:5]
    assert not {p for p in rewritten if "preprocessed" in p.parts or "predictions" in p.parts}
    assert Path("experiments.tsv") in rewritten
    assert json.loads(read_experiments(results / "experiments.tsv")[2]["parameters"])["patch_size"] == 8

    # removing a variant leaves the others' maps and evaluation untouched
    fewer = {**changed, "methods": [{**METHODS[0], "sweep": {"layer": ["conv4"]}}, changed["methods"][1]]}
    before = mtimes(results)
    snakemake_ok(study, fewer)
    rewritten = {p.relative_to(results) for p, t in mtimes(results).items() if before.get(p) != t}
    assert not {p for p in rewritten if {"heatmaps", "overlays", "preprocessed", "predictions"} & set(p.parts)}
    assert [r["variant"] for r in read_experiments(results / "experiments.tsv")] == ["gradcam-layer-conv4", "occlusion"] * 2


@pytest.mark.parametrize(
    "methods, message",
    [
        (["gradcam", {"name": "gc"}], r"methods\[1\]: label 'gradcam' is taken by methods\[0\] too"),
        ([{"name": "os", "sweep": {"steps": [4]}}], r"methods\[0\]\.sweep\.steps: os takes no parameter 'steps'"),
        ([{"name": "os", "sweep": {"patch_size": []}}], r"methods\.0\.sweep\.patch_size: \[\] should be non-empty"),
    ],
)
def test_bad_variants_stop_before_any_job(tmp_path, methods, message):
    single = {k: v for k, v in STUDY.items() if k != "models"}
    result = snakemake(tmp_path, {**single, "methods": methods}, "-n")
    assert result.returncode != 0
    assert re.search(message, result.stdout + result.stderr), (result.stdout + result.stderr)[-2000:]
    assert not (tmp_path / OUTPUT).exists()


@pytest.mark.parametrize(
    "models, message",
    [
        ({"a/b": MODELS["first"]}, r"models\.a/b: the name 'a/b' is no safe folder name"),
        ({"logs": MODELS["first"]}, r"models\.logs: the name 'logs' is a folder of the study's own"),
        ({"a": {"path": "elsewhere/m.keras"}}, r"models\.a\.path: 'elsewhere/m\.keras', but with demo\.build true"),
    ],
)
def test_bad_models_stop_before_any_job(tmp_path, models, message):
    result = snakemake(tmp_path, {**STUDY, "models": models}, "-n")
    assert result.returncode != 0
    assert re.search(message, result.stdout + result.stderr), (result.stdout + result.stderr)[-2000:]
    assert not (tmp_path / OUTPUT).exists()


def test_a_model_with_other_outputs_than_the_classes_stops_before_any_job(demo_run, tmp_path):
    import keras

    inputs = keras.Input((64, 64, 1))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs))
    four = tmp_path / "four.keras"
    keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(x)).save(four)
    config = {
        **{k: v for k, v in CONFIG.items() if k not in ("demo", "data", "model")},
        "output": str(tmp_path / "out"),
        "data": {"images": str(demo_run / "results/demo/images")},  # disk, none, square: 3 classes
        "models": {"good": {"path": str(demo_run / "results/demo/model.keras")}, "four": {"path": str(four)}},
    }
    result = snakemake(tmp_path, config, "-n")
    assert result.returncode != 0
    assert re.search(r"config key models\.four: model .*four\.keras has 4 outputs but the samples have 3 classes",
                     result.stdout + result.stderr), (result.stdout + result.stderr)[-2000:]  # fmt: skip
    assert not (tmp_path / "out").exists()
    del config["models"]["four"]  # the good model alone passes the check
    assert snakemake(tmp_path, config, "-n").returncode == 0
