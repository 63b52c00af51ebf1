import os
import re
import sys

# The library sits beside the Snakefile: importable here and in every job (also in the
# conda environment of --use-conda, which installs only the dependencies).
sys.path.insert(0, workflow.basedir)
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [workflow.basedir, os.environ.get("PYTHONPATH")]))

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from xaipipe import workflow as xw
from xaipipe.samples import sample_path, shard_names, shard_slice
from xaipipe.outputs import EXTENSIONS, output_format


try:
    validate(config, "../schemas/config.schema.yaml")
except WorkflowError:
    problems = xw.config_errors(config, workflow.source_path("../schemas/config.schema.yaml"))
    raise WorkflowError("invalid configuration:\n  " + "\n  ".join(problems)) from None

try:
    SAMPLES = xw.sample_sheet(config)
    METHODS = xw.method_specs(config)
    N_CLASSES = xw.class_count(config, SAMPLES) if config["targets"] == "all" else None
    SPATIAL_DIMS = len(config["preprocessing"]["size"])
    OVERLAY_EXTENSION = EXTENSIONS[output_format(config["render"]["format"], SPATIAL_DIMS)]
except ValueError as error:
    raise WorkflowError(f"invalid configuration: {error}") from None

OUT = config["output"]
SHARD_SIZE = config["shard_size"]
SHARDS = shard_names(len(SAMPLES), SHARD_SIZE)
MODEL = config["model"]["path"]
IMAGES = config["data"]["images"]


wildcard_constraints:
    shard=r"\d{5}",
    method="|".join(re.escape(m) for m in METHODS),


def shard_ids(wildcards):
    return list(SAMPLES.ids[shard_slice(wildcards.shard, SHARD_SIZE)])


def shard_labels(wildcards):
    if SAMPLES.labels is None:
        return None
    return list(SAMPLES.labels[shard_slice(wildcards.shard, SHARD_SIZE)])


def shard_images(wildcards):
    image_format = config["data"]["image_format"]
    return [str(sample_path(IMAGES, sample_id, image_format)) for sample_id in shard_ids(wildcards)]


def shard_start(wildcards):
    return shard_slice(wildcards.shard, SHARD_SIZE).start


def method_params(wildcards):
    return METHODS[wildcards.method]


def overlay_files(shard):
    names = xw.overlay_names(SAMPLES, shard, SHARD_SIZE, N_CLASSES, OVERLAY_EXTENSION)
    return [f"{OUT}/overlays/{{method}}/{name.replace('{', '{{').replace('}', '}}')}" for name in names]


def heatmaps_by_method():
    return {method: [f"{OUT}/heatmaps/{method}/shard-{shard}.h5" for shard in SHARDS] for method in METHODS}


def all_outputs(wildcards):
    outputs = [f"{OUT}/predictions.tsv"]
    outputs += expand(f"{OUT}/heatmaps/{{method}}/shard-{{shard}}.h5", method=METHODS, shard=SHARDS)
    if config["demo"]["build"]:
        outputs += [f"{OUT}/evaluation/localization.tsv", f"{OUT}/evaluation/randomization.tsv"]
    for shard in SHARDS:
        outputs += expand(overlay_files(shard), method=METHODS)
    return outputs
