"""Method variants and sweeps on the real Snakemake pipeline: one study, several variants, resumable.

Runs in the small demo's folder (conftest.py's ``demo_run``), under an output folder of its own.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from xaipipe import h5store
from xaipipe.evaluate import BETTER, read_summary, read_table
from xaipipe.experiments import read_experiments
from xaipipe.model import sha256_file

pytestmark = pytest.mark.e2e

from pipeline_runs import CONFIG, snakemake, snakemake_ok, use_demo_of

OUTPUT = "variants"
METHODS = [
    "gradcam",
    {"name": "gradcam", "label": "gc-early", "layer": "conv2"},
    {"name": "occlusion", "stride": 8, "sweep": {"patch_size": [8, 16]}},
]
LABELS = ["gradcam", "gc-early", "occlusion-patch_size-8", "occlusion-patch_size-16"]
STUDY = {
    **{k: v for k, v in CONFIG.items() if k not in ("data", "model")},
    "output": OUTPUT,
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


def test_each_variant_has_its_folders_and_its_parameters(study):
    results = study / OUTPUT
    for kind in ("heatmaps", "overlays", "evaluation"):
        assert {p.name for p in (results / kind).iterdir() if p.is_dir()} >= set(LABELS), kind
    layers, patches = {}, {}
    for label in LABELS:
        with h5store.HeatmapsFile.open(results / f"heatmaps/{label}/shard-00000.h5") as maps:
            attrs = maps.file.attrs
            assert attrs["variant"] == label
            params = json.loads(attrs["method_params"])
            layers[label] = attrs["target_layer"]
            patches[label] = params.get("patch_size")
    assert layers["gradcam"] == "conv4" and layers["gc-early"] == "conv2"  # the demo CNN's last conv layer is conv4
    assert patches["occlusion-patch_size-8"] == 8 and patches["occlusion-patch_size-16"] == 16


def test_experiments_table_lists_exactly_what_ran(study):
    results = study / OUTPUT
    rows = read_experiments(results / "experiments.tsv")
    assert [r["variant"] for r in rows] == LABELS
    assert [r["method"] for r in rows] == ["gradcam", "gradcam", "occlusion", "occlusion"]
    assert json.loads(rows[1]["parameters"]) == {"layer": "conv2", "score": "logits"}
    assert json.loads(rows[3]["parameters"]) == {"patch_size": 16, "score": "logits", "stride": 8}
    assert {r["model_sha256"] for r in rows} == {sha256_file(results / "demo/model.keras")}
    assert [r["heatmaps"] for r in rows] == [f"{OUTPUT}/heatmaps/{label}" for label in LABELS]
    assert all((study / r["heatmaps"]).is_dir() for r in rows)


def test_comparison_ranks_every_variant_by_each_metric(study):
    results = study / OUTPUT
    summary = {(r["method"], r["metric"]): r["mean"] for r in read_summary(results / "evaluation/summary.tsv")}
    assert {method for method, _ in summary} == set(LABELS)
    rows = read_table(results / "evaluation/comparison.tsv")
    for metric in ("deletion", "pointing_game", "sparseness"):
        ranked = [r["method"] for r in rows if r["metric"] == metric]
        # by hand from the summary's means, in the metric's better direction
        expected = sorted(LABELS, key=lambda m: summary[(m, metric)] * (1 if BETTER[metric] == "lower" else -1))
        assert ranked == expected, metric
    # the evaluation tells variants apart: the last layer localizes the lesion better than an early one
    assert summary[("gradcam", "pointing_game")] > summary[("gc-early", "pointing_game")]


def test_changing_one_variant_reruns_only_that_variant(study):
    results = study / OUTPUT
    changed = {**STUDY, "methods": [METHODS[0], {**METHODS[1], "layer": "conv3"}, METHODS[2]]}
    dry = snakemake(study, changed, "-n")
    assert dry.returncode == 0, dry.stderr[-3000:]
    model_jobs = [(rule, w) for rule, w in jobs(dry.stdout) if rule in ("heatmaps", "evaluate", "randomization")]
    assert model_jobs and all("method=gc-early" in w for _, w in model_jobs), model_jobs
    assert {rule for rule, _ in jobs(dry.stdout)} & {"preprocess", "predict"} == set()

    before = mtimes(results)
    snakemake_ok(study, changed)
    after = mtimes(results)
    rewritten = {p.relative_to(results) for p, t in after.items() if before.get(p) != t}
    per_variant = {p for p in rewritten if p.parts[0] in ("heatmaps", "overlays") or p.parts[:2][0] == "evaluation" and len(p.parts) == 3}
    assert per_variant and {p.parts[1] for p in per_variant} == {"gc-early"}, sorted(per_variant)[:5]
    assert Path("experiments.tsv") in rewritten
    assert json.loads(read_experiments(results / "experiments.tsv")[1]["parameters"])["layer"] == "conv3"

    # removing a variant leaves the others' maps and evaluation untouched
    fewer = {**changed, "methods": changed["methods"][:2] + [{**METHODS[2], "sweep": {"patch_size": [8]}}]}
    before = mtimes(results)
    snakemake_ok(study, fewer)
    rewritten = {p.relative_to(results) for p, t in mtimes(results).items() if before.get(p) != t}
    assert not {p for p in rewritten if p.parts[0] in ("heatmaps", "overlays", "preprocessed", "predictions")}
    assert [r["variant"] for r in read_experiments(results / "experiments.tsv")] == LABELS[:3]


@pytest.mark.parametrize(
    "methods, message",
    [
        (["gradcam", {"name": "gc"}], r"methods\[1\]: label 'gradcam' is taken by methods\[0\] too"),
        ([{"name": "os", "sweep": {"steps": [4]}}], r"methods\[0\]\.sweep\.steps: os takes no parameter 'steps'"),
        ([{"name": "os", "sweep": {"patch_size": []}}], r"methods\.0\.sweep\.patch_size: \[\] should be non-empty"),
        ([{"name": "gc", "label": "../up"}], r"methods\[0\]: label '\.\./up' is no safe folder name"),
    ],
)
def test_bad_variants_stop_before_any_job(tmp_path, methods, message):
    result = snakemake(tmp_path, {**STUDY, "methods": methods}, "-n")
    assert result.returncode != 0
    assert re.search(message, result.stdout + result.stderr), (result.stdout + result.stderr)[-2000:]
    assert not (tmp_path / OUTPUT).exists()
