"""CAM families in the workflow: one heatmaps job per shard computes several CAM methods from one pass and writes
each member's own file (workflow/rules/heatmaps.smk, xaipipe.config.shared_pass_families).

The dry run plans the demo in an empty folder; the real run reuses the small demo (conftest.py's ``demo_run``)
under an output folder of its own and asks only for the heatmaps files.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from pipeline_runs import CONFIG, N_PER_CLASS, SHARD_SIZE, snakemake, snakemake_ok, use_demo_of


def planned_jobs(dry_run_stdout: str) -> list[dict[str, str]]:
    """Rule, input, output, log and wildcards of every job that a dry run lists (group jobs' are indented)."""
    found = []
    for block in re.split(r"\n(?=\s*(?:local)?rule )", dry_run_stdout):
        rule = re.match(r"\s*(?:local)?rule (\w+):", block)
        if rule:
            fields = dict(re.findall(r"^\s*(input|output|log|wildcards): (.*)$", block, re.M))
            found.append({"rule": rule.group(1), **fields})
    return found


def test_a_dry_run_plans_one_family_job_per_shard_and_the_others_their_own(tmp_path):
    labels = ["gradcam", "gradcam++", "hirescam", "saliency"]
    result = snakemake(tmp_path, {**CONFIG, "methods": labels}, "-n")
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = planned_jobs(result.stdout)
    shards = [f"{s:05d}" for s in range(-(-3 * N_PER_CLASS // SHARD_SIZE))]
    family = [j for j in jobs if j["rule"].startswith("heatmaps_group")]
    alone = [j for j in jobs if j["rule"] == "heatmaps"]
    assert {j["rule"] for j in family} == {"heatmaps_group_1"}
    # the family's files, each at the path its own job had; saliency keeps its job
    assert sorted(j["output"] for j in family) == [
        ", ".join(f"results/heatmaps/{label}/shard-{shard}.h5" for label in labels[:3]) for shard in shards
    ]
    assert sorted(j["output"] for j in alone) == [f"results/heatmaps/saliency/shard-{shard}.h5" for shard in shards]
    assert sorted(j["log"] for j in family) == [
        f"results/logs/heatmaps/gradcam,gradcam++,hirescam/shard-{shard}.log" for shard in shards
    ]
    # every heatmaps file that a later job reads is one of these jobs' outputs, and each is read
    written = {f for j in family + alone for f in j["output"].split(", ")}
    assert written == {f"results/heatmaps/{label}/shard-{shard}.h5" for label in labels for shard in shards}
    read = {f for j in jobs for f in j.get("input", "").split(", ") if "/heatmaps/" in f}
    assert read == written
    assert {j["rule"] for j in jobs if "heatmaps" in j["rule"]} == {"heatmaps", "heatmaps_group_1"}


@pytest.mark.parametrize("mode", ["shard", "variant"])
def test_heatmaps_jobs_shard_plans_one_job_of_every_variant_and_variant_one_job_each(tmp_path, mode):
    labels = ["gradcam", "saliency", "gradcam++"]
    result = snakemake(tmp_path, {**CONFIG, "methods": labels, "heatmaps_jobs": mode}, "-n")
    assert result.returncode == 0, result.stderr[-3000:]
    planned = planned_jobs(result.stdout)
    jobs = [j for j in planned if j["rule"].startswith("heatmaps")]
    shards = [f"{s:05d}" for s in range(-(-3 * N_PER_CLASS // SHARD_SIZE))]
    if mode == "shard":  # one model job per shard, writing its predictions and every variant's usual files
        assert jobs == [] and not [j for j in planned if j["rule"] == "evaluate"]
        jobs = [j for j in planned if j["rule"] == "predict"]
        assert sorted(j["output"] for j in jobs) == [
            ", ".join([f"results/predictions/shard-{shard}.h5"]
                      + [f"results/{kind}/{label}/shard-{shard}.h5" for kind in ("heatmaps", "evaluation")
                         for label in labels])
            for shard in shards
        ]  # fmt: skip
        assert {j["log"] for j in jobs} == {f"results/logs/predict/shard-{shard}.log" for shard in shards}
    else:  # one job per variant and shard, the CAM family's two included
        assert [j["rule"] for j in jobs] == ["heatmaps"] * len(labels) * len(shards)
        assert sorted(j["output"] for j in jobs) == sorted(
            f"results/heatmaps/{label}/shard-{shard}.h5" for label in labels for shard in shards
        )


# ---------------------------------------------------------------- a real run

OUTPUT = "families"
METHODS = ["gradcam", {"name": "gradcam++", "normalize": "positive"}, "hirescam"]  # each member its own normalize
RUN = {
    **{k: v for k, v in CONFIG.items() if k not in ("data", "model")},
    "output": OUTPUT,
    "shard_size": 16,  # 2 shards: fewer jobs
    "methods": METHODS,
    "targets": "argmax",
}
SHARDS = ["00000", "00001"]


def heatmaps_files(labels: list[str]) -> list[str]:
    return [f"{OUTPUT}/heatmaps/{label}/shard-{shard}.h5" for label in labels for shard in SHARDS]


def expected_maps(methods: list, out: Path, shard: str = "00000", output: str = OUTPUT) -> dict[str, Path]:
    """Each variant's heatmaps file of ``shard`` computed in this process by the one-method stage, from the run's own
    shards and predictions (the variants' parameters as the workflow gives them): label -> file."""
    from xaipipe import config as xconfig
    from xaipipe.stages import compute_heatmaps_shard

    variants = xconfig.method_variants({**RUN, "methods": methods, "model": {"layer": None}, "score": "logits"})
    for label, variant in variants.items():
        compute_heatmaps_shard(
            f"{output}/preprocessed/shard-{shard}.h5", f"{output}/predictions/shard-{shard}.h5",
            f"{output}/demo/model.keras", variant.method, dict(variant.params), RUN["targets"], RUN["batch_size"],
            out / label / f"shard-{shard}.h5", label=label,
        )  # fmt: skip
    return {label: out / label / f"shard-{shard}.h5" for label in variants}


def family_jobs(stdout_or_stderr: str) -> list[str]:
    """The outputs of every heatmaps job that a run or a dry run lists, each job's joined by commas."""
    return sorted(j["output"] for j in planned_jobs(stdout_or_stderr) if j["rule"].startswith("heatmaps"))


@pytest.mark.e2e
def test_a_family_job_writes_each_methods_file_as_its_own_job_would(demo_run, tmp_path, monkeypatch):
    from test_camfamily import assert_same_file

    use_demo_of(demo_run, OUTPUT)
    labels = ["gradcam", "gradcam++", "hirescam"]
    run = snakemake_ok(demo_run, RUN, *heatmaps_files(labels))
    # one job per shard wrote the three files: its outputs, its one benchmark record, its log
    assert family_jobs(run.stderr) == [", ".join(heatmaps_files(labels)[i::2]) for i in range(2)]
    results = demo_run / OUTPUT
    family = "gradcam,gradcam++,hirescam"
    assert sorted(p.name for p in (results / "benchmarks/heatmaps").iterdir()) == [family]
    assert sorted(p.name for p in (results / "benchmarks/heatmaps" / family).iterdir()) == [
        f"shard-{s}.tsv" for s in SHARDS
    ]
    log = (results / "logs/heatmaps" / family / "shard-00000.log").read_text()
    assert "gradcam, gradcam++, hirescam from one forward and backward pass per batch" in log

    monkeypatch.chdir(demo_run)  # the workflow's relative paths, recorded in the files
    alone = expected_maps(METHODS, tmp_path / "alone")
    for label in labels:
        assert_same_file(results / f"heatmaps/{label}/shard-00000.h5", alone[label])

    # a CAM method added after the run: the family's job, now with four outputs, runs again for every shard and
    # rewrites every member's file (Snakemake removes a job's old outputs first): none is left from the old run
    more = {**RUN, "methods": [*METHODS, "layercam"]}
    before = {f: (demo_run / f).stat().st_mtime_ns for f in heatmaps_files(labels)}
    run = snakemake_ok(demo_run, more, *heatmaps_files([*labels, "layercam"]))
    assert family_jobs(run.stderr) == [", ".join(heatmaps_files([*labels, "layercam"])[i::2]) for i in range(2)]
    assert all((demo_run / f).stat().st_mtime_ns != mtime for f, mtime in before.items())
    added = expected_maps(["layercam"], tmp_path / "added")
    assert_same_file(results / "heatmaps/layercam/shard-00000.h5", added["layercam"])
    assert_same_file(results / "heatmaps/gradcam++/shard-00000.h5", alone["gradcam++"])
    # and one removed again: the family of the others has other params, so its job is planned again
    dry = snakemake(demo_run, RUN, "-n", *heatmaps_files(labels))
    assert family_jobs(dry.stdout) == [", ".join(heatmaps_files(labels)[i::2]) for i in range(2)]


@pytest.mark.e2e
def test_heatmaps_jobs_shard_predicts_and_explains_each_shard_in_one_job(demo_run, tmp_path, monkeypatch):
    """With heatmaps_jobs: shard, rule predict is the shard's one model job: it writes the predictions, every
    variant's maps and their evaluation, each file as the one-stage functions write it, and no heatmaps or evaluate
    job runs."""
    import copy

    from snakemake.utils import validate
    from test_camfamily import assert_same_file

    from xaipipe import evaluate, h5store
    from xaipipe.stages import predict_shard

    output = "one-job-per-shard"
    use_demo_of(demo_run, output)
    config = {**RUN, "output": output, "heatmaps_jobs": "shard", "methods": [*METHODS, "saliency"]}
    labels = ["gradcam", "gradcam++", "hirescam", "saliency"]
    wanted = [f"{output}/heatmaps/{label}/shard-{shard}.h5" for label in labels for shard in SHARDS]
    run = snakemake_ok(demo_run, config, *wanted)
    jobs = planned_jobs(run.stderr)
    model_jobs = ("predict", "heatmaps", "evaluate")
    assert sorted(j["rule"] for j in jobs if j["rule"] in model_jobs or "group" in j["rule"]) == ["predict"] * 2
    evaluated = [f"{output}/evaluation/{label}/shard-{shard}.h5" for label in labels for shard in SHARDS]
    assert sorted(j["output"] for j in jobs if j["rule"] == "predict") == [
        ", ".join([f"{output}/predictions/shard-{shard}.h5"] + wanted[i::2] + evaluated[i::2])
        for i, shard in enumerate(SHARDS)
    ]
    results = demo_run / output
    log = (results / "logs/predict/shard-00000.log").read_text()  # saliency joins the CAM family's pass
    assert "gradcam, gradcam++, hirescam, saliency from one forward and backward pass per batch" in log

    monkeypatch.chdir(demo_run)  # the workflow's relative paths, recorded in the files
    predict_shard(f"{output}/preprocessed/shard-00000.h5", f"{output}/demo/model.keras",
                  tmp_path / "predictions.h5", RUN["batch_size"])  # fmt: skip
    assert_same_file(results / "predictions/shard-00000.h5", tmp_path / "predictions.h5")
    alone = expected_maps([*METHODS, "saliency"], tmp_path / "alone", output=output)
    for label in labels:
        assert_same_file(results / f"heatmaps/{label}/shard-00000.h5", alone[label])
    # each variant's evaluation as its own evaluate job computes it: the config's settings, the demo's masks
    full = copy.deepcopy(config)
    validate(full, str(Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml"))
    settings = evaluate.Settings.from_config(full["evaluation"], has_masks=True)
    assert {"pointing_game", "deletion"} <= set(settings.per_map)  # masks and the model's curves both in play
    pre = f"{output}/preprocessed/shard-00000.h5"
    with h5store.PreprocessedShard.open(pre) as shard:
        masks = [f"{output}/demo/masks/{sample_id}" for sample_id in shard.ids]
    for label in labels:
        expected = tmp_path / "evaluation" / f"{label}.h5"
        maps = f"{output}/heatmaps/{label}/shard-00000.h5"
        evaluate.evaluate_shard(pre, f"{output}/predictions/shard-00000.h5", maps, f"{output}/demo/model.keras",
                                expected, settings.shard_params(), masks, batch_size=RUN["batch_size"])  # fmt: skip
        assert_same_file(results / f"evaluation/{label}/shard-00000.h5", expected)
    scores = h5store.EvaluationFile.read(results / "evaluation/gradcam/shard-00000.h5")
    assert np.isfinite(scores.values["pointing_game"]).sum() > 0  # real scores, not placeholders
    assert np.isfinite(scores.values["deletion"]).all()
