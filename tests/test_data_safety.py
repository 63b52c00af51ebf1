"""The pipeline never writes into a user's data and never serves stale or damaged caches.

A small user study (4 PNGs in two class folders, a hand-built CNN, 2 shards) is run once
per module, from a folder that holds the repository's `config/config.yaml` as a clone
does; the later tests change one thing each and check what the rerun did.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest

from pipeline_runs import REPO, snakemake, snakemake_ok
from xaipipe import h5store
from xaipipe.model import sha256_file

pytestmark = pytest.mark.e2e

# disk/disk_0000.png is also the name of a demo image: the demo must not touch it
USER_IMAGES = ["disk/disk_0000.png", "disk/disk_0001.png", "other/a.png", "other/b.png"]


def user_model(path: Path, seed: int) -> None:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((16, 16, 1))
    features = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(features)
    keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(pooled)).save(path)


def user_config(workdir: Path, **changes) -> dict:
    """A config written from scratch, as README's 'Running your own study' allows: no demo section."""
    config = {
        "data": {"images": str(workdir / "study")},
        "model": {"path": str(workdir / "model.keras")},
        "preprocessing": {"size": [16, 16], "channels": 1},
        "methods": ["gc"],
        "shard_size": 2,
        "batch_size": 2,
    }
    return {**config, **changes}


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def mtimes(folder: Path) -> dict[Path, int]:
    return {
        p: p.stat().st_mtime_ns
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not {"logs", "benchmarks"} & set(p.relative_to(folder).parts)
    }


def swap_with_dates_kept(a: Path, b: Path) -> None:
    """Swap two files' contents as mv does: each keeps its modification time, now under the other's name."""
    through = a.with_name(a.name + ".swap")
    os.replace(a, through)
    os.replace(b, a)
    os.replace(through, b)


def changed_since(before: dict[Path, int], folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p, t in mtimes(folder).items() if before.get(p) != t}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("study")
    (workdir / "config").mkdir()
    shutil.copy(REPO / "config/config.yaml", workdir / "config/config.yaml")  # as in a clone of the repository
    rng = np.random.default_rng(0)
    for name in USER_IMAGES:
        (workdir / "study" / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(workdir / "study" / name), rng.integers(0, 256, (20, 20), dtype=np.uint8))
    user_model(workdir / "model.keras", seed=1)
    before = snapshot(workdir / "study"), (workdir / "model.keras").read_bytes()
    result = snakemake(workdir, user_config(workdir))
    return workdir, before, result


def test_a_config_without_a_demo_section_leaves_the_users_files_alone(study):
    workdir, (images, model), result = study
    assert snapshot(workdir / "study") == images  # the same files, byte for byte, and no demo file added
    assert (workdir / "model.keras").read_bytes() == model
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (workdir / "results/demo").exists()
    overlays = sorted(p.name for p in (workdir / "results/overlays/gradcam").iterdir())
    assert overlays == ["disk.disk_0000.png", "disk.disk_0001.png", "other.a.png", "other.b.png"]


def test_a_damaged_cache_is_moved_aside_and_only_what_depends_on_it_rebuilt(study):
    workdir, _, _ = study
    results = workdir / "results"
    config = user_config(workdir)
    assert "Nothing to be done" in snakemake(workdir, config, "-n").stdout
    damaged = results / "predictions/shard-00000.h5"
    truncated = damaged.read_bytes()[:1000]  # as by a full disk or a copy cut short
    damaged.write_bytes(truncated)
    before = mtimes(results)
    dry = snakemake_ok(workdir, config, "-n")  # a dry run says, and moves nothing
    assert "results/predictions/shard-00000.h5 is damaged" in dry.stdout and "this dry run moved nothing" in dry.stdout
    assert damaged.read_bytes() == truncated and not (results / "predictions/shard-00000.h5.damaged").exists()
    assert changed_since(before, results) == set()
    rerun = snakemake_ok(workdir, config)
    named = "results/predictions/shard-00000.h5"  # as the config names it: relative to the working folder
    assert f"{named} is damaged" in rerun.stderr and f"{named}.damaged" in rerun.stderr
    assert (results / "predictions/shard-00000.h5.damaged").read_bytes() == truncated
    assert h5store.read_predictions(damaged).ids == ["disk/disk_0000.png", "disk/disk_0001.png"]
    assert changed_since(before, results) == {
        "predictions/shard-00000.h5",
        "predictions/shard-00000.h5.damaged",
        "predictions.tsv",
        "failures.tsv",  # gathered from the predictions files among others
        "heatmaps/gradcam/shard-00000.h5",
        "overlays/gradcam/disk.disk_0000.png",
        "overlays/gradcam/disk.disk_0001.png",
    } | evaluated("00000") | report_of("00000", results)


def evaluated(shard: str) -> set[str]:
    """What the evaluation rewrites when one shard's maps change (one method, 2 shards: no agreement plot)."""
    plots = {f"evaluation/{name}.{ext}" for name in ("curves", "metrics") for ext in ("png", "svg")}
    tables = {"evaluation/summary.tsv", "evaluation/agreement.tsv", "evaluation/randomization/gradcam.tsv"}
    tables.add("evaluation/comparison.tsv")  # the summary's rows ranked
    return {f"evaluation/gradcam/shard-{shard}.h5"} | plots | tables


