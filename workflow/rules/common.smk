import os
import re
import sys

# The library sits beside the Snakefile: importable here and in every job (Snakemake hands
# this process's sys.path to every script job, also in a conda environment of --use-conda,
# which installs only the dependencies; a cluster job parses this file again).
sys.path.insert(0, workflow.basedir)

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
from snakemake.utils import validate

from xaipipe import resources as xr
from xaipipe import caches as xcaches
from xaipipe import config as xc
from xaipipe import evaluate as xe
from xaipipe import h5store
from xaipipe import stages as xstages
from xaipipe.demo import check_demo_folder
from xaipipe.preprocess import Preprocessing
from xaipipe.samples import sample_path, shard_names, shard_slice
from xaipipe.writers import EXTENSIONS, output_format

try:
    validate(config, "../schemas/config.schema.yaml")
except WorkflowError:
    problems = xc.config_errors(
        config, workflow.source_path("../schemas/config.schema.yaml")
    )
    raise WorkflowError("invalid configuration:\n  " + "\n  ".join(problems)) from None

try:
    # data.images and model.path: the demo's own files or the user's
    xc.resolve_data_paths(config)
    SAMPLES = xc.sample_sheet(config)
    xc.check_sample_ids(
        SAMPLES, "data.images" if config["data"]["samples"] is None else "data.samples"
    )
    # every variant of a method (config methods[]: label, sweep), by label: its output folders
    VARIANTS = xc.method_variants(config)
    METHODS = {label: variant.params for label, variant in VARIANTS.items()}
    N_CLASSES = xc.class_count(config, SAMPLES) if config["targets"] == "all" else None
    Preprocessing.from_config(config["preprocessing"])  # its checks, before any job
    MASKS = xc.sample_masks(config, SAMPLES)  # each sample's mask file, None: no masks
    EVALUATION = xe.Settings.from_config(config["evaluation"], MASKS is not None)
    SPATIAL_DIMS = len(config["preprocessing"]["size"])
    OVERLAY_EXTENSION = EXTENSIONS[
        output_format(config["render"]["format"], SPATIAL_DIMS)
    ]
except ValueError as error:
    raise WorkflowError(f"invalid configuration: {error}") from None

OUT = config["output"]
SHARD_SIZE = config["shard_size"]
SHARDS = shard_names(len(SAMPLES), SHARD_SIZE)
MODEL = config["model"]["path"]
IMAGES = config["data"]["images"]
DEMO = xc.demo_files(OUT)  # the demo's folder and files, written only with demo.build
if config["demo"]["build"]:
    try:
        check_demo_folder(
            DEMO["folder"],
            [f"{DEMO[d]}/{i}" for d in ("images", "masks") for i in SAMPLES.ids]
            + [DEMO["model"], DEMO["metrics"]],
        )
    except ValueError as error:
        raise WorkflowError(str(error)) from None
MODEL_CHECKSUM = f"{OUT}/checksums/model.sha256"
FAILURES = f"{OUT}/failures.tsv"  # the samples skipped (on_error: skip) or warned about
EXPERIMENTS = f"{OUT}/experiments.tsv"  # every method variant with its parameters
# each variant's method and parameters, as the experiments table lists them
VARIANT_RECORDS = {
    label: {"method": v.method, "params": v.params} for label, v in VARIANTS.items()
}


def run_summary(failures):
    """The run's last line: how many samples the failures table lists as skipped and warned about."""
    line = xstages.failures_summary(failures)
    if line:
        logger.info(line)


def cache_files():
    """Every HDF5 cache of the study, with its schema."""
    files = {}
    for shard in SHARDS:
        files[f"{OUT}/preprocessed/shard-{shard}.h5"] = h5store.PREPROCESSED
        files[f"{OUT}/predictions/shard-{shard}.h5"] = h5store.PREDICTIONS
        for method in METHODS:
            files[f"{OUT}/heatmaps/{method}/shard-{shard}.h5"] = h5store.HEATMAPS
            if EVALUATION.per_map:
                files[f"{OUT}/evaluation/{method}/shard-{shard}.h5"] = (
                    h5store.EVALUATION
                )
    return files


# What modification times cannot tell (xaipipe/caches.py): a model replaced by another, also
# by an older file, reruns everything that uses it; a damaged cache is moved aside, so exactly
# that file (and what depends on it) is rebuilt. Only the process that runs the workflow acts.
if workflow.is_main_process:
    stale = xcaches.forget_stale_checksum(MODEL, MODEL_CHECKSUM)
    damaged = xcaches.move_damaged_aside(cache_files())
    for message in ([stale] if stale else []) + [message for _, message in damaged]:
        logger.warning(message)


