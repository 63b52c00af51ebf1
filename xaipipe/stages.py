"""The pipeline's stages as plain functions: the Snakemake scripts only call these.

Each stage reads and writes one shard at a time, batch by batch, and writes its
output atomically.

The error policy (``on_error``): with ``fail`` a sample that a stage cannot use raises a
:class:`~xaipipe.errors.SampleError` naming it; with ``skip`` the stage records it in its
output file as skipped (``h5store.SkipRecord``: the ``skipped`` mask, the reason, the
stage's ``issues``), later stages carry the mask over and leave the sample out, the render
stage writes a placeholder for each of its outputs, and :func:`write_failures_table`
gathers every stage's issues into ``failures.tsv``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xaipipe import h5store
from xaipipe.atomic import atomic_path
from xaipipe.caches import content_sha256
from xaipipe.drawing import map_at, overlay_base
from xaipipe.errors import Issue, SampleError, check_policy
from xaipipe.geometry import Geometry, covers, resample_onto
from xaipipe.geometry import equal as geometry_equal
from xaipipe.logs import progress
from xaipipe.naming import extension_of
from xaipipe.preprocess import Preprocessing, range_warning, small_image_warning
from xaipipe.readers import exif_orientation_warning, load_sample, nifti_form_offset
from xaipipe.samples import split_series
from xaipipe.writers import format_of_extension, write_archive, write_map, write_placeholder

log = logging.getLogger(__name__)


def preprocess_shard(
    paths: Sequence[str | os.PathLike],
    ids: Sequence[str],
    labels: Sequence[int] | None,
    class_names: Sequence[str] | None,
    preprocessing: Preprocessing,
    out_path: str | os.PathLike,
    preprocess_overlay: bool = True,
    first_index: int = 0,
    on_error: str = "fail",
) -> None:
    """Load the samples ``ids`` from their files ``paths`` and write their model inputs and overlay images.

    ``preprocess_overlay``: overlays are drawn on the image after the subfunctions
    (true) or on the untouched original (false). ``first_index`` is the position of
    the shard's first sample in the study (it seeds random subfunctions per sample).
    A sample that cannot be read or used raises a SampleError (``on_error: fail``) or is
    recorded as skipped (``skip``); a sample much smaller than the model input is logged
    and recorded as a warning.
    """
    check_policy(on_error)
    if len(paths) != len(ids):
        raise ValueError(f"{len(paths)} sample files for {len(ids)} sample ids")
    labels = [-1] * len(ids) if labels is None else list(labels)
    dims = preprocessing.spatial_dims
    # the content of each file, as it is before it is read: a run can then tell it replaced by an older file
    source_sha256 = [content_sha256(path) if os.path.exists(path) else "" for path in paths]
    with h5store.preprocessed_writer(
        out_path,
        ids,
        labels,
        preprocessing.input_shape,
        spatial_dims=dims,
        class_names=list(class_names or []),
        preprocessing=preprocessing_record(preprocessing),
        preprocess_overlay=preprocess_overlay,
        source_sha256=source_sha256,
    ) as shard:
        for row, (sample_id, path) in enumerate(progress(list(zip(ids, paths)), "preprocess")):
            try:
                image, geometry = load_sample(path, dims, split_series(sample_id)[1])
                work, work_geometry = preprocessing.model_grid(image, geometry) if geometry else (image, None)
                processed = preprocessing.apply_subfunctions(work, first_index + row)
                inputs = preprocessing.finish(processed)
                base = processed if preprocess_overlay else image
                if geometry and work_geometry:
                    grid = work_geometry.shifted(preprocessing.grid_start(work.shape, first_index + row))
                    base, geometry, map_grid = _volume_grids(
                        image, geometry, processed, grid, preprocessing.resamples, preprocess_overlay
                    )
            except Exception as error:  # noqa: BLE001  whatever fails names the sample (an OpenCV error named none)
                reason = str(error) if isinstance(error, ValueError) else f"{type(error).__name__}: {error}"
                reason = reason if str(path) in reason else f"{path}: {reason}"
                if on_error == "fail":
                    raise SampleError(sample_id, reason, "preprocess") from None
                log.warning("sample %r skipped (on_error: skip): %s; %s", sample_id, reason, _FIX)
                shard.skip(row, Issue(sample_id, "preprocess", "skipped", reason))
                continue
            for warning in (small_image_warning(image.shape, preprocessing.size),
                            range_warning(processed, preprocessing.standardize),
                            exif_orientation_warning(path) if geometry is None else None):  # fmt: skip
                if warning:
                    log.warning("sample %r (%s): %s", sample_id, path, warning)
                    shard.warn(Issue(sample_id, "preprocess", "warning", f"{path}: {warning}"))
            apart = nifti_form_offset(path) if geometry and str(path).lower().endswith((".nii", ".nii.gz")) else None
            if apart is not None and apart > 0.5 * min(geometry.spacing):
                forms = (
                    f"{path}: its NIfTI sform and qform place the volume {apart:.3g} mm apart; xaipipe reads the qform "
                    "(as SimpleITK does) and writes its maps there, where viewers that prefer the sform (nibabel, "
                    "FSL) show them off the scan: set both to the right one (nibabel: img.set_sform(img.get_qform()))"
                )
                log.warning("sample %r: %s", sample_id, forms)
                shard.warn(Issue(sample_id, "preprocess", "warning", forms))
            # where the overlay image lies in the source's grid, for masks drawn on the source: after a crop or
            # padding where the overlay is the processed image on its own grid, else at the source's origin
            on_processed = preprocess_overlay and not (geometry and preprocessing.resamples)
            start = preprocessing.grid_start(work.shape, first_index + row) if on_processed else (0,) * dims
            window = (image.shape[:dims], start)
            if geometry is None:
                shard.write(row, inputs, overlay_base(base, dims), source_window=window)
            else:
                origin, direction = geometry.origin, geometry.direction
                shard.write(row, inputs, base, geometry.spacing, origin=origin, direction=direction, map_grid=map_grid,
                            source_window=window)  # fmt: skip


def _volume_grids(
    image: np.ndarray,
    source: Geometry,
    processed: np.ndarray,
    grid: Geometry,
    resamples: bool,
    preprocess_overlay: bool,
) -> tuple[np.ndarray, Geometry, tuple[Geometry, tuple[int, ...]] | None]:
    """(overlay image, its grid, the model's grid where another) of a volume: where its maps are written.

    ``grid`` is the geometry of ``processed`` (after reorientation, resampling and the
    subfunctions). The maps lie on the source's grid (``image``) where the volume was
    reoriented or resampled, or its overlay is the untouched original; else on the
    processed grid, whose origin follows a crop or padding. Where the two differ, the
    maps are resampled from the model's grid onto the overlay's at render.
    """
    shape = processed.shape[:3]
    if preprocess_overlay and not resamples:
        return overlay_base(processed, 3), grid, None
    if preprocess_overlay:
        base = resample_onto(overlay_base(processed, 3), grid, source, image.shape[:3])
    else:
        base = overlay_base(image, 3)
    same = not resamples and shape == image.shape[:3] and geometry_equal(grid, source)
    return base, source, None if same else (grid, shape)


#: What a skip's log line says to do.
_FIX = "it is listed in failures.tsv; repair it and run again to include it"


def preprocessing_record(preprocessing: Preprocessing) -> dict[str, Any]:
    """The preprocessing settings as plain data, for the HDF5 attributes."""
    record = {k: v for k, v in preprocessing.__dict__.items() if k != "subfunctions"}
    for key, default in (("orientation", "none"), ("spacing", None)):  # newer keys: recorded where set only, so that
        if record[key] == default:  # the shards made before them stay valid
            del record[key]
    record["subfunctions"] = [{"name": type(step).__name__, **step.__dict__} for step in preprocessing.subfunctions]
    return record


def check_preprocessing(preprocessed_path: str | os.PathLike, preprocessing: Preprocessing) -> None:
    """ValueError naming the shard and each setting that differs, unless it was made with ``preprocessing``."""
    with h5store.PreprocessedShard.open(preprocessed_path) as shard:
        recorded = shard.preprocessing
    expected = json.loads(json.dumps(preprocessing_record(preprocessing)))  # as the attribute stores it
    if recorded == expected:
        return
    differ = [
        f"{key}: {recorded.get(key)!r} there, {expected.get(key)!r} now"
        for key in sorted(set(recorded) | set(expected))
        if recorded.get(key) != expected.get(key)
    ]
    raise ValueError(
        f"{preprocessed_path} was made with other preprocessing settings than this job's ({'; '.join(differ)}): "
        f"rerun with --forcerun preprocess, or delete {preprocessed_path} and run again"
    )


def check_predictions_model(
    predictions: h5store.Predictions,
    predictions_path: str | os.PathLike,
    model_path: str | os.PathLike,
    model_sha256: str,
) -> None:
    """ValueError naming both files unless ``predictions`` were computed by the model with ``model_sha256``."""
    if predictions.model_sha256 != model_sha256:
        raise ValueError(
            f"{predictions_path} holds the predictions of another model (sha256 {str(predictions.model_sha256)[:12]}) "
            f"than {model_path} (sha256 {model_sha256[:12]}): rerun with --forcerun predict, or delete "
            f"{predictions_path} and run again"
        )


def predict_shard(
    preprocessed_path: str | os.PathLike,
    model_path: str | os.PathLike,
    out_path: str | os.PathLike,
    batch_size: int,
    preprocessing: Preprocessing | None = None,
    on_error: str = "fail",
) -> None:
    """Run the model on one preprocessed shard and cache the class scores.

    ``preprocessing``: the settings the shard must have been made with (the config's; a shard
    made otherwise is refused), or None to take the shard as it is. Samples skipped by the
    preprocessing are left out; a sample whose scores are not finite raises a SampleError
    (``on_error: fail``) or is skipped (``skip``).
    """
    from xaipipe.autodiff import one_unit_sigmoid
    from xaipipe.model import check_model_input, check_supported, load_model, predict_batch, sha256_file

    check_policy(on_error)
    if preprocessing is not None:
        check_preprocessing(preprocessed_path, preprocessing)
    model = load_model(model_path)
    check_supported(model)
    with h5store.PreprocessedShard.open(preprocessed_path) as shard:
        check_model_input(model, model_path, shard.inputs(slice(0, 1)).shape[1:])
        shape = getattr(model, "output_shape", None)
        if isinstance(shape, tuple) and len(shape) == 2 and isinstance(shape[-1], int):
            sigmoid = shape[-1] != 1 or one_unit_sigmoid(model)
            check_model_classes(model_path, shape[-1], shard.class_names, shard.labels, shard.ids, sigmoid)
        ids = shard.ids
        record = h5store.SkipRecord(len(ids), shard.skipped, shard.skip_reasons)
        n_batches = -(-len(shard) // batch_size)
        scores = None
        for rows, x in progress(shard.batches(batch_size), "predict", n_batches, "batch"):
            keep = ~record.skipped[rows]  # the batch less the samples skipped before
            if not keep.any():
                continue
            batch = predict_batch(model, x[keep])
            if scores is None:
                scores = np.full((len(ids), batch.shape[1]), np.nan, np.float32)
            scores[np.arange(rows.start, rows.stop)[keep]] = batch
        if scores is None:  # every sample skipped: the model's output count, from one zero input
            scores = np.full((len(ids), predict_batch(model, shard.inputs(slice(0, 1))).shape[1]), np.nan, np.float32)
        check_model_classes(model_path, scores.shape[1], shard.class_names, shard.labels, ids, sigmoid=False)
        for row in np.flatnonzero(~record.skipped & ~np.isfinite(scores).all(axis=1)):
            error = SampleError(
                ids[row],
                f"its predictions are not finite ({scores[row].tolist()}); check its input and the model",
                "predict",
            )
            if on_error == "fail":
                raise error
            log.warning("%s: skipped (on_error: skip); %s", error, _FIX)
            record.skip(row, Issue(ids[row], "predict", "skipped", error.reason))
        h5store.write_predictions(
            out_path,
            ids,
            shard.labels,
            scores,
            class_names=shard.class_names,
            record=record,
            model_sha256=sha256_file(model_path),
            model_path=str(model_path),
        )


def check_model_classes(
    model_path: str | os.PathLike,
    n_outputs: int,
    class_names: Sequence[str],
    labels: Sequence[int],
    ids: Sequence[str],
    sigmoid: bool = True,
) -> None:
    """ValueError naming the model file unless its ``n_outputs`` scores fit the classes and the labels.

    The classes, where known (config ``classes``, class subfolders, one-hot columns), must
    be as many as the outputs; a one-output model ending in a sigmoid has two classes ([1 - p, p]; ``sigmoid``:
    whether it does, where known), one without a sigmoid one score. Every label (a class index; -1 for none) must
    be below that count.
    """
    n_classes = 2 if n_outputs == 1 and sigmoid else n_outputs
    two_labels = labels is not None and np.max(np.asarray(labels), initial=-1) >= 1
    if n_outputs == 1 and not sigmoid and (class_names and len(class_names) == 2 or two_labels):
        raise ValueError(
            f"model {model_path} has one output without a sigmoid, which xaipipe reads as one score (class 0), "
            f"but the samples have two classes ({', '.join(class_names or ['0', '1'])}); a one-output model is two "
            "classes ([1 - p, p]) where it ends in a sigmoid: if its output is the logit of the second class "
            "(trained with from_logits=True), end it in one, keras.Sequential([model, "
            "keras.layers.Activation('sigmoid')]), and save that; else leave the classes and labels out"
        )
    if class_names and len(class_names) != n_classes:
        binary = (
            f" (a one-output sigmoid is two classes, [1 - p, p]: name both, the negative first, e.g. classes: "
            f"[not_{class_names[0]}, {class_names[0]}])"
        ) if n_outputs == 1 and sigmoid and len(class_names) == 1 else ""  # fmt: skip
        raise ValueError(
            f"model {model_path} has {n_outputs} output{'' if n_outputs == 1 else 's'} but the samples have "
            f"{len(class_names)} class{'' if len(class_names) == 1 else 'es'} ({', '.join(class_names)}){binary}; "
            "list the model's classes in its output order under `classes`, or use the model trained for these classes"
        )
    labels = np.asarray(labels)
    if labels.size and labels.max() >= n_classes:
        row = int(labels.argmax())
        raise ValueError(
            f"model {model_path} has {n_outputs} outputs (classes 0..{n_classes - 1}) but sample {ids[row]!r} "
            f"has label {int(labels[row])}; correct the label or use the model trained for these classes"
        )


def merge_predictions(paths: Sequence[str | os.PathLike], out_path: str | os.PathLike) -> None:
    """Write one tab-separated table of all predictions (one row per sample).

    A skipped sample keeps its row (id and label), with its predicted class and probabilities empty.
    """
    with atomic_path(out_path) as tmp, open(tmp, "w") as out:
        header_written = False
        for path in paths:
            table = h5store.read_predictions(path)
            k = table.probabilities.shape[1]
            names = table.class_names if len(table.class_names) == k else [str(c) for c in range(k)]
            if not header_written:
                out.write("\t".join(["sample", "label", "predicted", *(f"p_{n}" for n in names)]) + "\n")
                header_written = True
            for sample_id, label, predicted, probs, skipped in zip(
                table.ids, table.labels, table.predicted, table.probabilities, table.skipped, strict=True
            ):
                label_name = names[label] if label >= 0 else ""
                if skipped:
                    cells = [sample_id, label_name, "", *([""] * k)]
                else:
                    cells = [sample_id, label_name, names[predicted], *(f"{p:.6f}" for p in probs)]
                out.write("\t".join(cells) + "\n")


def compute_heatmaps_shard(
    preprocessed_path: str | os.PathLike,
    predictions_path: str | os.PathLike,
    model_path: str | os.PathLike,
    method: str,
    method_params: dict[str, Any],
    targets: str,
    batch_size: int,
    out_path: str | os.PathLike,
    preprocessing: Preprocessing | None = None,
    on_error: str = "fail",
    label: str | None = None,
) -> None:
    """Compute one method's maps for every sample and target class of a shard.

    ``label``: the variant's name (config ``methods[].label``), in the file's ``variant``
    attribute and the failures table's stage; default: the canonical method name.

    The predictions must be those of this model (their recorded sha256 is checked), and
    the shard made with ``preprocessing`` where it is given. Samples skipped before get
    NaN maps of class -1. A sample whose maps fail (an exception, non-finite values):
    with ``on_error: fail`` the exception, or a SampleError naming it; with ``skip`` it is
    recorded as skipped by ``heatmaps:<method>`` and gets NaN maps too, unless every sample
    of the shard fails, which is the method's or the model's fault and raises.
    """
    member = HeatmapsMember(method, method_params, out_path, label)
    _compute_heatmaps(preprocessed_path, predictions_path, model_path, [member], targets, batch_size,
                      preprocessing, on_error)  # fmt: skip


@dataclass(frozen=True)
class HeatmapsMember:
    """One method variant of a heatmaps job: its key, parameters, output file and label (default: the method's
    canonical name)."""

    method: str
    params: dict[str, Any]
    out_path: str | os.PathLike
    label: str | None = None


def compute_heatmaps_family_shard(
    preprocessed_path: str | os.PathLike,
    predictions_path: str | os.PathLike,
    model_path: str | os.PathLike,
    members: Sequence[HeatmapsMember],
    targets: str,
    batch_size: int,
    preprocessing: Preprocessing | None = None,
    on_error: str = "fail",
) -> None:
    """Several CAM methods' maps of a shard from one forward and backward pass per batch
    (:class:`xaipipe.methods.camfamily.CAMFamily`), each member's file written as
    :func:`compute_heatmaps_shard` writes it for that member alone (the same datasets and
    attributes; the maps within float tolerance), so that every method keeps its own file.

    The members must qualify for one family (the same layer, score and precision, no
    ``noise``), else a ValueError. A batch whose shared pass raises is explained again by
    each member on its own, so the error policy names the samples at fault per member
    exactly as the single-method job does. Each file is written atomically once every member's maps are
    computed (an error before that leaves none of them). The workflow's jobs of several variants
    (:func:`compute_heatmaps_group_shard`, rules ``heatmaps_group_N``) are alike: Snakemake reruns the whole
    job, so every member's file, when any of them is missing or out of date: a member added to the
    config, or a job stopped between two renames (Snakemake holds a running job's outputs as incomplete).
    """
    if len(members) < 2:
        raise ValueError(f"a family of heatmaps needs at least two members, got {len(members)}")
    _compute_heatmaps(preprocessed_path, predictions_path, model_path, list(members), targets, batch_size,
                      preprocessing, on_error, [list(range(len(members)))])  # fmt: skip


def compute_heatmaps_group_shard(
    preprocessed_path: str | os.PathLike,
    predictions_path: str | os.PathLike,
    model_path: str | os.PathLike,
    members: Sequence[HeatmapsMember],
    targets: str,
    batch_size: int,
    preprocessing: Preprocessing | None = None,
    on_error: str = "fail",
) -> None:
    """Any method variants' maps of a shard in one job: the model loaded once, the shard read once,
    each member's file written as :func:`compute_heatmaps_shard` writes it for that member alone.

    The members that qualify for a CAM family share one forward and backward pass per batch
    (:func:`xaipipe.methods.shared_pass_groups`: what :func:`compute_heatmaps_family_shard` takes);
    every other member explains each batch on its own. What a job costs beyond its maps (importing
    TensorFlow, loading and tracing the model, 7-9 s on 2 CPU cores) is then paid once per shard
    instead of once per variant and shard. The workflow runs it for every group of
    :func:`xaipipe.config.heatmaps_jobs` (rules ``heatmaps_group_N``).
    """
    from xaipipe import methods

    groups = methods.shared_pass_groups([(member.method, member.params) for member in members])
    _compute_heatmaps(preprocessed_path, predictions_path, model_path, list(members), targets, batch_size,
                      preprocessing, on_error, groups)  # fmt: skip


def predict_and_explain_shard(
    preprocessed_path: str | os.PathLike,
    model_path: str | os.PathLike,
    predictions_path: str | os.PathLike,
    members: Sequence[HeatmapsMember],
    targets: str,
    batch_size: int,
    preprocessing: Preprocessing | None = None,
    on_error: str = "fail",
    evaluation: MembersEvaluation | None = None,
) -> None:
    """A shard's predictions, then every member's maps, then (with ``evaluation``) each member's per-map
    metrics, in one job with one model load: the files of :func:`predict_shard`,
    :func:`compute_heatmaps_group_shard` and :func:`xaipipe.evaluate.evaluate_shard`, as those write them.

    The workflow's job of a shard with config ``heatmaps_jobs: shard`` (rule ``predict``): besides the model load
    (1-2 s for a ResNet50), each job it replaces would have paid importing TensorFlow and Keras and starting
    Snakemake's script, about 8 s of a 2-core machine's time per shard and, on a cluster, a job and its queue wait.
    """
    from xaipipe.model import one_load_per_file

    with one_load_per_file():
        predict_shard(preprocessed_path, model_path, predictions_path, batch_size, preprocessing, on_error)
        if members:
            compute_heatmaps_group_shard(preprocessed_path, predictions_path, model_path, members, targets,
                                         batch_size, None, on_error)  # fmt: skip  (predict checked preprocessing)
        if evaluation is not None:
            from xaipipe.evaluate import evaluate_shard

            for member, out_path in zip(members, evaluation.out_paths, strict=True):
                evaluate_shard(preprocessed_path, predictions_path, member.out_path, model_path, out_path,
                               evaluation.settings, evaluation.masks, on_error, batch_size)  # fmt: skip


@dataclass
class MembersEvaluation:
    """The per-map evaluation of a job's members (:func:`predict_and_explain_shard`): the settings
    (:meth:`xaipipe.evaluate.Settings.shard_params`), each sample's mask file (or None), and one output file per
    member, in the members' order."""

    settings: Mapping[str, Any]
    masks: Sequence[str | None] | None
    out_paths: Sequence[str | os.PathLike]


@dataclass
class _Output:
    """A member's explainer and the state of its output file while a shard is explained."""

    member: HeatmapsMember
    explainer: Any
    label: str
    record: h5store.SkipRecord
    writer: Any = None
    attempted: int = 0
    failures: list[tuple[str, str, Any]] = field(default_factory=list)

    @property
    def stage(self) -> str:
        return f"heatmaps:{self.label}"


def _compute_heatmaps(
    preprocessed_path: str | os.PathLike,
    predictions_path: str | os.PathLike,
    model_path: str | os.PathLike,
    members: list[HeatmapsMember],
    targets: str,
    batch_size: int,
    preprocessing: Preprocessing | None,
    on_error: str,
    families: list[list[int]] | None = None,
) -> None:
    """The maps of every member for a shard; the members of each of ``families`` (lists of indices into
    ``members``) from one pass (a CAM family), every other member on its own."""
    from xaipipe import methods
    from xaipipe.methods.base import target_classes
    from xaipipe.model import load_model, sha256_file

    check_policy(on_error)
    if preprocessing is not None:
        check_preprocessing(preprocessed_path, preprocessing)
    predictions = h5store.read_predictions(predictions_path)
    model_sha256 = sha256_file(model_path)
    check_predictions_model(predictions, predictions_path, model_path, model_sha256)
    model = load_model(model_path)
    explainers: list[Any] = [None] * len(members)
    shared_passes = []  # (CAMFamily, the indices of its members)
    for indices in families or []:
        from xaipipe.methods.camfamily import create_family

        made, family = create_family(model, [(members[i].method, members[i].params) for i in indices])
        shared_passes.append((family, indices))
        for i, explainer in zip(indices, made, strict=True):
            explainers[i] = explainer
    for i, member in enumerate(members):
        if explainers[i] is None:
            explainers[i] = methods.create(member.method, model, **member.params)
    outputs = [
        _Output(
            member,
            explainer,
            member.label or methods.canonical_name(member.method),
            h5store.SkipRecord(len(predictions.ids), predictions.skipped, predictions.skip_reasons),
        )
        for member, explainer in zip(members, explainers, strict=True)
    ]
    kept = ~predictions.skipped
    n, k = predictions.probabilities.shape
    classes = np.full((n, k if targets == "all" else 1), -1, np.int32)
    if kept.any():
        ids_kept = [i for i, keep in zip(predictions.ids, kept, strict=True) if keep]
        classes[kept] = target_classes(predictions.probabilities[kept], targets, predictions.labels[kept], ids_kept)
    n_targets = classes.shape[1]
    for output in outputs:
        log.info("method %s, target layer %s, %d samples x %d targets", output.member.method,
                 output.explainer.target_layer, n, n_targets)  # fmt: skip
    for _, indices in shared_passes:
        log.info("%s from one forward and backward pass per batch", ", ".join(outputs[i].label for i in indices))
    with contextlib.ExitStack() as stack:
        shard = stack.enter_context(h5store.PreprocessedShard.open(preprocessed_path))
        for output in outputs:
            output.writer = stack.enter_context(
                h5store.heatmaps_writer(
                    output.member.out_path,
                    shard.ids,
                    n * n_targets,
                    output.explainer.spatial_shape,
                    output.record,
                    method=methods.canonical_name(output.member.method),
                    variant=output.label,
                    method_params={**output.member.params, **output.explainer.params},
                    target_layer=output.explainer.target_layer,
                    score_tensor=output.explainer.score_source,
                    targets=targets,
                    model_sha256=model_sha256,
                    model_path=str(model_path),
                )
            )
        ids = shard.ids
        n_batches = -(-n // batch_size)
        name = "+".join(output.label for output in outputs)
        for rows, inputs in progress(shard.batches(batch_size), f"heatmaps {name}", n_batches, "batch"):
            keep = kept[rows]
            good = np.arange(rows.start, rows.stop)[keep]
            shared: dict[int, list] = {}  # member index -> its maps from its family's pass
            for family, indices in shared_passes if len(good) else ():
                try:
                    batch = inputs if keep.all() else inputs[keep]
                    maps = family.explain_raw(batch, classes[good], [ids[r] for r in good])
                except Exception as error:  # noqa: BLE001  each member on its own names the samples at fault
                    log.info("the shared pass failed (%s: %s); each method explains the batch on its own",
                             type(error).__name__, error)  # fmt: skip
                    continue
                for i, member_maps in zip(indices, maps, strict=True):
                    shared[i] = list(member_maps)
            for m, output in enumerate(outputs):
                _write_batch(output, rows, inputs, keep, good, classes, ids, n_targets, on_error, shared.get(m))
        for output in outputs:
            if output.attempted > 1 and len(output.failures) == output.attempted:
                sample_id, reason, result = output.failures[0]
                raise ValueError(
                    f"{output.stage}: every one of the {output.attempted} samples of {preprocessed_path} failed (the "
                    f"first, {sample_id!r}: {reason}): that is the method or the model, not the samples, so on_error: "
                    "skip does not skip them; check the method's parameters and the model"
                ) from (result if isinstance(result, BaseException) else None)


def _write_batch(
    output: _Output,
    rows: slice,
    inputs: np.ndarray,
    keep: np.ndarray,
    good: np.ndarray,
    classes: np.ndarray,
    ids: Any,
    n_targets: int,
    on_error: str,
    shared: list[np.ndarray] | None,
) -> None:
    """Write one batch's maps into ``output``'s file: ``shared``, the raw maps of the batch's kept samples from the
    family's pass, else computed by the member's own explainer."""
    heatmaps, explainer, stage = output.writer, output.explainer, output.stage
    if keep.all():  # the usual case: one write for the batch
        results = shared
        if results is None:
            results = _maps_or_failures(explainer, inputs, classes[rows], ids[rows], on_error, stage)
        if not any(isinstance(result, BaseException) or _non_finite(result) for result in results):
            output.attempted += len(results)
            raw = np.stack(results)
            maps = slice(rows.start * n_targets, rows.stop * n_targets)
            sample_index = np.repeat(np.arange(rows.start, rows.stop), n_targets)
            heatmaps.write(maps, sample_index, classes[rows].reshape(-1), raw)
            return
    else:
        if shared is None:
            shared = (
                _maps_or_failures(explainer, inputs[keep], classes[good], [ids[r] for r in good], on_error, stage)
                if len(good)
                else []
            )
        kept_results = iter(shared)
        results = [next(kept_results) if keep[j] else None for j in range(len(keep))]
    for row, result in zip(range(rows.start, rows.stop), results, strict=True):
        maps = slice(row * n_targets, (row + 1) * n_targets)
        if result is None:  # skipped before this stage
            heatmaps.write_skipped(maps, row)
            continue
        output.attempted += 1
        reason = _failure_reason(result)
        if reason is None:
            heatmaps.write(maps, np.full(n_targets, row), classes[row], result)
            continue
        if on_error == "fail":  # exceptions were raised where they happened; here non-finite maps
            raise SampleError(ids[row], reason, stage)
        log.warning("sample %r skipped (on_error: skip): %s: %s; %s", ids[row], stage, reason, _FIX)
        output.failures.append((ids[row], reason, result))
        output.record.skip(row, Issue(ids[row], stage, "skipped", reason))
        heatmaps.write_skipped(maps, row)


def _maps_or_failures(
    explainer: Any, inputs: np.ndarray, classes: np.ndarray, ids: Sequence[str], on_error: str, stage: str
) -> list[np.ndarray | BaseException]:
    """Each sample's raw maps (T, *spatial), or the exception its maps raised (the file keeps the raw maps and
    two numbers per map for the normalized ones: no normalized maps at full size are made here).

    A batch that raises is explained again sample by sample, so that only the samples at
    fault fail (``on_error: skip``), or the error names the sample at fault (``fail``: a
    SampleError of ``stage``, from the method's exception).
    """
    try:
        return list(explainer.explain_raw(inputs, classes, ids=list(ids)))
    except Exception as error:
        if len(inputs) == 1:
            if on_error == "fail":
                raise SampleError(ids[0], f"{type(error).__name__}: {error}", stage) from error
            return [error]
    return [
        _maps_or_failures(explainer, inputs[j : j + 1], classes[j : j + 1], ids[j : j + 1], on_error, stage)[0]
        for j in range(len(inputs))
    ]


def _non_finite(raw: np.ndarray) -> bool:
    """Whether raw maps cannot be normalized: a NaN or an infinity (each propagates to the minimum or maximum),
    or a range beyond float32 (max - min overflows: its normalized maps would be NaN)."""
    with np.errstate(over="ignore"):
        return not np.isfinite(np.float32(raw.max()) - np.float32(raw.min()))


def _failure_reason(result: np.ndarray | BaseException) -> str | None:
    """Why a sample's maps are unusable (an exception, non-finite values), or None."""
    if isinstance(result, BaseException):
        return f"{type(result).__name__}: {result}"
    if _non_finite(result):
        bad = int(np.size(result) - np.count_nonzero(np.isfinite(result)))
        if bad == 0:
            return (
                f"its maps span {float(result.min()):.3g} to {float(result.max()):.3g}, beyond float32's range "
                "once normalized (NaN); check its input and the method's parameters"
            )
        return f"its maps hold {bad} non-finite values (NaN or infinite); check its input and the method's parameters"
    return None


def render_shard(
    preprocessed_path: str | os.PathLike,
    heatmaps_path: str | os.PathLike,
    out_paths: Sequence[str | os.PathLike],
    overlay: bool,
    alpha: float,
    colormap: str,
    rows: Sequence[int] | None = None,
    archive: str | os.PathLike | None = None,
) -> None:
    """Write the maps of a heatmaps file, in their order, to ``out_paths``, at the overlay image's resolution.

    ``rows``: only the maps of these samples (rows of the shard, ``render.max_per_class``), all without.
    ``archive``: one zip file holding the maps (``render.archive``, :func:`xaipipe.writers.write_archive`),
    ``out_paths`` then the names of its members (the files' usual names), their bytes those of the files.
    Each file's format follows from its extension (the workflow names the files).

    2D: PNG of the coloured map (blended over the image with ``overlay``) or the map as
    ``.npy``. Volumes: the map as NIfTI (with the geometry of the sample's overlay image:
    spacing, origin, direction) or ``.npy``, or an animated GIF of the slices drawn like
    the PNGs; a map computed on another grid (``preprocessing.orientation``, ``spacing``,
    a crop with ``preprocess_overlay: false``) is resampled onto the overlay's grid first. Maps that the heatmaps file records
    as signed (``normalize: signed``) are drawn in a diverging colour map. A skipped sample's files are
    placeholders (``writers.write_placeholder``): an image that says why, or a map of NaN.
    """
    with (
        h5store.PreprocessedShard.open(preprocessed_path) as shard,
        h5store.HeatmapsFile.open(heatmaps_path) as maps,
        write_archive(archive) if archive is not None else nullcontext() as members,
    ):
        sample_index = maps.sample_index
        skipped, reasons = maps.skipped, maps.skip_reasons
        signed = maps.signed  # the method's normalize, recorded with its maps
        wanted = None if rows is None else set(rows)
        drawn = [m for m in range(len(sample_index)) if wanted is None or int(sample_index[m]) in wanted]
        if len(out_paths) != len(drawn):
            which = "" if wanted is None else f" of the {len(wanted)} samples to draw"
            asked = f"{len(out_paths)} output files were asked for"
            raise ValueError(f"{heatmaps_path} holds {len(drawn)} maps{which}; {asked}")
        for m, path in zip(drawn, progress(out_paths, "render", unit="map")):
            row = int(sample_index[m])
            with members.member(str(path)) if members is not None else nullcontext(path) as target:
                if skipped[row]:
                    fmt = format_of_extension(extension_of(target), shard.spatial_dims)
                    write_placeholder(target, fmt, f"skipped: {short_reason(reasons[row])}", maps.map_shape)
                else:
                    _render_map(shard, maps.normalized(m), row, target, overlay, alpha, colormap, signed)


def _render_map(
    shard: h5store.PreprocessedShard,
    heatmap: np.ndarray,
    row: int,
    path: str | os.PathLike,
    overlay: bool,
    alpha: float,
    colormap: str,
    signed: bool,
) -> None:
    """Write the normalized ``heatmap`` of the sample at ``row`` of ``shard`` to ``path`` (:func:`render_shard`)."""
    dims = shard.spatial_dims
    fmt = format_of_extension(extension_of(path), dims)
    image = shard.overlay_image(row)
    if dims == 2:
        write_map(path, heatmap, image, dims, fmt, overlay, alpha, colormap, shard.spacing(row), signed)
        return
    geometry = shard.geometry(row)
    heatmap = on_overlay_grid(heatmap, shard.map_grid(row), geometry, image.shape[:3], signed)
    spacing, origin, direction = geometry.spacing, geometry.origin, geometry.direction
    write_map(path, heatmap, image, dims, fmt, overlay, alpha, colormap, spacing, signed, origin, direction)


def on_overlay_grid(
    heatmap: np.ndarray,
    map_grid: tuple[Geometry, tuple[int, ...]] | None,
    geometry: Geometry,
    shape: Sequence[int],
    signed: bool,
) -> np.ndarray:
    """A volume's map on its overlay image's grid (``geometry``, ``shape``): resampled onto it where the model's grid
    is another (``map_grid``, :meth:`h5store.PreprocessedShard.map_grid`), else as it is (same extent; drawing
    resizes it). Where the model's grid covers the image's extent (reoriented, resampled: not cropped), the
    image's outermost voxels beyond its outermost centres take the nearest map voxel's value: a spacing of
    2 mm over 24 voxels of 1 mm ends half a voxel short of the last, whose plane of the map was 0."""
    if map_grid is None:
        return heatmap
    extend = covers(map_grid[0], map_grid[1], geometry, shape)
    return resample_onto(map_at(heatmap, map_grid[1], signed), map_grid[0], geometry, shape, extrapolate=extend)


def short_reason(reason: str) -> str:
    """``reason`` with each path cut to its file name (for a placeholder's text)."""
    return re.sub(r"\S*/([^\s/]+)", r"\1", reason)


#: The columns of failures.tsv.
FAILURES_HEADER = "sample\tstage\tkind\treason\n"


def write_failures_table(
    preprocessed_paths: Sequence[str | os.PathLike],
    predictions_paths: Sequence[str | os.PathLike],
    heatmaps_paths: Sequence[str | os.PathLike],
    out_path: str | os.PathLike,
    evaluation_paths: Sequence[str | os.PathLike] = (),
) -> None:
    """``failures.tsv``: every stage's issues (skipped samples, warnings), one row each, stage by stage.

    Columns sample, stage (preprocess, predict, heatmaps:<method>, evaluate:<method>), kind
    (skipped or warning) and reason; the header alone when nothing was skipped or warned about.
    """

    issues: list[Issue] = []
    for path in preprocessed_paths:
        with h5store.PreprocessedShard.open(path) as shard:
            issues += shard.issues
    for path in predictions_paths:
        issues += h5store.read_predictions(path).issues or []
    for path in heatmaps_paths:
        with h5store.HeatmapsFile.open(path) as maps:
            issues += maps.issues
    for path in evaluation_paths:
        issues += h5store.EvaluationFile.read(path).issues
    with atomic_path(out_path) as tmp, open(tmp, "w") as out:
        out.write(FAILURES_HEADER)
        for issue in issues:
            out.write("\t".join(" ".join(str(cell).split()) for cell in issue) + "\n")


def failures_summary(path: str | os.PathLike) -> str | None:
    """The run summary's line: how many samples ``failures.tsv`` lists as skipped, how many warnings; None without it."""
    if not os.path.exists(path):
        return None
    rows = [line.split("\t") for line in Path(path).read_text().splitlines()[1:] if line]
    skipped = len({row[0] for row in rows if row[2] == "skipped"})
    warnings = sum(row[2] == "warning" for row in rows)
    return (
        f"xaipipe: {skipped} sample{'' if skipped == 1 else 's'} skipped, "
        f"{warnings} warning{'' if warnings == 1 else 's'}, see {path}"
    )


def write_json(path: str | os.PathLike, data: Any) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(data, indent=2) + "\n")