def report_of(shard: str, results: Path) -> set[str]:
    """What the report rewrites when one shard's maps change: that shard's pictures, and the pages."""
    report = results / "report"
    pictures = {str(p.relative_to(results)) for p in (report / "thumbs" / f"shard-{shard}").iterdir()}
    pages = {str(p.relative_to(results)) for p in report.rglob("*") if p.is_file() and "thumbs" not in p.parts}
    others = {str(p.relative_to(results)) for p in (report / "shards").iterdir() if shard not in p.name}
    return pictures | (pages - others)


def test_a_replaced_model_reruns_its_predictions_and_maps_even_when_older(study):
    workdir, _, _ = study
    results = workdir / "results"
    config = user_config(workdir)
    model = workdir / "model.keras"
    old_mtime = model.stat().st_mtime_ns
    user_model(model, seed=2)  # another model ...
    os.utime(model, ns=(old_mtime - 10**10, old_mtime - 10**10))  # ... whose file is older
    new_sha = sha256_file(model)
    # a dry run removed the checksum record: the model put back, everything was computed again all the same
    checksum = results / "checksums/model.sha256"
    recorded = checksum.read_bytes()
    dry = snakemake_ok(workdir, config, "-n")
    assert "is not the one the cached predictions" in dry.stdout and "this dry run removed nothing" in dry.stdout
    assert checksum.read_bytes() == recorded
    snakemake_ok(workdir, config)
    for shard in ("00000", "00001"):
        with h5store.open_checked(results / f"predictions/shard-{shard}.h5", h5store.PREDICTIONS) as f:
            assert f.attrs["model_sha256"] == new_sha
        with h5store.open_checked(results / f"heatmaps/gradcam/shard-{shard}.h5", h5store.HEATMAPS) as f:
            assert f.attrs["model_sha256"] == new_sha
    assert "Nothing to be done" in snakemake(workdir, config, "-n").stdout


def test_sample_files_swapped_with_their_dates_kept_are_explained_again(study):
    # mv keeps a file's date: the shard's preprocessing, predictions and maps were those of the old content
    workdir, _, _ = study
    results = workdir / "results"
    config = user_config(workdir)
    snakemake_ok(workdir, config)  # up to date, whatever the tests before changed
    before = h5store.read_predictions(results / "predictions/shard-00001.h5")
    probabilities = dict(zip(before.ids, before.probabilities, strict=True))
    swap_with_dates_kept(workdir / "study/other/a.png", workdir / "study/other/b.png")
    dry = snakemake_ok(workdir, config, "-n")  # says so, and removes nothing
    assert "shard-00001.h5 hold other content" in dry.stdout and "this dry run removed nothing" in dry.stdout
    assert (results / "preprocessed/shard-00001.h5").exists()
    rerun = snakemake_ok(workdir, config)
    assert "results/preprocessed/shard-00001.h5 hold other content" in rerun.stderr
    after = h5store.read_predictions(results / "predictions/shard-00001.h5")
    assert after.ids == ["other/a.png", "other/b.png"]
    # each sample's prediction is now that of the content it holds: the other's before
    np.testing.assert_allclose(after.probabilities[0], probabilities["other/b.png"], rtol=1e-6)
    np.testing.assert_allclose(after.probabilities[1], probabilities["other/a.png"], rtol=1e-6)
    assert not np.allclose(after.probabilities[0], after.probabilities[1])
    assert "Nothing to be done" in snakemake(workdir, config, "-n").stdout


def test_masks_swapped_with_their_dates_kept_are_evaluated_again(study):
    """mv keeps a mask's date: the localization metrics stayed those of the old mask (a new-user session: a
    pointing game of 1.000 that was 0.000 on the mask the folder now holds)."""
    workdir, _, _ = study
    left = np.zeros((20, 20), np.uint8)
    left[:, :10] = 255
    for k, name in enumerate(USER_IMAGES):  # the left half, or the right half: complements
        (workdir / "masks" / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(workdir / "masks" / name), left if k % 2 == 0 else 255 - left)
    config = user_config(
        workdir,
        output="results_masks",
        data={"images": str(workdir / "study"), "masks": str(workdir / "masks")},
        evaluation={"metrics": ["relevance_mass"]},
    )
    snakemake_ok(workdir, config)
    evaluation = workdir / "results_masks/evaluation/gradcam/shard-00001.h5"
    before = h5store.EvaluationFile.read(evaluation).values["relevance_mass"]
    swap_with_dates_kept(workdir / "masks/other/a.png", workdir / "masks/other/b.png")
    dry = snakemake_ok(workdir, config, "-n")  # says so, and removes nothing
    assert "hold other content" in dry.stdout and "this dry run removed nothing" in dry.stdout
    assert evaluation.exists()
    rerun = snakemake_ok(workdir, config)
    assert "2 mask file(s) of results_masks/evaluation/gradcam/shard-00001.h5 hold other content" in rerun.stderr
    after = h5store.EvaluationFile.read(evaluation).values["relevance_mass"]
    # each map's share in the complement of its old mask: 1 - its share before, by hand
    np.testing.assert_allclose(after, 1 - before, atol=1e-9)
    assert not np.allclose(before, 0.5)
    assert "Nothing to be done" in snakemake(workdir, config, "-n").stdout


