"""What each workflow job asks a cluster for: memory, run time and GPUs, in one place.

The rules in ``workflow/rules/`` call these functions (through ``common.smk``) so that
SLURM, or any other Snakemake executor, places every job on a node that fits it:

- **memory** (``mem_mb``) is bounded by a *batch*, not by the shard: every stage
  streams its shard batch by batch, so a job holds the Python/TensorFlow runtime, the
  model (a few times its file size: weights, the logits copy, gradient graphs) and the
  activations of one model call (``batch_size`` samples; for integrated gradients and
  the perturbation methods the method's own ``chunk_size`` of path points or perturbed
  copies), plus a small per-sample term for
  the shard's ids, classes and scores;
- **run time** (``runtime``, minutes) grows with the shard: a fixed start-up cost
  (Snakemake, TensorFlow, loading the model) plus, per sample, the method's number of
  model passes times the cost of one pass, which grows with the model's size and the
  input's voxels; twice that as a margin, since a job that runs over is killed;
- each method's passes per sample, the rows of its model call and their defaults come
  from the method registry (:mod:`xaipipe.methods`), which the methods read too;
- both grow with Snakemake's ``attempt``: a job that SLURM kills for running out of
  memory or time comes back under ``--retries`` with two, three, ... times the request.

Nothing here imports TensorFlow: the functions run when Snakemake builds the job graph.
The constants are deliberately generous estimates, calibrated on the demo's measurements
(README, "Scale") and on a ResNet50 at 224x224; ``resources.runtime_scale`` in the config
scales every run time for slower or faster nodes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from xaipipe import methods

#: Memory of a Python process with Snakemake's job step and TensorFlow imported (MB).
MODEL_BASE_MB = 1500
#: Memory of a job that uses no model (preprocessing, rendering), MB.
LIGHT_BASE_MB = 1000
#: Model memory as a multiple of its file size (weights, the logits copy, gradient graphs).
MODEL_FACTOR = 4
#: Activation memory per sample of a model call, as a multiple of the sample's input size:
#: forward only (predictions, occlusion, LIME) and forward + backward (gradient methods).
FORWARD_ACTIVATIONS = 50
GRADIENT_ACTIVATIONS = 150
#: Per sample of the shard (ids, classes, scores, HDF5 buffers), as a multiple of the input size.
SHARD_FACTOR = 2
#: Size assumed for a model file that does not exist yet (the demo's, before it is trained), MB.
UNKNOWN_MODEL_MB = 100

#: Fixed cost of a job (scheduling, Snakemake, TensorFlow import, loading the model), minutes.
FIXED_MINUTES = 2
#: Per-sample overhead of batching, HDF5 reads and writes (seconds).
SAMPLE_SECONDS = 0.05
#: Cost of one model pass of one sample: at least this much, seconds ...
PASS_SECONDS_MIN = 2.5e-4
#: ... or this many seconds per MB of model file and per million input voxels (CPU).
PASS_SECONDS_PER_MB_MVOX = 0.01
#: Run time margin: a job that exceeds its request is killed.
RUNTIME_MARGIN = 2.0
#: Threads of the jobs the run-time constants were measured on.
CALIBRATION_THREADS = 2


def model_mb(path: str | os.PathLike) -> float:
    """Size of the model file in MB (``UNKNOWN_MODEL_MB`` while it does not exist)."""
    try:
        return os.path.getsize(path) / 1e6
    except OSError:
        return UNKNOWN_MODEL_MB


def input_mb(size: Sequence[int], channels: int) -> float:
    """Size of one model input (float32) in MB."""
    return math.prod(size) * channels * 4 / 1e6


def passes_per_sample(method: str, params: Mapping[str, Any], size: Sequence[int]) -> float:
    """Model passes (a forward and backward pass counted as 3) one target of one sample costs with ``method``."""
    return methods.passes_per_sample(method, params, size)


def model_chunk(method: str | None, params: Mapping[str, Any], batch_size: int) -> tuple[int, int]:
    """Rows per model call and the activation factor of ``method`` (None: predictions)."""
    if method is None:
        return batch_size, FORWARD_ACTIVATIONS
    rows, gradients = methods.model_chunk(method, params, batch_size)
    return rows, GRADIENT_ACTIVATIONS if gradients else FORWARD_ACTIVATIONS


def model_job_mem_mb(
    shard_size: int,
    model_file_mb: float,
    size: Sequence[int],
    channels: int,
    batch_size: int,
    method: str | None = None,
    params: Mapping[str, Any] | None = None,
    attempt: int = 1,
) -> int:
    """Memory (MB) of a job that runs the model on one shard (``method`` None: predictions)."""
    sample = input_mb(size, channels)
    chunk, activations = model_chunk(method, params or {}, batch_size)
    mb = MODEL_BASE_MB + MODEL_FACTOR * model_file_mb + chunk * sample * activations + shard_size * sample * SHARD_FACTOR
    return int(math.ceil(mb * attempt / 100) * 100)


def model_job_runtime(
    shard_size: int,
    model_file_mb: float,
    size: Sequence[int],
    method: str | None = None,
    params: Mapping[str, Any] | None = None,
    targets: int = 1,
    attempt: int = 1,
    scale: float = 1.0,
) -> int:
    """Run time (minutes) of a job that runs the model on one shard (``method`` None: predictions)."""
    passes = 1 if method is None else passes_per_sample(method, params or {}, size) * targets
    return _model_runtime(shard_size, model_file_mb, size, passes, attempt, scale)


#: What each member of a CAM family beyond the first adds to the family's one pass, as a share of it: its own
#: reduction, upsampling and normalization (the five together measured 1.04x Grad-CAM alone on a ResNet50,
#: 1.89x on a small 3D CNN whose pass takes a few ms; README, "Scale").
FAMILY_MEMBER_SHARE = 0.25


def group_job_runtime(
    shard_size: int,
    model_file_mb: float,
    size: Sequence[int],
    members: Sequence[tuple[str, Mapping[str, Any]]],
    targets: int = 1,
    attempt: int = 1,
    scale: float = 1.0,
) -> int:
    """Run time (minutes) of a heatmaps job of several variants (``members``: method, parameters) in one process
    (:func:`xaipipe.stages.compute_heatmaps_group_shard`): for each CAM family among them (one forward and
    backward pass) its costliest member's passes plus :data:`FAMILY_MEMBER_SHARE` of them for each other
    member, every other member's own passes, and the fixed cost of a model job once."""
    groups = methods.shared_pass_groups(members)
    grouped = {index for group in groups for index in group}
    passes = sum(_family_passes(size, [members[i] for i in group]) for group in groups)
    passes += sum(passes_per_sample(*member, size) for i, member in enumerate(members) if i not in grouped)
    return _model_runtime(shard_size, model_file_mb, size, passes * targets, attempt, scale)