# What every job asks a cluster for (xaipipe/resources.py has the formulas): memory and run
# time grow with the shard, the model file, the input size and the method, and with each
# --retries attempt; model-bound rules get a GPU where resources.gpu says there are some.
INPUT_SIZE = config["preprocessing"]["size"]
CHANNELS = config["preprocessing"]["channels"]
MAPS_PER_SAMPLE = N_CLASSES or 1
GPU = 1 if config["resources"]["gpu"] else 0
MODEL_THREADS = config["resources"]["threads"]
RUNTIME_SCALE = config["resources"]["runtime_scale"]
# the model jobs' run-time estimates are calibrated on 2-thread jobs: fewer threads, longer
MODEL_RUNTIME_SCALE = RUNTIME_SCALE * xr.thread_factor(MODEL_THREADS)


def predict_mem_mb(wildcards, attempt):
    return xr.model_job_mem_mb(
        SHARD_SIZE,
        xr.model_mb(MODEL),
        INPUT_SIZE,
        CHANNELS,
        config["batch_size"],
        attempt=attempt,
    )


def predict_runtime(wildcards, attempt):
    return xr.model_job_runtime(
        SHARD_SIZE,
        xr.model_mb(MODEL),
        INPUT_SIZE,
        attempt=attempt,
        scale=MODEL_RUNTIME_SCALE,
    )


def heatmaps_mem_mb(wildcards, attempt):
    method = wildcards.method  # a variant's label
    return xr.model_job_mem_mb(
        SHARD_SIZE,
        xr.model_mb(MODEL),
        INPUT_SIZE,
        CHANNELS,
        config["batch_size"],
        VARIANTS[method].method,
        METHODS[method],
        attempt,
    )


def heatmaps_runtime(wildcards, attempt, n_samples=None):
    method = wildcards.method
    return xr.model_job_runtime(
        n_samples or SHARD_SIZE,
        xr.model_mb(MODEL),
        INPUT_SIZE,
        VARIANTS[method].method,
        METHODS[method],
        MAPS_PER_SAMPLE,
        attempt,
        MODEL_RUNTIME_SCALE,
    )


def demo_folder(wildcards, output):
    """The demo's own folder, which holds every output of a demo rule (marked as the demo's)."""
    return os.path.commonpath(list(output))


def report_folder(wildcards, output):
    """The report's folder, which the pictures' paths are relative to (from the rule's outputs)."""
    if "gallery" in output.keys():
        return os.path.dirname(output.gallery)
    return os.path.dirname(
        os.path.dirname(output.views)
    )  # {report}/shards/shard-N.json


def demo_data_mem_mb(wildcards, attempt):
    return 1000 * attempt


def demo_data_runtime(wildcards, attempt):
    return 10 * attempt


def demo_model_mem_mb(wildcards, attempt):
    return 3000 * attempt


def demo_model_runtime(wildcards, attempt):
    return int(20 * attempt * RUNTIME_SCALE)


def randomization_runtime(wildcards, attempt):
    # the maps of the trained model and of each stage of the cascade, for sanity_samples samples
    n_maps = (1 + EVALUATION.sanity_stages) * EVALUATION.sanity_samples
    return heatmaps_runtime(wildcards, attempt, n_maps)


def evaluation_mem_mb(wildcards, attempt):
    # the perturbed copies go through the model like predictions, COPIES_PER_CALL per call
    return xr.model_job_mem_mb(
        SHARD_SIZE,
        xr.model_mb(MODEL),
        INPUT_SIZE,
        CHANNELS,
        xe.COPIES_PER_CALL,
        attempt=attempt,
    )


def evaluation_runtime(wildcards, attempt):
    road = sum(xe.is_road_curve(name, EVALUATION) for name in EVALUATION.per_map)
    return xr.evaluation_job_runtime(
        SHARD_SIZE,
        xr.model_mb(MODEL),
        INPUT_SIZE,
        sum(name in xe.CURVES for name in EVALUATION.per_map),
        road,
        EVALUATION.steps,
        MAPS_PER_SAMPLE,
        attempt,
        MODEL_RUNTIME_SCALE,
    )


def thumbnails_runtime(wildcards, attempt):
    # one picture per sample and map (three for volumes), each about as costly as a rendered overlay
    return xr.light_job_runtime(
        SHARD_SIZE,
        INPUT_SIZE,
        1 + len(METHODS) * MAPS_PER_SAMPLE,
        attempt,
        RUNTIME_SCALE,
    )


def light_mem_mb(wildcards, attempt):
    return xr.light_job_mem_mb(SHARD_SIZE, INPUT_SIZE, CHANNELS, attempt)


