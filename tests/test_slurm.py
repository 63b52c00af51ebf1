"""The pipeline on a real SLURM cluster, through snakemake-executor-plugin-slurm and profiles/slurm.

A single-node cluster is started by tests/slurm/start-slurm.sh (fixture ``slurm_cluster`` in
conftest.py; the test fails, with the reason, where it cannot start). The demo runs once
locally and once with ``--executor slurm``; one heatmaps job is cancelled with ``scancel``
while it runs, and a second SLURM run must complete it and touch nothing else. The outputs
must then equal the local run's, and ``sacct`` must list the jobs.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import h5py
import pytest

from compare_runs import compare
from pipeline_runs import CONFIG, REPO, environment, snakemake_command, snakemake_ok
from xaipipe.naming import overlay_name

pytestmark = [pytest.mark.slurm, pytest.mark.e2e]

METHODS = ["gradcam", "saliency"]
SHARD_SIZE = 6
# 12 demo images in 2 shards, 2 methods
SLURM_CONFIG = {
    **CONFIG,
    "demo": {**CONFIG["demo"], "n_per_class": 4},
    "evaluation": {"sanity_samples": 4, "sanity_stages": 2},
    "methods": METHODS,
    "shard_size": SHARD_SIZE,
    "batch_size": SHARD_SIZE,
}
# the project's SLURM profile, as the README says to run it, with short waits for a private cluster
SLURM_ARGS = (
    "--profile", str(REPO / "profiles/slurm"), "--executor", "slurm", "--default-resources", "slurm_partition=debug",
    "--slurm-init-seconds-before-status-checks", "2", "--latency-wait", "5", "--retries", "0",
)  # fmt: skip
# A job cancelled by hand shows in sacct as 'CANCELLED by <uid>', a state that the plugin (2.8.0)
# does not recognize when it polls sacct: the run would wait for that job forever. squeue reports
# plain 'CANCELLED' (slurm.conf keeps finished jobs for MinJobAge=600 s), so the run in which the
# test cancels a job polls squeue; the rerun polls sacct, the plugin's default.
CANCEL_ARGS = ("--slurm-status-command", "squeue")
# a job's wildcards as its batch script names them, e.g. 'heatmaps:root=results,method=gradcam,shard=00000'
HEATMAPS_JOB = re.compile(r"'heatmaps:(?=[^']*\bmethod=(?P<method>[^,']+))(?=[^']*\bshard=(?P<shard>\d{5}))[^']*'")


def output_files(results: Path) -> dict[Path, int]:
    """Relative path -> modification time of every output (logs and benchmark records left out)."""
    return {
        p.relative_to(results): p.stat().st_mtime_ns
        for p in sorted(results.rglob("*"))
        if p.is_file() and not {"logs", "benchmarks"} & set(p.relative_to(results).parts)
    }


def shard_outputs(results: Path, method: str, shard: str) -> list[Path]:
    """The heatmaps file and the overlays of one method and shard."""
    with h5py.File(results / f"preprocessed/shard-{shard}.h5") as f:
        ids = [s.decode() for s in f["ids"][()]]
    return [results / f"heatmaps/{method}/shard-{shard}.h5"] + [
        results / f"overlays/{method}/{overlay_name(i, None, '.png')}" for i in ids
    ]


def sacct_jobs(workdir: Path) -> list[dict[str, str]]:
    """The SLURM jobs that ran in ``workdir``, from the accounting database."""
    fields = ["JobID", "Comment", "State", "WorkDir"]
    out = subprocess.run(
        ["sacct", "-X", "-n", "-P", "--starttime", "now-1days", "-o", ",".join(fields)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rows = [dict(zip(fields, line.split("|"), strict=True)) for line in out.splitlines() if line.strip()]
    return [r for r in rows if Path(r["WorkDir"]) == workdir]


def running_heatmaps_job(results: Path) -> tuple[str, str, str] | None:
    """(SLURM job id, method, shard) of a RUNNING job whose heatmaps step has started (its log exists), if any."""
    ids = subprocess.run(["squeue", "-h", "-t", "RUNNING", "-o", "%i"], capture_output=True, text=True).stdout.split()
    for job_id in ids:
        script = subprocess.run(["scontrol", "write", "batch_script", job_id, "-"], capture_output=True, text=True)
        match = HEATMAPS_JOB.search(script.stdout)
        if match and (results / f"logs/heatmaps/{match['method']}/shard-{match['shard']}.log").exists():
            return job_id, match["method"], match["shard"]
    return None


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("local")
    snakemake_ok(workdir, SLURM_CONFIG)
    return workdir


@pytest.fixture(scope="module")
def slurm_runs(slurm_cluster, local_run, tmp_path_factory):
    """The demo on SLURM: a first run in which one heatmaps job is cancelled, then a rerun."""
    workdir = tmp_path_factory.mktemp("slurm")
    # the same demo images and model as the local run (training twice would not give the same weights bit for bit)
    shutil.copytree(local_run / "results/demo", workdir / "results/demo")
    log = (workdir / "first_run.log").open("w")
    first = subprocess.Popen(
        snakemake_command(workdir, SLURM_CONFIG, *SLURM_ARGS, *CANCEL_ARGS), stdout=log, stderr=subprocess.STDOUT, env=environment()
    )
    cancelled = None
    deadline = time.monotonic() + 400
    try:
        while first.poll() is None and time.monotonic() < deadline:
            cancelled = running_heatmaps_job(workdir / "results")
            if cancelled:
                subprocess.run(["scancel", cancelled[0]], check=True)
                break
            time.sleep(0.3)
        first.wait(timeout=max(1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pass
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
            log.close()
            pytest.fail(f"the first SLURM run did not end within 400 s:\n{(workdir / 'first_run.log').read_text()[-4000:]}")
        log.close()
    first_log = (workdir / "first_run.log").read_text()
    assert cancelled, f"no heatmaps job was seen running under SLURM:\n{first_log[-4000:]}"
    results = workdir / "results"
    after_first = output_files(results)
    try:
        second = subprocess.run(
            snakemake_command(workdir, SLURM_CONFIG, *SLURM_ARGS),
            capture_output=True, text=True, env=environment(), timeout=400,
        )  # fmt: skip
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"the second SLURM run did not end within 400 s:\n{(error.stderr or b'')[-4000:]!r}")
    return {
        "workdir": workdir,
        "cancelled": cancelled,
        "first_returncode": first.returncode,
        "first_log": first_log,
        "after_first": after_first,
        "second": second,
    }


def test_a_cancelled_job_leaves_no_finished_looking_file(slurm_runs):
    job_id, method, shard = slurm_runs["cancelled"]
    assert slurm_runs["first_returncode"] != 0, slurm_runs["first_log"][-3000:]
    results = slurm_runs["workdir"] / "results"
    for path in shard_outputs(results, method, shard):
        assert path.relative_to(results) not in slurm_runs["after_first"], f"{path} exists after job {job_id} was cancelled"
    # nor a half-written temporary file (the job's Python removes it on SIGTERM)
    assert not list((results / "heatmaps").rglob("*.part"))


def test_the_rerun_completes_the_cancelled_job_and_touches_nothing_else(slurm_runs):
    second = slurm_runs["second"]
    assert second.returncode == 0, second.stderr[-4000:]
    _, method, shard = slurm_runs["cancelled"]
    results = slurm_runs["workdir"] / "results"
    for path in shard_outputs(results, method, shard):
        assert path.is_file(), path
    now = output_files(results)
    touched = [p for p, mtime in slurm_runs["after_first"].items() if now.get(p) != mtime]
    assert not touched, f"the rerun rewrote {touched}"
    assert "Finished jobid" in second.stderr and f"heatmaps/{method}/shard-{shard}.h5" in second.stderr


def test_the_jobs_ran_under_slurm(slurm_runs):
    jobs = sacct_jobs(slurm_runs["workdir"])
    comments = [j["Comment"] for j in jobs]
    job_id, method, shard = slurm_runs["cancelled"]
    assert [j["State"].split()[0] for j in jobs if j["JobID"] == job_id] == ["CANCELLED"]
    assert all(j["State"] == "COMPLETED" for j in jobs if j["JobID"] != job_id), jobs
    n_shards = 2
    assert sorted(c for c in comments if c.startswith("rule_preprocess")) == [
        f"rule_preprocess_wildcards_results_{s:05d}" for s in range(n_shards)  # {pre}: results, {shard}
    ]
    assert len([c for c in comments if c.startswith("rule_predict_")]) == n_shards
    assert len([c for c in comments if c.startswith("rule_randomization_")]) == len(METHODS)
    # heatmaps and their rendering are one SLURM job per method and shard (group "explain");
    # the cancelled one ran twice
    explain = [c for c in comments if c.startswith("rule_explain_")]
    assert len(explain) == len(METHODS) * n_shards + 1, comments
    assert not [c for c in comments if c.startswith("rule_render") or c.startswith("rule_heatmaps")], comments
    # the evaluation of each method and shard is part of that job too; the table merges are local rules
    assert not [c for c in comments if c.startswith("rule_evaluate_")], comments
    assert not [c for c in comments if re.match(r"rule_(predictions_table|failures_table|agreement|evaluation_summary)", c)]
    assert len([c for c in comments if c.startswith("rule_evaluation_plots")]) == 1


def test_slurm_outputs_equal_the_local_run(local_run, slurm_runs):
    local_results, slurm_results = local_run / "results", slurm_runs["workdir"] / "results"
    assert any(p.parts[0] == "overlays" for p in output_files(local_results))
    assert compare(local_results, slurm_results, attributes=True) == []
