import json
import math
import os
import re
import sys
from types import SimpleNamespace

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
from xaipipe.samples import sample_path, shard_names, shard_slice, unread_files_warning
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
    xc.check_sample_files(config, SAMPLES)
    # the study's models (config models, or the single model), each with its own output folder
    # and every variant of the methods (config methods[]: label, sweep) by label
    MODELS = xc.model_specs(config)
    # the files of the modules that register the models' custom layers (model.imports), in the models' checksums
    MODEL_IMPORTS = xc.model_import_files(config)
    xc.check_model_files(
        MODELS,
        SAMPLES,
        bool(config["models"]),
        xc.folder_classes(config, SAMPLES),
        config["demo"]["build"],
    )
    N_CLASSES = xc.class_count(config, SAMPLES) if config["targets"] == "all" else None
    Preprocessing.from_config(config["preprocessing"])  # its checks, before any job
    MASKS = xc.sample_masks(config, SAMPLES)  # each sample's mask file, None: no masks
    EVALUATION = xe.Settings.from_config(config["evaluation"], MASKS is not None)
    SPATIAL_DIMS = len(config["preprocessing"]["size"])
    OVERLAY_EXTENSION = EXTENSIONS[
        output_format(config["render"]["format"], SPATIAL_DIMS)
    ]
    # the samples that get overlays (render.max_per_class), decided from their labels: the
    # overlays are declared outputs, known before any prediction exists
    RENDERED = xc.rendered_samples(SAMPLES, config["render"]["max_per_class"])
except ValueError as error:
    raise WorkflowError(f"invalid configuration: {error}") from None

OUT = config["output"]
# the config as the report's summary page shows it (a param of its rule: json, keys sorted)
CONFIG_TEXT = json.dumps(config, sort_keys=True, default=str)


def config_text(wildcards):
    """:data:`CONFIG_TEXT`, through a function: a string param would be read for wildcards ({param} of a label
    template)."""
    return CONFIG_TEXT


SHARD_SIZE = config["shard_size"]
SHARDS = shard_names(len(SAMPLES), SHARD_SIZE)
IMAGES = config["data"]["images"]
# Every model rule's outputs lie under {root}, a model's output folder (the output folder
# itself for the single model); its preprocessed shards under {pre}/preprocessed, shared between
# the models with equal preprocessing ({pre}: the output folder, or the first such model's).
BY_ROOT = {spec.folder: spec for spec in MODELS.values()}
PREPROCESSED = {
    os.path.dirname(spec.preprocessed): spec.preprocessing for spec in MODELS.values()
}
LABELS = list(
    dict.fromkeys(label for spec in MODELS.values() for label in spec.variants)
)
# The variants whose maps one heatmaps job per shard computes, each into its own file, as config
# heatmaps_jobs says (xaipipe.config.heatmaps_jobs; by default each CAM family - Grad-CAM, Grad-CAM++,
# HiResCAM, XGradCAM, LayerCAM with the same layer, score and precision, no noise - from one pass):
# rules heatmaps_group_N (heatmaps.smk); every other variant: rule heatmaps. With `shard`, the one job
# that also predicts the shard is rule predict (PREDICTS; predict.smk).
HEATMAPS_JOBS = xc.heatmaps_jobs(MODELS, config["heatmaps_jobs"])
ALONE = [
    label for label in LABELS if not any(label in job.labels for job in HEATMAPS_JOBS)
]
PREDICTS = next((job for job in HEATMAPS_JOBS if job.predicts), None)
# ... and the evaluation of each variant's maps, where there is one (rule evaluate has then no job)
EVALUATES = bool(PREDICTS and EVALUATION.per_map)
DEMO = xc.demo_files(OUT)  # the demo's folder and files, written only with demo.build
if config["demo"]["build"]:
    try:
        check_demo_folder(
            DEMO["folder"],
            [f"{DEMO[d]}/{i}" for d in ("images", "masks") for i in SAMPLES.ids]
            + [DEMO["model"], DEMO["metrics"]]
            + [spec.path for spec in MODELS.values()],
        )
    except ValueError as error:
        raise WorkflowError(str(error)) from None
