"""The whole Snakemake pipeline against the in-process compute it must do, and its memory.

    python -m benchmarks.pipeline [--images 1000] [--shard-size 250] [--heatmaps-jobs family|shard|variant]

On N random 224x224 RGB PNG images and an untrained ResNet50 (3 classes) saved as
``.keras``, with Grad-CAM, Grad-CAM++ and saliency: (1) the in-process compute per
image (model forward for the predictions plus the methods, batched, no I/O; the methods that
share a pass from one pass as the workflow's jobs compute them: Grad-CAM and Grad-CAM++ with
``heatmaps_jobs`` family, saliency with them with ``shard``, each alone with ``variant``), measured on a
subset; (2) ``snakemake --cores 2`` on all N images (preprocessing,
predictions, maps, overlays and report pages; the evaluation off), its wall time and the
ratio to N times (1); (3) from Snakemake's ``benchmark:`` files, each stage's
time per image and a job's time beyond its images' compute (its fixed cost, where
the job has all cores to itself);
(4) the peak memory of one heatmaps job on a shard ten times larger.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import yaml  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
METHODS = ["gradcam", "gradcam++", "saliency"]
#: The methods that the workflow computes in one job per shard from one pass (xaipipe.config.shared_pass_families).
FAMILY = ("gradcam", "gradcam++")


def make_images(folder: Path, n: int, size: int) -> None:
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for k in range(n):
        path = folder / f"img_{k:05d}.png"
        if not path.exists():
            noise = cv2.GaussianBlur(rng.integers(0, 255, (size, size, 3), dtype=np.uint8), (0, 0), 3)
            cv2.imwrite(str(path), noise)


def make_model(path: Path) -> None:
    if path.exists():
        return
    import keras

    keras.utils.set_random_seed(0)
    keras.applications.ResNet50(weights=None, input_shape=(224, 224, 3), classes=3).save(path)


def in_process_seconds_per_image(model_path: Path, folder: Path, n: int, batch: int, heatmaps_jobs: str = "family"
                                 ) -> dict[str, float]:  # fmt: skip
    """Compute per image, batched, without I/O: the forward pass and each method, the methods that share a pass
    from one pass as the workflow's jobs of ``heatmaps_jobs`` compute them (under the name of their labels joined
    by commas): ``family``, Grad-CAM and Grad-CAM++ (its CAM families); ``shard``, those two and saliency (the
    shard's one job: :func:`xaipipe.methods.shared_pass_groups`); ``variant``, each method on its own."""
    from xaipipe import methods
    from xaipipe.methods.camfamily import create_family
    from xaipipe.model import load_model, predict_batch
    from xaipipe.preprocess import Preprocessing
    from xaipipe.readers import load_image

    model = load_model(model_path)
    pre = Preprocessing(size=(224, 224), channels=3, standardize="tf")
    files = sorted(folder.glob("*.png"))[:n]
    x = np.stack([pre.model_input(load_image(f)) for f in files])
    classes = np.zeros((len(x), 1), np.int32)
    costs = {}
    jobs = {"predict": lambda b: predict_batch(model, b)}
    groups = {
        "shard": methods.shared_pass_groups([(name, {}) for name in METHODS]),
        "family": [[METHODS.index(name) for name in FAMILY]],
        "variant": [],
    }[heatmaps_jobs]
    for group in groups:
        _, family = create_family(model, [(METHODS[i], {}) for i in group])
        jobs[",".join(METHODS[i] for i in group)] = lambda b, f=family: f.explain(b, classes[: len(b)])
    for name in METHODS:
        if not any(METHODS.index(name) in group for group in groups):
            explainer = methods.create(name, model)
            jobs[name] = lambda b, e=explainer: e.explain(b, classes[: len(b)])
    for name, job in jobs.items():
        job(x[:batch])  # warm-up: compile
        start = time.perf_counter()
        for i in range(0, len(x), batch):
            job(x[i : i + batch])
        costs[name] = (time.perf_counter() - start) / len(x)
    return costs


def job_compute(costs: dict[str, float], job: str) -> float:
    """The in-process compute per image of a heatmaps job named ``job`` (its labels joined by commas): that of
    every method or family of ``costs`` whose labels are all among them."""
    labels = set(job.split(","))
    return sum(cost for name, cost in costs.items() if name != "predict" and set(name.split(",")) <= labels)


def run_snakemake(workdir: Path, config: dict, *targets: str, cores: int = 2, threads: int = 0) -> float:
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "snakemake", *targets, "--snakefile", str(REPO / "Snakefile"), "--directory",
               str(workdir), "--configfile", str(workdir / "config.yaml"), "--cores", str(cores), "--quiet"]  # fmt: skip
    if threads:
        command += ["--set-threads", f"predict={threads}", f"heatmaps={threads}", f"heatmaps_group_1={threads}"]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-3000:])
    return time.perf_counter() - start