def test_the_report_shows_the_config_of_the_last_run(study):
    """A key that reruns no computation (on_error) left the summary page showing the config before it."""
    workdir, _, _ = study
    results = workdir / "results"
    snakemake_ok(workdir, user_config(workdir))
    assert "on_error: fail" in (results / "report/summary.html").read_text()
    before = mtimes(results)
    snakemake_ok(workdir, user_config(workdir, on_error="skip"))
    assert "on_error: skip" in (results / "report/summary.html").read_text()
    changed = changed_since(before, results)
    assert "report/summary.html" in changed
    assert all(p.startswith("report/") for p in changed), changed  # the report's page only: no map redone
    snakemake_ok(workdir, user_config(workdir))  # as the other tests expect it


def test_a_changed_preprocessing_reruns_the_preprocessing(study):
    workdir, _, _ = study
    results = workdir / "results"
    config = user_config(workdir, preprocessing={"size": [16, 16], "channels": 1, "standardize": "tf"})
    snakemake_ok(workdir, config)
    for shard in ("00000", "00001"):
        with h5store.PreprocessedShard.open(results / f"preprocessed/shard-{shard}.h5") as f:
            assert h5store.json_attr(f.file, "preprocessing")["standardize"] == "tf"
            assert f.inputs(slice(None)).min() >= -1 and f.inputs(slice(None)).min() < 0  # [-1, 1], not minmax's [0, 1]


def test_outputs_of_samples_and_shards_the_config_no_longer_has_are_said_at_the_start(study):
    # a removed sample's overlays and a shard of an earlier shard_size stayed on disk, named like current ones,
    # without a word (a glob over heatmaps/*/shard-*.h5 counted their samples twice); they are not deleted
    workdir, _, _ = study
    results = workdir / "results"
    config = user_config(workdir, preprocessing={"size": [16, 16], "channels": 1, "standardize": "tf"})
    quiet = snakemake_ok(workdir, config, "-n")  # a dry run logs to stdout
    assert "outputs of no sample" not in quiet.stdout + quiet.stderr
    stale = [results / "overlays/gradcam/other.removed.png", results / "heatmaps/gradcam/shard-00007.h5",
             results / "oldmodel/heatmaps/gradcam/shard-00000.h5"]  # a model since removed from `models`: a folder
    (results / "oldmodel/heatmaps/gradcam").mkdir(parents=True)
    shutil.copy(results / "overlays/gradcam/other.a.png", stale[0])
    shutil.copy(results / "heatmaps/gradcam/shard-00001.h5", stale[1])
    shutil.copy(results / "heatmaps/gradcam/shard-00001.h5", stale[2])
    (results / "heatmaps/gradcam/.shard-00001.h5.abcd1234.part").write_bytes(b"")  # an interrupted write: no output
    said = snakemake_ok(workdir, config, "-n")
    log = said.stdout + said.stderr
    assert "xaipipe: 3 file(s) under results are outputs of no sample, shard or variant" in log
    assert "other.removed.png" in log and "shard-00007.h5" in log and "oldmodel/heatmaps/gradcam" in log
    assert all(path.exists() for path in stale)  # nothing deleted
    for path in stale:
        path.unlink()
    shutil.rmtree(results / "oldmodel")
    (results / "heatmaps/gradcam/.shard-00001.h5.abcd1234.part").unlink()


def test_the_demo_writes_only_into_its_folder_under_the_output(tmp_path):
    outside = {"demo": {"build": True}, "data": {"images": str(tmp_path / "mine")}, "methods": ["gc"]}
    result = snakemake(tmp_path, outside, "-n")  # a dry run reports on stdout
    assert result.returncode != 0
    assert "config key data.images" in result.stdout and "results/demo/images" in result.stdout
    model = {"demo": {"build": True}, "model": {"path": "model.keras"}, "methods": ["gc"]}
    result = snakemake(tmp_path, model, "-n")
    assert result.returncode != 0 and "config key model.path" in result.stdout
    assert not (tmp_path / "results").exists()


def test_the_demo_never_overwrites_a_file_it_did_not_write(tmp_path):
    mine = tmp_path / "results/demo/images/disk/disk_0000.png"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"a user's picture")
    result = snakemake(tmp_path, {"demo": {"build": True}, "methods": ["gc"]})
    assert result.returncode != 0
    assert "results/demo/images/disk/disk_0000.png exists but was not written by the demo" in result.stderr
    assert mine.read_bytes() == b"a user's picture"
    assert [p for p in (tmp_path / "results").rglob("*") if p.is_file()] == [mine]