def preprocess_runtime(wildcards, attempt):
    return xr.light_job_runtime(SHARD_SIZE, INPUT_SIZE, 1, attempt, RUNTIME_SCALE)


def render_runtime(wildcards, attempt):
    return xr.light_job_runtime(
        SHARD_SIZE, INPUT_SIZE, MAPS_PER_SAMPLE, attempt, RUNTIME_SCALE
    )


# Merging tables is cheap: run it where snakemake runs, never as a cluster job
# (the demo's evaluation tables: evaluate.smk).
localrules:
    predictions_table,
    model_checksum,
    failures_table,


wildcard_constraints:
    shard=r"\d{5}",
    method="|".join(re.escape(m) for m in METHODS),


def shard_ids(wildcards):
    return list(SAMPLES.ids[shard_slice(wildcards.shard, SHARD_SIZE)])


def shard_labels(wildcards):
    if SAMPLES.labels is None:
        return None
    return list(SAMPLES.labels[shard_slice(wildcards.shard, SHARD_SIZE)])


def sample_file(sample_id):
    return str(sample_path(IMAGES, sample_id, config["data"]["image_format"]))


def shard_images(wildcards):
    return [sample_file(sample_id) for sample_id in shard_ids(wildcards)]


def shard_start(wildcards):
    return shard_slice(wildcards.shard, SHARD_SIZE).start


def method_params(wildcards):
    return METHODS[wildcards.method]


def method_name(wildcards):
    """The canonical method of the variant ``{method}`` (a label)."""
    return VARIANTS[wildcards.method].method


def overlay_files(shard):
    names = xc.overlay_names(SAMPLES, shard, SHARD_SIZE, N_CLASSES, OVERLAY_EXTENSION)
    return [
        f"{OUT}/overlays/{{method}}/{name.replace('{', '{{').replace('}', '}}')}"
        for name in names
    ]


def shard_mask_paths(wildcards):
    """The shard's mask files (None where a sample has none), for the evaluation job."""
    return list(MASKS[shard_slice(wildcards.shard, SHARD_SIZE)])


def shard_mask_inputs(wildcards):
    """The shard's mask files that exist (or that the demo writes): a newer one reruns its shard.

    A mask named in data.mask_column that is missing is no input: the evaluation job names it
    under the error policy instead of Snakemake refusing the whole run.
    """
    if MASKS is None or not EVALUATION.localization:
        return []
    paths = [p for p in shard_mask_paths(wildcards) if p is not None]
    return paths if config["demo"]["build"] else [p for p in paths if os.path.isfile(p)]


def evaluation_by_method():
    """Every evaluation file, method by method (each method's shards in order)."""
    return [
        f"{OUT}/evaluation/{method}/shard-{shard}.h5"
        for method in METHODS
        for shard in SHARDS
    ]


def sanity_shards(kind):
    """The first shards, enough to hold evaluation.sanity_samples samples."""
    n = -(-EVALUATION.sanity_samples // SHARD_SIZE)
    return [f"{OUT}/{kind}/shard-{shard}.h5" for shard in SHARDS[:n]]


EVALUATION_PLOTS = [
    f"{OUT}/evaluation/{name}.{extension}"
    for name in xe.plot_names(EVALUATION, len(METHODS))
    for extension in ("png", "svg")
]


def heatmaps_by_method():
    """Every heatmaps file, method by method (each method's shards in order)."""
    return [
        f"{OUT}/heatmaps/{method}/shard-{shard}.h5"
        for method in METHODS
        for shard in SHARDS
    ]


def all_outputs(wildcards):
    outputs = [f"{OUT}/predictions.tsv", FAILURES, EXPERIMENTS]
    # the caches and the model's checksum too: one that is missing (deleted, moved aside as
    # damaged, or removed as stale) is rebuilt, not only when a later output needs it
    outputs.append(MODEL_CHECKSUM)
    outputs += expand(f"{OUT}/preprocessed/shard-{{shard}}.h5", shard=SHARDS)
    outputs += expand(f"{OUT}/predictions/shard-{{shard}}.h5", shard=SHARDS)
    outputs += expand(
        f"{OUT}/heatmaps/{{method}}/shard-{{shard}}.h5", method=METHODS, shard=SHARDS
    )
    if EVALUATION.metrics:
        outputs += evaluation_by_method() if EVALUATION.per_map else []
        outputs += [f"{OUT}/evaluation/summary.tsv", f"{OUT}/evaluation/agreement.tsv"]
        outputs.append(f"{OUT}/evaluation/comparison.tsv")
        outputs += EVALUATION_PLOTS
    for shard in SHARDS:
        outputs += expand(overlay_files(shard), method=METHODS)
    outputs.append(f"{OUT}/report/index.html")
    return outputs