def job_records(folder: Path) -> list[dict]:
    """Snakemake's benchmark records: seconds, peak RSS (MB), start and end (epoch seconds) of each job."""
    records = []
    for path in sorted(folder.rglob("*.tsv")):
        with open(path) as f:
            row = next(csv.DictReader(f, delimiter="\t"))
        end = path.stat().st_mtime  # Snakemake writes the record as the job ends
        records.append({"job": str(path.relative_to(folder)), "s": float(row["s"]), "max_rss": float(row["max_rss"]),
                        "start": end - float(row["s"]), "end": end})  # fmt: skip
    return records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--shard-size", type=int, default=250)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--compute-sample", type=int, default=64, help="images for the in-process measurement")
    parser.add_argument("--workdir", default="/tmp/xaipipe-bench")
    parser.add_argument("--threads", type=int, default=0, help="threads of each model job (default: the rules')")
    parser.add_argument("--heatmaps-jobs", default="family", choices=["variant", "family", "shard"],
                        help="the config's heatmaps_jobs")  # fmt: skip
    args = parser.parse_args(argv)
    workdir = Path(args.workdir)
    make_images(workdir / "images", args.images, 224)
    make_model(workdir / "resnet50.keras")
    costs = in_process_seconds_per_image(workdir / "resnet50.keras", workdir / "images", args.compute_sample,
                                         args.batch_size, args.heatmaps_jobs)  # fmt: skip
    per_image = sum(costs.values())
    print("in-process compute per image: " + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in costs.items())
          + f"; total {per_image * 1e3:.1f} ms")  # fmt: skip
    config = {
        "output": "results", "demo": {"build": False},
        "data": {"images": str(workdir / "images"), "class_subfolders": False},
        "model": {"path": str(workdir / "resnet50.keras")}, "classes": ["a", "b", "c"],
        "preprocessing": {"size": [224, 224], "channels": 3, "standardize": "tf"},
        "methods": METHODS, "shard_size": args.shard_size, "batch_size": args.batch_size,
        "heatmaps_jobs": args.heatmaps_jobs,
        # what the compute above is set against: preprocessing, predictions, maps, overlays and the report pages,
        # not the evaluation of the maps (on by default: its faithfulness curves and randomization test are
        # model passes of their own, many times the maps' here)
        "evaluation": {"metrics": []},
    }  # fmt: skip
    # results_small too: a run of another --heatmaps-jobs left it, and its record would be read as this run's
    subprocess.run(["rm", "-rf", *(str(workdir / name) for name in ("results", "results_small", ".snakemake"))],
                   check=True)  # fmt: skip
    wall = run_snakemake(workdir, config, threads=args.threads)
    compute = per_image * args.images
    print(f"snakemake --cores 2{f' --set-threads ...={args.threads}' if args.threads else ''} on {args.images} images: {wall:.1f} s wall; in-process compute {compute:.1f} s; "
          f"ratio {wall / compute:.2f} (target <= 1.15)")  # fmt: skip
    records = job_records(workdir / "results/benchmarks")
    shard_images = args.shard_size
    span = max(r["end"] for r in records) - min(r["start"] for r in records)
    busy = sum(r["s"] for r in records)
    print(f"  the jobs ran from the first's start to the last's end in {span:.1f} s of the {wall:.1f} s (Snakemake's "
          f"own start and end: {wall - span:.1f} s), {busy:.0f} job-seconds, {busy / span:.2f} jobs at a time")  # fmt: skip
    # with heatmaps_jobs: shard the predict job is the shard's one model job: predictions and every method's maps
    explains = args.heatmaps_jobs == "shard"
    stages = ("preprocess", "predict", "heatmaps", "render", "thumbnails")
    for stage in stages:
        rows = [r for r in records if r["job"].startswith(stage + "/")]
        if not rows:
            continue
        seconds = statistics.median(r["s"] for r in rows)
        line = f"  {stage:<10} {len(rows):3d} jobs, median {seconds:6.1f} s/job, {seconds / shard_images * 1e3:6.1f} ms/img"
        if explains and stage == "predict":
            line += " (and every method's maps)"
        # the job's time beyond its images' in-process compute (on all cores): its fixed cost, where a job
        # has all cores; a one-thread job also computes more slowly, while another job runs beside it
        if stage == "heatmaps":  # a job's compute: that of each method or family among its labels
            fixed = [r["s"] - job_compute(costs, r["job"].split("/")[1]) * shard_images for r in rows]
            line += f", beyond compute {statistics.median(fixed):.1f} s/job"
        if stage == "predict":
            compute = per_image if explains else costs["predict"]
            line += f", beyond compute {seconds - compute * shard_images:.1f} s/job"
        line += f", peak RSS {max(r['max_rss'] for r in rows):.0f} MB"
        print(line)
    # memory: the same heatmaps job on a shard ten times smaller must not need much less memory
    small_size = max(1, args.shard_size // 10)
    small_config = {**config, "output": "results_small", "shard_size": small_size}
    run_snakemake(workdir, small_config, "results_small/heatmaps/gradcam/shard-00000.h5")  # the job writing it
    kind = "predict" if explains else "heatmaps"
    small = job_records(workdir / "results_small/benchmarks" / kind)[0]["max_rss"]
    big = next(r for r in records if r["job"].startswith(f"{kind}/") and r["job"].endswith("/shard-00000.tsv")
               and (explains or "gradcam" in r["job"].split("/")[1].split(",")))["max_rss"]  # fmt: skip
    print(f"{kind} job (Grad-CAM's maps) peak RSS: {small:.0f} MB with {small_size} images, {big:.0f} MB with "
          f"{args.shard_size}: ratio {big / small:.2f} (target <= 1.1)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