# every model and method variant with its parameters
EXPERIMENTS = f"{OUT}/{xcaches.STUDY_MARK}"  # at every study's root: the orphan check tells studies by it
# each model's variants with their method and parameters, as the experiments table lists them
EXPERIMENT_RECORDS = {
    name: {
        "path": spec.path,
        "variants": {
            label: {"method": v.method, "params": v.params}
            for label, v in spec.variants.items()
        },
    }
    for name, spec in MODELS.items()
}


def spec(wildcards):
    """The model whose output folder is the job's {root}."""
    return BY_ROOT[wildcards.root]


def model_name(wildcards):
    return spec(wildcards).name


def variant_methods(wildcards):
    """The model's variants, label -> canonical method, in the order of LABELS."""
    return {
        label: variant.method for label, variant in spec(wildcards).variants.items()
    }


def model_path(wildcards):
    return spec(wildcards).path


def model_preprocessing(wildcards):
    return spec(wildcards).preprocessing


def preprocessed_shard(wildcards):
    return f"{spec(wildcards).preprocessed}/shard-{wildcards.shard}.h5"


def preprocessed_shard_of(shard):
    """An input function: the preprocessed file of ``shard`` that the job's model reads."""

    def path(wildcards):
        return f"{spec(wildcards).preprocessed}/shard-{shard}.h5"

    return path


def demo_seed(wildcards):
    return int(wildcards.seed)


def run_summary():
    """The run's last lines: how many samples each model's failures table lists as skipped and warned about."""
    for root in BY_ROOT:
        line = xstages.failures_summary(f"{root}/failures.tsv")
        if line:
            logger.info(line if len(MODELS) == 1 else f"{root}: {line}")


def cache_files():
    """Every HDF5 cache of the study, with its schema."""
    files = {}
    for shard in SHARDS:
        for pre in PREPROCESSED:
            files[f"{pre}/preprocessed/shard-{shard}.h5"] = h5store.PREPROCESSED
        for root, model in BY_ROOT.items():
            files[f"{root}/predictions/shard-{shard}.h5"] = h5store.PREDICTIONS
            for method in model.variants:
                files[f"{root}/heatmaps/{method}/shard-{shard}.h5"] = h5store.HEATMAPS
                if EVALUATION.per_map:
                    files[f"{root}/evaluation/{method}/shard-{shard}.h5"] = (
                        h5store.EVALUATION
                    )
    return files


# What modification times cannot tell (xaipipe/caches.py): a model replaced by another, also
# by an older file, reruns everything that uses it; a damaged cache is moved aside, so exactly
# that file (and what depends on it) is rebuilt. Only the process that runs the workflow acts,
# and a dry run (snakemake -n) only says what a real run would remove: it removed the caches,
# which were then lost also where the model or sample was put back.
DRY_RUN = bool(getattr(workflow.output_settings, "dryrun", False))
if workflow.is_main_process:
    stale = [
        xcaches.forget_stale_checksum(
            m.path, f"{m.folder}/checksums/model.sha256", MODEL_IMPORTS, DRY_RUN
        )
        for m in MODELS.values()
    ]
    stale += [xc.linear_head_warning(m.path) for m in MODELS.values()]
    stale += [
        xc.multi_label_warning(m.path, config["targets"]) for m in MODELS.values()
    ]
    stale.append(xc.folder_classes_warning(config, SAMPLES))
    stale.append(xc.missing_masks_warning(config, SAMPLES, MASKS))
    if config["data"]["samples"] is None and not config["demo"]["build"]:
        stale.append(unread_files_warning(config["data"]["images"]))
    damaged = xcaches.move_damaged_aside(cache_files(), DRY_RUN)
    for message in [m for m in stale if m] + [message for _, message in damaged]:
        logger.warning(message)


