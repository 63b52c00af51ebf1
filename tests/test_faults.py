"""Faults during a run: a kill -9 of the whole Snakemake process tree, then a rerun, gives the outputs
of an uninterrupted run (HDF5 datasets equal, PNG pixels equal)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from contextlib import suppress
from pathlib import Path

import pytest

from compare_runs import compare
from pipeline_runs import CONFIG, environment, snakemake, snakemake_command, snakemake_ok

pytestmark = pytest.mark.e2e


def heatmaps_job_running(results: Path) -> tuple[bool, bool]:
    """(a heatmaps job has started, one is writing its file)."""
    started = any((results / "logs/heatmaps").rglob("*.log")) if (results / "logs/heatmaps").exists() else False
    writing = any((results / "heatmaps").rglob(".*.part")) if (results / "heatmaps").exists() else False
    return started, writing


def test_a_run_killed_during_a_heatmaps_job_resumes_to_the_uninterrupted_outputs(demo_run, tmp_path):
    reference = demo_run / "results"  # the uninterrupted run of CONFIG (conftest.py)
    if "Nothing to be done" not in snakemake(demo_run, CONFIG, "-n").stdout:
        snakemake_ok(demo_run, CONFIG)  # another test changed the shared run's config: back to CONFIG's outputs
    # the same demo images and model (training again would not give the same weights bit for bit)
    shutil.copytree(reference / "demo", tmp_path / "results/demo")
    results = tmp_path / "results"

    with open(tmp_path / "killed_run.log", "w") as log:
        run = subprocess.Popen(
            snakemake_command(tmp_path, CONFIG), stdout=log, stderr=subprocess.STDOUT, env=environment(),
            start_new_session=True,  # its own process group: snakemake and every job it started
        )  # fmt: skip
        deadline, started_at, writing = time.monotonic() + 300, None, False
        try:
            while run.poll() is None and time.monotonic() < deadline:
                started, writing = heatmaps_job_running(results)
                started_at = started_at or (time.monotonic() if started else None)
                # kill while a heatmaps file is half-written, or 20 s into a heatmaps job at the latest
                if writing or (started_at and time.monotonic() - started_at > 20):
                    break
                time.sleep(0.02)
            assert run.poll() is None, f"the run ended first: {(tmp_path / 'killed_run.log').read_text()[-2000:]}"
        finally:
            with suppress(ProcessLookupError):
                os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    heatmaps = list((results / "heatmaps").rglob("shard-*.h5")) if (results / "heatmaps").exists() else []
    assert len(heatmaps) < 4, "the kill came after every heatmaps file was written"
    if writing:  # the killed job's half-written file is left behind; its rerun removes it
        assert list((results / "heatmaps").rglob(".*.part"))

    locked = snakemake(tmp_path, CONFIG)  # Snakemake's lock outlives a kill -9: it says how to remove it
    assert locked.returncode != 0 and "--unlock" in locked.stderr
    snakemake_ok(tmp_path, CONFIG, "--unlock")
    rerun = snakemake_ok(tmp_path, CONFIG)
    assert compare(reference, results) == [], rerun.stderr[-3000:]
    assert not list(results.rglob("*.part"))