def _family_passes(size: Sequence[int], members: Sequence[tuple[str, Mapping[str, Any]]]) -> float:
    one = max(passes_per_sample(method, params, size) for method, params in members)
    return one * (1 + FAMILY_MEMBER_SHARE * (len(members) - 1))


def _model_runtime(
    shard_size: int, model_file_mb: float, size: Sequence[int], passes: float, attempt: int, scale: float
) -> int:
    """Run time (minutes) of a model job on one shard whose samples cost ``passes`` model passes each."""
    per_pass = max(PASS_SECONDS_MIN, PASS_SECONDS_PER_MB_MVOX * model_file_mb * math.prod(size) / 1e6)
    seconds = shard_size * (SAMPLE_SECONDS + passes * per_pass)
    return int(math.ceil((FIXED_MINUTES + RUNTIME_MARGIN * seconds / 60) * attempt * scale))


#: ROAD's imputation of one perturbed copy (a sparse solve on the CPU): seconds per million voxels, at least ...
ROAD_SECONDS_PER_MVOX = 4.0
ROAD_SECONDS_MIN = 0.005


def evaluation_job_runtime(
    shard_size: int,
    model_file_mb: float,
    size: Sequence[int],
    curves: int,
    road_curves: int,
    steps: int,
    targets: int = 1,
    attempt: int = 1,
    scale: float = 1.0,
) -> int:
    """Run time (minutes) of evaluating one method's maps of one shard.

    ``curves`` faithfulness curves per map, each ``steps + 1`` forward passes, of which
    ``road_curves`` also impute every copy (:data:`ROAD_SECONDS_PER_MVOX`).
    """
    per_pass = max(PASS_SECONDS_MIN, PASS_SECONDS_PER_MB_MVOX * model_file_mb * math.prod(size) / 1e6)
    road = max(ROAD_SECONDS_MIN, ROAD_SECONDS_PER_MVOX * math.prod(size) / 1e6)
    copies = steps + 1
    per_map = SAMPLE_SECONDS + curves * copies * per_pass + road_curves * copies * road
    seconds = shard_size * targets * per_map
    return int(math.ceil((FIXED_MINUTES + RUNTIME_MARGIN * seconds / 60) * attempt * scale))


def thread_factor(threads: int) -> float:
    """How much longer a model job with ``threads`` threads runs than the calibration's (never less than 1)."""
    return max(1.0, CALIBRATION_THREADS / threads)


def light_job_mem_mb(shard_size: int, size: Sequence[int], channels: int, attempt: int = 1) -> int:
    """Memory (MB) of a job without the model (preprocessing, rendering) on one shard."""
    mb = LIGHT_BASE_MB + shard_size * input_mb(size, channels) * SHARD_FACTOR
    return int(math.ceil(mb * attempt / 100) * 100)


def light_job_runtime(shard_size: int, size: Sequence[int], maps_per_sample: int = 1, attempt: int = 1, scale: float = 1.0) -> int:
    """Run time (minutes) of reading or writing one shard: per sample and map 1 s per million voxels, at least 0.05 s."""
    per_map = max(SAMPLE_SECONDS, math.prod(size) / 1e6)
    seconds = shard_size * maps_per_sample * per_map
    return int(math.ceil((FIXED_MINUTES + RUNTIME_MARGIN * seconds / 60) * attempt * scale))