# What every job asks a cluster for (xaipipe/resources.py has the formulas): memory and run
# time grow with the shard, the model file, the input size and the method, and with each
# --retries attempt; model-bound rules get a GPU where resources.gpu says there are some.
# light jobs: the largest input of the study's models; model jobs: their model's (model_input)
INPUT_SIZE = max((p["size"] for p in PREPROCESSED.values()), key=math.prod)
CHANNELS = max(p["channels"] for p in PREPROCESSED.values())
MAPS_PER_SAMPLE = N_CLASSES or 1
GPU = 1 if config["resources"]["gpu"] else 0
MODEL_THREADS = config["resources"]["threads"]
RUNTIME_SCALE = config["resources"]["runtime_scale"]
# the model jobs' run-time estimates are calibrated on 2-thread jobs: fewer threads, longer
MODEL_RUNTIME_SCALE = RUNTIME_SCALE * xr.thread_factor(MODEL_THREADS)


def model_input(wildcards):
    """(model file size in MB, input size, channels) of the job's model."""
    model = spec(wildcards)
    size = model.preprocessing["size"]
    return xr.model_mb(model.path), size, model.preprocessing["channels"]


def predict_mem_mb(wildcards, attempt):
    mem_mb = xr.model_job_mem_mb(
        SHARD_SIZE,
        *model_input(wildcards),
        config["batch_size"],
        attempt=attempt,
    )
    if PREDICTS:
        mem_mb = max(mem_mb, job_mem_mb(PREDICTS)(wildcards, attempt))
    if EVALUATES:
        mem_mb = max(mem_mb, evaluation_mem_mb(wildcards, attempt))
    return mem_mb


def predict_runtime(wildcards, attempt):
    runtime = xr.model_job_runtime(
        SHARD_SIZE,
        *model_input(wildcards)[:2],
        attempt=attempt,
        scale=MODEL_RUNTIME_SCALE,
    )
    if PREDICTS:
        runtime += job_runtime(PREDICTS)(wildcards, attempt)
    if EVALUATES:
        runtime += len(PREDICTS.labels) * evaluation_runtime(wildcards, attempt)
    return runtime


def heatmaps_mem_mb(wildcards, attempt):
    variant = spec(wildcards).variants[wildcards.method]  # {method}: a variant's label
    return xr.model_job_mem_mb(
        SHARD_SIZE,
        *model_input(wildcards),
        config["batch_size"],
        variant.method,
        variant.params,
        attempt,
    )


def heatmaps_runtime(wildcards, attempt, n_samples=None):
    variant = spec(wildcards).variants[wildcards.method]
    return xr.model_job_runtime(
        n_samples or SHARD_SIZE,
        *model_input(wildcards)[:2],
        variant.method,
        variant.params,
        MAPS_PER_SAMPLE,
        attempt,
        MODEL_RUNTIME_SCALE,
    )


def job_members(job):
    """An input function: each member of the heatmaps ``job`` in the job's model, as its script takes them
    (label, canonical method, parameters), in the order of the rule's outputs."""

    def members(wildcards):
        variants = spec(wildcards).variants
        return [
            {
                "label": label,
                "method": variants[label].method,
                "params": variants[label].params,
            }
            for label in job.labels
        ]

    return members


def job_mem_mb(job):
    """An input function: the memory of the heatmaps ``job``, its costliest member's (one at a time)."""

    def mem_mb(wildcards, attempt):
        variants = spec(wildcards).variants
        return max(
            xr.model_job_mem_mb(
                SHARD_SIZE,
                *model_input(wildcards),
                config["batch_size"],
                variants[label].method,
                variants[label].params,
                attempt,
            )
            for label in job.labels
        )

    return mem_mb


def job_runtime(job):
    """An input function: the run time of the heatmaps ``job`` (a CAM family's: one pass and a share per member,
    xaipipe/resources.py)."""

    def runtime(wildcards, attempt):
        variants = spec(wildcards).variants
        return xr.group_job_runtime(
            SHARD_SIZE,
            *model_input(wildcards)[:2],
            [(variants[label].method, variants[label].params) for label in job.labels],
            MAPS_PER_SAMPLE,
            attempt,
            MODEL_RUNTIME_SCALE,
        )

    return runtime


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
        *model_input(wildcards),
        xe.COPIES_PER_CALL,
        attempt=attempt,
    )


def evaluation_runtime(wildcards, attempt):
    road = sum(xe.is_road_curve(name, EVALUATION) for name in EVALUATION.per_map)
    return xr.evaluation_job_runtime(
        SHARD_SIZE,
        *model_input(wildcards)[:2],
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
        1 + len(spec(wildcards).variants) * MAPS_PER_SAMPLE,
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


def labels_regex(labels):
    """A wildcard constraint that matches exactly ``labels`` (none: it matches nothing)."""
    return "|".join(re.escape(label) for label in labels) or "(?!)"


# Merging tables is cheap: run it where snakemake runs, never as a cluster job
# (the demo's evaluation tables: evaluate.smk).
localrules:
    predictions_table,
    model_checksum,
    failures_table,


wildcard_constraints:
    shard=r"\d{5}",
    method=labels_regex(LABELS),
    root="|".join(re.escape(root) for root in BY_ROOT),
    pre="|".join(re.escape(pre) for pre in PREPROCESSED),


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


# A sample file replaced by other content with an older date (mv, cp -p, rsync -a) is invisible to
# modification times: its shard, whose record of the samples' content no longer matches, is removed
# and rebuilt with all that depends on it (xaipipe/caches.py). After the damaged caches are moved aside.
if workflow.is_main_process:
    STATS = xcaches.StatCache()  # the samples' and the masks' file stats, read once
    for message in xcaches.forget_changed_sources(
        [
            f"{pre}/preprocessed/shard-{shard}.h5"
            for pre in PREPROCESSED
            for shard in SHARDS
        ],
        sample_file,
        STATS,
        DRY_RUN,
    ):
        logger.warning(message)
    # the same for the masks: an evaluation records its shard's mask content (mask_sha256)
    if MASKS is not None and EVALUATION.localization and EVALUATION.per_map:
        evaluated = {
            f"{root}/evaluation/{method}/shard-{shard}.h5": MASKS[
                shard_slice(shard, SHARD_SIZE)
            ]
            for root, model in BY_ROOT.items()
            for method in model.variants
            for shard in SHARDS
        }
        for message in xcaches.forget_changed_masks(evaluated, STATS, DRY_RUN):
            logger.warning(message)


def shard_start(wildcards):
    return shard_slice(wildcards.shard, SHARD_SIZE).start


def preprocessing_of_shards(wildcards):
    """The preprocessing settings of the shards in the job's {pre} folder."""
    return PREPROCESSED[wildcards.pre]


def method_params(wildcards):
    return spec(wildcards).variants[wildcards.method].params


def method_name(wildcards):
    """The canonical method of the variant ``{method}`` (a label)."""
    return spec(wildcards).variants[wildcards.method].method


def rendered_rows(shard):
    """The rows of ``shard`` whose samples get overlays (render.max_per_class)."""
    return xc.rendered_rows(RENDERED, shard, SHARD_SIZE)


def overlay_names(shard):
    """The overlays of one shard, by file name (in the archive, with render.archive)."""
    return xc.overlay_names(
        SAMPLES, shard, SHARD_SIZE, N_CLASSES, OVERLAY_EXTENSION, rendered_rows(shard)
    )


def overlay_files(shard):
    """The overlay files of one shard: patterns of {root} and {method}; with render.archive
    the shard's one zip file; none where render.max_per_class keeps none of its samples.
    """
    names = overlay_names(shard)
    if names and config["render"]["archive"]:
        return [f"{{root}}/overlays/{{method}}/{xc.overlay_archive_name(shard)}"]
    return [
        f"{{root}}/overlays/{{method}}/{name.replace('{', '{{').replace('}', '}}')}"
        for name in names
    ]


def archive_members(shard):
    """The names of the overlays in the shard's zip file with render.archive; None without."""
    return overlay_names(shard) if config["render"]["archive"] else None


# the shards with overlays to draw: one render job each per model and method
RENDER_SHARDS = [shard for shard in SHARDS if rendered_rows(shard)]
# what changes how an overlay looks: a new max_per_class or archive redraws no kept overlay,
# nor the report's pictures (drawn from the heatmaps files)
DRAWING = {
    key: config["render"][key] for key in ("overlay", "alpha", "colormap", "format")
}


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


def by_method(kind):
    """An input function: every file of ``kind`` (heatmaps, evaluation) of the job's model,
    method by method (each method's shards in order); none where the evaluation is off.
    """

    def files(wildcards):
        if kind == "evaluation" and not EVALUATION.per_map:
            return []
        return [
            f"{wildcards.root}/{kind}/{method}/shard-{shard}.h5"
            for method in LABELS
            for shard in SHARDS
        ]

    return files


def shard_files(kind):
    """An input function: every shard file of the job's model (``kind``: preprocessed or
    predictions).
    """

    def files(wildcards):
        folder = (
            spec(wildcards).preprocessed
            if kind == "preprocessed"
            else f"{wildcards.root}/{kind}"
        )
        return [f"{folder}/shard-{shard}.h5" for shard in SHARDS]

    return files


# the evaluation's plots of a model: patterns of {root}
EVALUATION_PLOTS = [
    f"{{root}}/evaluation/{name}.{extension}"
    for name in xe.plot_names(EVALUATION, len(LABELS))
    for extension in ("png", "svg")
]


def plot_stems(wildcards):
    """The evaluation plots of the job's model: name -> path without extension."""
    return {
        name: f"{wildcards.root}/evaluation/{name}"
        for name in xe.plot_names(EVALUATION, len(LABELS))
    }


COMPARISON_PLOTS = (
    [f"{OUT}/evaluation/comparison.{extension}" for extension in ("png", "svg")]
    if len(MODELS) > 1
    else []
)


def comparison_stem(wildcards, output):
    """The comparison plots' path without extension (from the rule's outputs)."""
    return os.path.splitext(output.plots[0])[0] if output.plots else None


def summaries(wildcards):
    """Every model's evaluation summary, in the order of MODELS."""
    return [f"{model.folder}/evaluation/summary.tsv" for model in MODELS.values()]


def all_outputs(wildcards):
    outputs = [EXPERIMENTS]
    if EVALUATION.metrics:
        outputs += [f"{OUT}/evaluation/comparison.tsv", *COMPARISON_PLOTS]
    outputs += expand(
        "{pre}/preprocessed/shard-{shard}.h5", pre=PREPROCESSED, shard=SHARDS
    )
    for root in BY_ROOT:
        w = SimpleNamespace(root=root)
        outputs += [f"{root}/predictions.tsv", f"{root}/failures.tsv"]
        # the caches and the model's checksum too: one that is missing (deleted, moved aside as
        # damaged, or removed as stale) is rebuilt, not only when a later output needs it
        outputs.append(f"{root}/checksums/model.sha256")
        outputs += shard_files("predictions")(w)
        outputs += by_method("heatmaps")(w)
        if EVALUATION.metrics:
            outputs += by_method("evaluation")(w)
            outputs += [
                f"{root}/evaluation/{name}.tsv" for name in ("summary", "agreement")
            ]
            outputs += [p.format(root=root) for p in EVALUATION_PLOTS]
        for shard in SHARDS:
            outputs += expand(overlay_files(shard), root=root, method=LABELS)
        outputs.append(f"{root}/report/index.html")
    if len(MODELS) > 1:
        outputs.append(f"{OUT}/report/index.html")  # the study's entry page
    return outputs
