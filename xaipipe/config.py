"""What the Snakefile needs at parse time: samples, shards, methods, output names.

Nothing here imports TensorFlow, so building the job graph stays fast.
"""

from __future__ import annotations

import itertools
import json
import os
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xaipipe import demo, methods
from xaipipe.methods.params import InputSizeError, check_params, combination_problem
from xaipipe.naming import overlay_name
from xaipipe.preprocess import Preprocessing
from xaipipe.samples import (
    SampleSheet,
    discover_folder,
    has_sample_extension,
    read_csv,
    read_json,
    sample_path,
    shard_slice,
)


def sample_sheet(config: dict[str, Any]) -> SampleSheet:
    """The study's samples: the demo's (known before its files exist) or those found in ``data.images``."""
    if config["demo"]["build"]:
        ids = demo.sample_ids(config["demo"]["n_per_class"])
        names = demo.CLASS_NAMES
        labels = tuple(names.index(i.split("/")[0]) for i in ids)
        return SampleSheet(tuple(ids), labels, names)
    data = config["data"]
    try:
        if data["samples"] is None:
            series_folders = len(config["preprocessing"]["size"]) == 3  # volumes: a DICOM folder is one series
            sheet = discover_folder(data["images"], data["class_subfolders"], config["classes"], series_folders)
        elif data["samples"].lower().endswith(".csv"):
            sheet = read_csv(
                data["samples"], data["id_column"], data["class_column"], data["class_columns"], config["classes"],
                [data["mask_column"]] if data.get("mask_column") else [],
            )  # fmt: skip
        elif data["samples"].lower().endswith(".json"):
            sheet = read_json(data["samples"], config["classes"])
        else:
            raise ValueError(f"{data['samples']}: a sample table must be a .csv or .json file")
    except (OSError, ValueError) as error:
        key = "data.images" if data["samples"] is None else "data.samples"
        raise ValueError(f"config key {key}: {error}") from None
    if config["targets"] == "label" and (sheet.labels is None or -1 in sheet.labels):
        raise ValueError("config key targets: 'label' needs a label for every sample; the samples have none")
    return sheet


#: A label is a folder name: letters, digits and ``_ . + = -``, starting with a letter or digit.
LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+=-]*\Z")
#: Names a label may not take: folders of their own beside the variants' (evaluation/randomization/).
RESERVED_LABELS = frozenset({"randomization"})


@dataclass(frozen=True)
class Variant:
    """One method with one parameter set: its ``label`` names its output folders and table rows."""

    label: str
    method: str  #: the canonical method name (xaipipe.methods)
    params: dict[str, Any]  #: every parameter the config sets (with the config's layer and score)
    entry: int  #: its position in the config's ``methods`` list
    #: the config key its ``layer`` comes from where the entry does not set one (``model.layer``,
    #: ``models.<name>.layer``), None where it does or the method takes no layer
    layer_key: str | None = None


#: ``method_variants``'s default layer and score: the config's (``model.layer``, ``score``).
FROM_CONFIG: Any = object()


def method_variants(
    config: dict[str, Any],
    layer: str | None = FROM_CONFIG,
    score: str = FROM_CONFIG,
    size: list[int] | None = None,
    size_key: str = "preprocessing.size",
    layer_key: str = "model.layer",
) -> dict[str, Variant]:
    """Label -> :class:`Variant`, from the ``methods`` list of the config, sweeps expanded.

    An entry is a key (``gradcam``) or a mapping with ``name``, an optional ``label`` (default:
    the canonical method name), parameters and an optional ``sweep`` (parameter -> list of
    values), which gives one variant per combination, labelled ``{label}-{param}-{value}...``
    or by a ``label`` template holding ``{param}`` fields. ``layer``/``score`` (default: the
    config's ``model.layer`` and ``score``; a ``layer`` of None: the automatic choice) are the
    defaults of the methods that take them;
    patch sizes are checked against ``size`` (default: ``preprocessing.size``), an error naming ``size_key``;
    ``layer_key``: the config key of ``layer``, which a variant that takes it from there records.
    Unknown keys and parameters, renamed parameters, bad sweeps and two variants with one
    label stop the run here, before any job, naming the entry.
    """
    layer = config["model"]["layer"] if layer is FROM_CONFIG else layer
    score = config["score"] if score is FROM_CONFIG else score
    size = config.get("preprocessing", {}).get("size") if size is None else size
    variants: dict[str, Variant] = {}
    for position, raw in enumerate(config["methods"]):
        where = f"config key methods[{position}]"
        entry = {"name": raw} if isinstance(raw, str) else dict(raw)
        key = entry.pop("name")
        label = entry.pop("label", None)
        sweep = entry.pop("sweep", None)
        try:
            name = methods.canonical_name(key)
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None
        for param in entry:
            _check_parameter(name, key, param, f"{where}.{param}")
        combos = _sweep_combinations(name, key, sweep, entry, where)
        default_layer = methods.takes_layer(name) and "layer" not in entry and "layer" not in (sweep or {})
        if methods.takes_layer(name):
            entry.setdefault("layer", layer)
        entry.setdefault("score", score)
        for combo in combos:
            params = {**entry, **combo}
            this = _variant_label(name, label, combo, where)
            try:
                params = check_params(params, size)
                full = {**methods.defaults(name), **params}
                if full.get("noise") is not None:
                    full["noise"] = methods.noise_settings(name, full["noise"])
                problem = combination_problem(full)
                if name in ("smoothgrad", "vargrad") and "noise" in params and params["noise"] is None:
                    problem = f"noise null makes {name} the plain saliency map under another name; use saliency"
                if problem is not None:
                    raise ValueError(problem)
            except ValueError as error:
                named = key if label is None and sweep is None else this  # the entry as written, or its variant
                hint = f" ({size_key})" if isinstance(error, InputSizeError) else ""
                raise ValueError(f"{where} ({named}): {error}{hint}") from None
            taken = next((v for v in variants if v.lower() == this.lower()), None)  # folders: case may not count
            if taken is not None:
                first = variants[taken].entry
                hint = "give each a different label" if first != position else "use a label template with {param}"
                case = "" if taken == this else f" as {taken!r} (they differ in case alone: one folder on macOS/Windows)"
                raise ValueError(
                    f"{where}: label {this!r} is taken by methods[{first}] too{case}; {hint} "
                    f"(e.g. {{name: {key}, label: {key}-2, ...}})"
                )
            variants[this] = Variant(this, name, params, position, layer_key if default_layer else None)
    return variants


def _check_parameter(name: str, key: str, param: str, where: str) -> None:
    renamed = methods.renamed_parameter(name, param)
    if renamed is not None:
        raise ValueError(f"{where}: {key}'s {methods.renamed_message(param, renamed)}")
    allowed = methods.parameters(name)
    if param not in allowed:
        raise ValueError(f"{where}: {key} takes no parameter {param!r}; its parameters: {', '.join(allowed)}")


def _sweep_combinations(
    name: str, key: str, sweep: Any, fixed: dict[str, Any], where: str
) -> list[dict[str, Any]]:
    """Every combination of a ``sweep``'s values, in the order written ([{}] without a sweep)."""
    if sweep is None:
        return [{}]
    if not isinstance(sweep, dict) or not sweep:
        raise ValueError(f"{where}.sweep: a mapping of parameters to lists of values, e.g. {{patch_size: [8, 16]}}")
    for param, values in sweep.items():
        _check_parameter(name, key, param, f"{where}.sweep.{param}")
        if param in fixed:
            raise ValueError(f"{where}.sweep.{param}: {param!r} is set and swept; keep one of them")
        if not isinstance(values, list) or not values:
            raise ValueError(f"{where}.sweep.{param}: a non-empty list of values, e.g. [8, 16, 32]; got {values!r}")
        if len(set(map(repr, values))) != len(values):
            raise ValueError(f"{where}.sweep.{param}: a value is listed twice in {values!r}")
    return [dict(zip(sweep, values)) for values in itertools.product(*sweep.values())]


def _variant_label(name: str, label: str | None, combo: dict[str, Any], where: str) -> str:
    """The variant's label: ``label`` (or the method's name) followed by ``-{param}-{value}`` for
    each swept parameter, or the ``label`` template filled in with them; checked as a folder name."""
    if label is not None and "{" in label:
        try:
            text = label.format(**{p: _label_value(v) for p, v in combo.items()})
        except (KeyError, IndexError, ValueError) as error:
            swept = ", ".join(combo) or "none"
            raise ValueError(
                f"{where}.label: template {label!r} names {error}, which is not swept (swept: {swept})"
            ) from None
    else:
        text = (label or name) + "".join(f"-{p}-{_label_value(v)}" for p, v in combo.items())
    if not LABEL.match(text) or text in RESERVED_LABELS:
        why = "is reserved" if text in RESERVED_LABELS else "is no safe folder name"
        mapping = next((p for p, v in combo.items() if isinstance(v, Mapping)), None)
        fix = (
            f"a swept {mapping!r} that is a mapping names no folder: list its variants as entries of their own, "
            f"each with a label (e.g. {{name: {name}, label: {name}-sg, {mapping}: ...}})"
            if mapping is not None
            else "set `label`, or a template such as 'occ-{patch_size}'"
        )
        raise ValueError(
            f"{where}: label {text!r} {why}; a label holds letters, digits and _.+=- and starts with a "
            f"letter or digit ({fix})"
        )
    return text


def _label_value(value: Any) -> str:
    return "none" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def method_specs(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Label -> parameters of every variant (:func:`method_variants`)."""
    return {label: variant.params for label, variant in method_variants(config).items()}


#: Folders of a study's output that a model's folder (``{output}/{model}``) may not be named after.
RESERVED_MODEL_NAMES = frozenset(
    {"demo", "preprocessed", "predictions", "heatmaps", "overlays", "evaluation", "report", "logs", "benchmarks",
     "checksums", "thumbs"}
)  # fmt: skip
#: The name of the one model of a config without ``models`` (the ``model`` section).
SINGLE_MODEL = "model"


@dataclass(frozen=True)
class ModelSpec:
    """One model of the study, with every setting its jobs need."""

    name: str
    path: str
    folder: str  #: its outputs: ``{output}`` for the single ``model``, else ``{output}/{name}``
    preprocessing: dict[str, Any]  #: the study's, with the model's overrides
    preprocessed: str  #: the folder of the shards it reads, shared by models with equal preprocessing
    variants: dict[str, Variant]


def model_specs(config: dict[str, Any]) -> dict[str, ModelSpec]:
    """Name -> :class:`ModelSpec` of every model: ``models`` (name -> path, layer, score,
    preprocessing overrides), or the single ``model`` (outputs directly under ``output``).

    Models whose preprocessing is equal share one set of preprocessed shards
    (``{output}/preprocessed``, or the first such model's ``{output}/{name}/preprocessed``).
    Names must be safe folder names and no folder of the study's own; the method variants
    take each model's ``layer`` and ``score`` as their defaults.
    """
    out = config["output"]
    study = config["preprocessing"]
    models = config.get("models") or {}
    if not models:
        path = config["model"]["path"]
        return {SINGLE_MODEL: ModelSpec(SINGLE_MODEL, path, out, study, f"{out}/preprocessed", method_variants(config))}
    if config["model"]["path"] is not None:
        raise ValueError(
            "config keys model.path and models: set one of them; with `models`, each model's `path` is under "
            "models.<name>.path (model.layer stays the default layer of them all)"
        )
    specs: dict[str, ModelSpec] = {}
    shared: dict[str, str] = {}  # preprocessing (as JSON) -> its folder
    for name, entry in models.items():
        where = f"config key models.{name}"
        twin = next((other for other in specs if other.lower() == name.lower()), None)
        if twin is not None:  # one folder where case does not count (macOS, Windows, SMB shares)
            raise ValueError(f"{where}: the name differs from models.{twin} in case alone, which makes one folder on "
                             "macOS and Windows; rename one of them")  # fmt: skip
        if not LABEL.match(name) or name in RESERVED_MODEL_NAMES:
            why = "is a folder of the study's own" if name in RESERVED_MODEL_NAMES else "is no safe folder name"
            raise ValueError(
                f"{where}: the name {name!r} {why}; a model's name holds letters, digits and _.+=-, starts with a "
                f"letter or digit and is none of {', '.join(sorted(RESERVED_MODEL_NAMES))}"
            )
        overrides = dict(entry.get("preprocessing") or {})
        unknown = sorted(set(overrides) - set(study))
        if unknown:
            raise ValueError(f"{where}.preprocessing.{unknown[0]}: no preprocessing key; keys: {', '.join(study)}")
        preprocessing = {**study, **overrides}
        if len(preprocessing["size"]) != len(study["size"]):
            raise ValueError(
                f"{where}.preprocessing.size: {preprocessing['size']} has {len(preprocessing['size'])} dimensions, "
                f"the study's preprocessing.size {study['size']} {len(study['size'])}: one study is 2D or 3D"
            )
        try:
            Preprocessing.from_config(preprocessing)
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None
        key = json.dumps(preprocessing, sort_keys=True)
        if preprocessing == study:
            shared.setdefault(key, f"{out}/preprocessed")
        shared.setdefault(key, f"{out}/{name}/preprocessed")
        try:
            # a model's own layer (null: the automatic choice) and score, else the config's
            own_size = "size" in overrides and overrides["size"] != study["size"]
            variants = method_variants(
                config, entry.get("layer", FROM_CONFIG), entry.get("score", FROM_CONFIG), preprocessing["size"],
                f"{where[len('config key '):]}.preprocessing.size" if own_size else "preprocessing.size",
                f"models.{name}.layer" if "layer" in entry else "model.layer",
            )  # fmt: skip
        except ValueError as error:
            raise ValueError(f"{error} (model {name!r})") from None
        specs[name] = ModelSpec(name, entry["path"], f"{out}/{name}", preprocessing, shared[key], variants)
    return specs


#: The longest name of a heatmaps job's log and benchmark folder (its labels joined by commas), below any file
#: system's 255 bytes per name; a longer one is cut to the first label and the number of the others.
FAMILY_NAME_MAX = 120
#: How the heatmaps of a shard are split into jobs (config ``heatmaps_jobs``, :func:`heatmaps_jobs`).
HEATMAPS_JOBS = ("variant", "family", "shard")


@dataclass(frozen=True)
class HeatmapsJob:
    """Variants whose maps one heatmaps job per shard computes, each into its own file
    (:func:`xaipipe.stages.compute_heatmaps_group_shard`): the model loaded once, the members of a CAM family
    from one forward and backward pass. ``predicts``: the job also writes the shard's predictions first (rule
    ``predict``, :func:`xaipipe.stages.predict_and_explain_shard`), so that a shard's one model load serves both."""

    labels: tuple[str, ...]  #: in the order of the config's ``methods`` list
    predicts: bool = False

    @property
    def name(self) -> str:
        """The folder of the job's logs and benchmark records: its labels joined by commas (a character
        that no label holds, so no variant's folder), or with very long labels the first and the others' count."""
        name = ",".join(self.labels)
        return name if len(name) <= FAMILY_NAME_MAX else f"{self.labels[0]},and-{len(self.labels) - 1}-more"


def heatmaps_jobs(specs: dict[str, ModelSpec], mode: str) -> list[HeatmapsJob]:
    """The heatmaps jobs of several variants each, per shard, as config ``heatmaps_jobs`` (``mode``) says; every
    variant in none of them has a job of its own (rule ``heatmaps``).

    ``variant``: none (a job per variant and shard: adding a method to the config reruns no other's maps);
    ``family``: one for each CAM family (:func:`shared_pass_families`), which share one pass; ``shard``: one of
    every variant that also predicts the shard first, so that the fixed cost of a model job (importing TensorFlow,
    loading and tracing the model: 7-9 s on 2 CPU cores) is paid once per shard, and whose CAM families still share
    their pass (but a changed variant reruns the shard's predictions and all its maps).
    """
    if mode not in HEATMAPS_JOBS:
        raise ValueError(f"heatmaps_jobs must be one of {list(HEATMAPS_JOBS)}, got {mode!r}")
    if mode == "family":
        return shared_pass_families(specs)
    labels = list(dict.fromkeys(label for spec in specs.values() for label in spec.variants))
    return [HeatmapsJob(tuple(labels), predicts=True)] if mode == "shard" and labels else []


def shared_pass_families(specs: dict[str, ModelSpec]) -> list[HeatmapsJob]:
    """The families of variants that share one pass in every model of the study, each of two or more.

    A variant joins a family when, in every model, it may share a pass (:func:`xaipipe.methods.shares_pass`:
    Grad-CAM, Grad-CAM++, HiResCAM, XGradCAM, LayerCAM, without ``noise``) and its
    :func:`~xaipipe.methods.family_signature` (target layer, score, precision, the defaults and the model's
    ``layer`` and ``score`` filled in) equals the other members' there. Decided from the config alone, so the
    families are known when Snakemake parses the workflow; deciding across all models keeps one set of heatmaps
    rules for the study (every model has the same variants): a variant that would join a family in one model
    only (a ``layer`` that is one model's default) stays alone. ``normalize`` may differ (each member keeps its
    own). Every other variant (a noisy CAM, Guided Grad-CAM, Score-CAM, any other method) has a job of its own.
    """
    models = list(specs.values())
    if not models:
        return []
    groups: dict[tuple[Any, ...], list[str]] = {}
    for label in models[0].variants:
        variants = [model.variants[label] for model in models]
        if all(methods.shares_pass(v.method, v.params) for v in variants):
            key = tuple(repr(methods.family_signature(v.method, v.params)) for v in variants)
            groups.setdefault(key, []).append(label)
    return [HeatmapsJob(tuple(labels)) for labels in groups.values() if len(labels) > 1]


def model_import_files(config: dict[str, Any]) -> list[str]:
    """The files of the modules of config ``model.imports`` (found as the jobs find them: in the working directory
    or on ``PYTHONPATH``, without importing them), relative to the working directory where they lie below it; a
    ValueError naming the module that is not found."""
    import importlib.util
    import sys

    modules = config["model"].get("imports") or []
    if not modules:
        return []
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        files = []
        for name in modules:
            try:
                spec = importlib.util.find_spec(name)
            except (ImportError, ValueError) as error:
                spec, why = None, f" ({type(error).__name__}: {error})"
            else:
                why = ""
            if spec is None or not spec.origin or not os.path.isfile(spec.origin):
                raise ValueError(
                    f"config key model.imports: module {name!r} not found{why}; put {name.replace('.', '/')}.py in the "
                    f"working directory {cwd} or on PYTHONPATH"
                )
            path = os.path.relpath(spec.origin, cwd)
            files.append(spec.origin if path.startswith("..") else path)
        return files
    finally:
        if added:
            sys.path.remove(cwd)


def linear_head_warning(model_path: str) -> str | None:
    """What to say of a model whose file shows it ends without a softmax or sigmoid (:func:`modelfile.linear_head`):
    its outputs are written where probabilities are expected; None otherwise."""
    from xaipipe.modelfile import linear_head

    layer = linear_head(model_path) if os.path.isfile(model_path) else None
    if layer is None:
        return None
    return (
        f"the model {model_path} ends without a softmax or sigmoid (its output layer {layer!r} is linear): the p_ "
        "columns of predictions.tsv hold its raw scores (logits), not probabilities, and the evaluation's deletion "
        "and insertion curves follow them; for probabilities end it in one (keras.Sequential([model, "
        "keras.layers.Softmax()]), or Activation('sigmoid') for multi-label) and save that"
    )


def multi_label_warning(model_path: str, targets: str) -> str | None:
    """What to say of a model whose file shows several sigmoid outputs (:func:`modelfile.multi_label_head`): each
    output a finding of its own, where xaipipe's predicted class and its marks take the classes as exclusive."""
    from xaipipe.modelfile import multi_label_head

    layer = multi_label_head(model_path) if os.path.isfile(model_path) else None
    if layer is None:
        return None
    advice = "" if targets == "all" else (
        "; set targets: all to explain every finding (targets: argmax explains only the highest output, also "
        "where no finding is present)"
    )
    return (
        f"the model {model_path} ends in several sigmoids (its output layer {layer!r}: a multi-label model, each "
        "output a finding of its own): the p_ columns of predictions.tsv are each finding's probability, but the "
        "`predicted` column (the highest output), the report's correct/misclassified marks and its confusion matrix "
        f"take the classes as exclusive{advice}"
    )


def folder_classes(config: dict[str, Any], sheet: SampleSheet) -> bool:
    """Whether the classes are guessed: subfolders of ``data.images`` taken as classes (``class_subfolders: auto``)
    with no ``classes`` in the config to confirm them."""
    data = config["data"]
    return (
        not config["demo"]["build"] and data["samples"] is None and data["class_subfolders"] == "auto"
        and not config["classes"] and sheet.labels is not None
    )  # fmt: skip


def folder_classes_warning(config: dict[str, Any], sheet: SampleSheet) -> str | None:
    """What to say where subfolders are taken as classes unconfirmed (:func:`folder_classes`): a folder per patient
    (DICOM's usual layout, and 2D scans kept so) would be read as classes (labels, per-class outputs), and class
    folders are taken in sorted order, which must be the model's output order."""
    if not folder_classes(config, sheet):
        return None
    names = ", ".join(sheet.class_names[:4]) + (", ..." if len(sheet.class_names) > 4 else "")
    return (
        f"the subfolders of {config['data']['images']} ({names}) are taken as the classes, in this order for the "
        "model's outputs (data.class_subfolders: auto): where they are patients or series, not classes, set "
        "data.class_subfolders: false; where they are classes, list them in the model's output order under "
        "`classes` (which also silences this)"
    )


def check_model_files(
    specs: dict[str, ModelSpec], sheet: SampleSheet, several: bool, guessed: bool = False, demo: bool = False
) -> None:
    """ValueError naming the config key at fault where a model file's saved architecture (read without Keras,
    :mod:`xaipipe.modelfile`) shows that the model cannot serve: an output count that does not fit the classes or
    the labels, an input shape that preprocessing does not give, a CAM method's ``layer`` that is not in the model
    (or has no spatial output), a CAM method on a model without a spatial layer. Models not yet there (the
    demo's) and what a file does not tell for certain (custom layers) are checked by the jobs on the loaded model.
    ``guessed``: the classes are subfolders taken as classes (:func:`folder_classes`), which a class count error
    then says. ``demo``: the demo builds the models (``demo.build``); else a model file that is not there stops
    the run here, naming its key (Snakemake's MissingInputException of a checksum job named the file alone)."""
    from xaipipe.modelfile import input_problem, layer_problem, output_count, saved_layers
    from xaipipe.stages import check_model_classes

    for name, spec in specs.items():
        where = f"config key {f'models.{name}' if several else 'model.path'}"
        if not demo and not os.path.exists(spec.path):
            raise ValueError(
                f"{where}{'.path' if several else ''}: no model file {spec.path} (from {os.getcwd()}); correct the "
                "path (relative paths start at the working directory, snakemake's --directory) or copy the model there"
            )
        if not os.path.isfile(spec.path):
            continue
        n_outputs = output_count(spec.path)
        if n_outputs is not None:
            try:
                check_model_classes(spec.path, n_outputs, sheet.class_names or [], sheet.labels or [], sheet.ids)
            except ValueError as error:
                note = (
                    "; these classes are the subfolders of data.images (data.class_subfolders: auto): where they are "
                    "patients or series, not classes, set data.class_subfolders: false"
                ) if guessed else ""  # fmt: skip
                raise ValueError(f"{where}: {error}{note}") from None
        saved = saved_layers(spec.path)
        if saved is None:
            continue
        if saved.input_shape is not None and None not in saved.input_shape:
            given = (*spec.preprocessing["size"], spec.preprocessing["channels"])
            problem = input_problem(spec.path, saved.input_shape, given)
            if problem is not None:
                overrides = f" (or models.{name}.preprocessing)" if several else ""
                raise ValueError(f"{where}: {problem}{overrides}")
        for label, variant in spec.variants.items():
            if not methods.takes_layer(variant.method):
                continue
            problem = layer_problem(saved, variant.params.get("layer"), spec.path)
            named = variant.params.get("layer") is not None  # a layer named by the default's key, not chosen
            if problem is not None and named and variant.layer_key is not None:  # the default's key, not the entry
                raise ValueError(
                    f"config key {variant.layer_key}: {problem} (the default layer of methods[{variant.entry}] "
                    f"({variant.label}){f' on model {name!r}' if several else ''}: correct it, or set the method's "
                    "own `layer`)"
                )
            if problem is not None:
                default = f"models.{name}.layer" if several else "model.layer"
                raise ValueError(
                    f"config key methods[{variant.entry}] ({label}): parameter 'layer': {problem} (set the "
                    f"method's `layer`, or {default} for all its CAM methods)"
                )


def rendered_samples(sheet: SampleSheet, max_per_class: int | None) -> tuple[bool, ...]:
    """Whether each sample of ``sheet`` (in its order) gets overlays under ``render.max_per_class``.

    ``None``: every sample; ``N``: the first ``N`` samples of each class in the study's sample order
    (``0``: none), the classes being the samples' labels (class subfolders, a sample table's labels),
    or all samples one class where the study has none. By label, not by predicted class: the overlays
    are the render jobs' declared outputs, which Snakemake must know when it parses the workflow,
    before any prediction exists (and a selection by prediction would change its files whenever the
    model does).
    """
    if max_per_class is None:
        return (True,) * len(sheet)
    if max_per_class < 0:
        raise ValueError(f"config key render.max_per_class: {max_per_class} is negative; use null, 0 or more")
    taken: dict[int, int] = {}
    keep = []
    for label in sheet.labels if sheet.labels is not None else (0,) * len(sheet):
        seen = taken.get(label, 0)  # samples of this class before this one
        keep.append(seen < max_per_class)
        taken[label] = seen + 1
    return tuple(keep)


def rendered_rows(rendered: Sequence[bool], shard: str, shard_size: int) -> list[int]:
    """The rows (positions in ``shard``) of the samples that get overlays (``rendered``: :func:`rendered_samples`)."""
    return [row for row, keep in enumerate(rendered[shard_slice(shard, shard_size)]) if keep]


def overlay_names(
    sheet: SampleSheet,
    shard: str,
    shard_size: int,
    classes: int | None,
    extension: str = ".png",
    rows: Sequence[int] | None = None,
) -> list[str]:
    """The overlay file names of one shard: one per sample, or one per sample and class, in map order;
    ``rows``: of these samples of the shard only (:func:`rendered_rows`)."""
    ids = sheet.ids[shard_slice(shard, shard_size)]
    if rows is not None:
        ids = tuple(ids[row] for row in rows)
    if classes is None:
        return [overlay_name(i, None, extension) for i in ids]
    return [overlay_name(i, c, extension) for i in ids for c in range(classes)]


def overlay_archive_name(shard: str) -> str:
    """The file of ``render.archive`` that holds one shard's overlays of a method (``overlays/{method}/``)."""
    return f"shard-{shard}.zip"


def check_sample_files(config: dict[str, Any], sheet: SampleSheet) -> None:
    """ValueError naming the first samples of a sample table whose files are not in ``data.images``, and, where
    the ids lack an extension that the files have, the ``data.image_format`` to set (before any job)."""
    data = config["data"]
    if config["demo"]["build"] or data["samples"] is None:  # the demo's are built; found files exist
        return
    paths = {i: sample_path(data["images"], i, data["image_format"]) for i in sheet.ids}
    missing = [i for i, path in paths.items() if not path.exists()]
    if not missing:
        return
    hint = "; check the ids against the files, and data.images"
    folder = Path(data["images"])
    if not data["image_format"] and not has_sample_extension(missing[0]):
        stem = Path(missing[0]).name
        near = sorted(p.name[len(stem) + 1 :] for p in (folder / missing[0]).parent.glob(f"{stem}.*"))
        if near:
            hint = f"; the ids have no extension: set data.image_format (here {near[0]!r})"
    more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
    listed = ", ".join(str(paths[i]) for i in missing[:3]) + more
    raise ValueError(
        f"config key data.samples: {len(missing)} of the {len(sheet)} samples {'has' if len(missing) == 1 else 'have'} "
        f"no file: {listed}{hint}"
    )


def check_sample_ids(sheet: SampleSheet, key: str = "data.images") -> None:
    """ValueError naming the ids at fault when an id holds ``{`` or ``}`` (Snakemake reads them as
    wildcards in file names) or a tab or line break (the tables' separators), is not a plain relative path
    (``./a.png``, ``a//b.png``: one file could be listed under several ids) or two ids give the same output name
    (``a/b.png`` and ``a.b.png``)."""
    seen: dict[str, str] = {}
    for sample_id in sheet.ids:
        plain = posixpath.normpath(sample_id) if sample_id else sample_id
        if plain != sample_id:  # ./a.png, a//b.png, a/./b.png: one file under several ids, each with its own label
            raise ValueError(
                f"config key {key}: sample id {sample_id!r} is not a plain relative path (one file may then be "
                f"listed under several ids); write it as {plain!r}"
            )
        if any(c in sample_id for c in "\t\n\r"):
            raise ValueError(
                f"config key {key}: sample id {sample_id!r} contains a tab or line break, which would split its row "
                "of the tables (predictions.tsv, failures.tsv); rename the file (or its id in the sample table)"
            )
        if "{" in sample_id or "}" in sample_id:
            raise ValueError(
                f"config key {key}: sample id {sample_id!r} contains '{{' or '}}', which Snakemake reads as "
                "a wildcard in file names; rename the file (or its id in the sample table)"
            )
        name = overlay_name(sample_id, None, "")
        if name in seen:
            raise ValueError(
                f"config key {key}: sample ids {seen[name]!r} and {sample_id!r} give the same output name "
                f"{name!r} (path separators become '.'); rename one of them"
            )
        seen[name] = sample_id


def class_count(config: dict[str, Any], sheet: SampleSheet) -> int:
    """How many classes the model has, for naming the overlays of ``targets: all``."""
    if config["classes"]:
        return len(config["classes"])
    if sheet.class_names:
        return len(sheet.class_names)
    raise ValueError(
        "config key targets: 'all' needs the number of classes; list them under 'classes' "
        "or keep the images in one subfolder per class"
    )


def config_errors(config: dict[str, Any], schema_path: str) -> list[str]:
    """Every schema violation of ``config`` as one line naming the key at fault."""
    import jsonschema
    import yaml

    with open(schema_path) as f:
        schema = yaml.safe_load(f)
    lines = []
    for error in sorted(jsonschema.Draft202012Validator(schema).iter_errors(config), key=lambda e: list(e.path)):
        if error.validator in ("oneOf", "anyOf") and error.context:
            # "not valid under any of the given schemas" names no key: the deepest reason does
            error = max(error.context, key=lambda e: len(e.absolute_path))
        key = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        if error.validator == "additionalProperties":
            allowed = sorted(error.schema.get("properties", {}))
            lines.append(f"config key {key}: {error.message}; allowed keys: {', '.join(allowed)}")
        elif error.validator == "enum":
            lines.append(f"config key {key}: {error.instance!r} is not one of {error.validator_value}")
        else:
            lines.append(f"config key {key}: {error.message}")
    return lines


def demo_files(output: str) -> dict[str, str]:
    """The built-in demo's files: all in its own folder ``{output}/demo``, which holds nothing else."""
    folder = f"{output}/demo"
    return {
        "folder": folder,
        "images": f"{folder}/images",
        "masks": f"{folder}/masks",
        "model": f"{folder}/model.keras",
        "metrics": f"{folder}/model_metrics.json",
    }


def demo_model_seed(path: str, output: str) -> int | None:
    """The training seed of the demo model at ``path`` (``model.keras``: None means demo.seed -> -1,
    ``model-seed<N>.keras``: N), or None where ``path`` is no demo model of ``output``."""
    folder = os.path.abspath(demo_files(output)["folder"])
    if os.path.dirname(os.path.abspath(path)) != folder:
        return None
    name = os.path.basename(path)
    if name == "model.keras":
        return -1
    found = re.fullmatch(r"model-seed(\d+)\.keras", name)
    return int(found.group(1)) if found else None


def sample_masks(config: dict[str, Any], sheet: SampleSheet) -> list[str | None] | None:
    """Each sample's ground-truth mask file (None: none), or None when the study has no masks.

    The demo's lesion masks with ``demo.build``; else ``data.masks`` or ``data.mask_column``
    (:func:`xaipipe.evaluate.mask_paths`). Masks configured but found for no sample are an
    error naming the key, for the localization metrics would silently have nothing to measure.
    """
    from xaipipe.evaluate import mask_paths

    data = config["data"]
    if data["masks"] and data["mask_column"]:
        raise ValueError("config keys data.masks and data.mask_column: set one of them, not both")
    if config["demo"]["build"]:
        folder = demo_files(config["output"])["masks"]
        if data["masks"] not in (None, folder) or data["mask_column"]:
            raise ValueError(f"config key data.masks: with demo.build true the demo's masks ({folder}) are used")
        return [f"{folder}/{sample_id}" for sample_id in sheet.ids]
    if not data["masks"] and not data["mask_column"]:
        return None
    paths = mask_paths(config, sheet.ids)
    if all(path is None for path in paths):
        key, where = (
            ("data.masks", f"{data['masks']}/{{sample id}}")
            if data["masks"]
            else ("data.mask_column", f"column {data['mask_column']!r} of {data['samples']}")
        )
        raise ValueError(
            f"config key {key}: no mask for any of the {len(paths)} samples (looked for {where}, e.g. "
            f"{sheet.ids[0]!r}); masks mirror the sample ids"
        )
    # a table's paths may name no file (a folder's were found on disk); with skip, missing_masks_warning says so at
    # the run's start: each mask is looked up once either way
    if data["mask_column"] and config["on_error"] == "fail" and (missing := missing_masks(sheet.ids, paths)):
        sample_id, path = missing[0]  # else the evaluation jobs, after every map, stopped on the first
        raise ValueError(
            f"config key data.mask_column: {len(missing)} mask file{'s' if len(missing) > 1 else ''} named in column "
            f"{data['mask_column']!r} of {data['samples']} do{'es' if len(missing) == 1 else ''} not exist, e.g. "
            f"sample {sample_id!r}: {path}; correct the paths (relative to the table's folder) or empty those cells "
            "(no mask), or set on_error: skip to leave those samples out of the evaluation"
        )
    return paths


def missing_masks(ids: Sequence[str], paths: Sequence[str | None] | None) -> list[tuple[str, str]]:
    """(sample id, path) of each mask file that the sample table names and that does not exist."""
    return [(i, p) for i, p in zip(ids, paths or [], strict=False) if p is not None and not os.path.exists(p)]


def missing_masks_warning(config: dict[str, Any], sheet: SampleSheet, paths: Sequence[str | None] | None) -> str | None:
    """The start-of-run warning where masks named in ``data.mask_column`` do not exist (``on_error: skip``; with
    ``fail`` :func:`sample_masks` refuses them)."""
    data = config["data"]
    skip = bool(data["mask_column"]) and config["on_error"] == "skip" and not config["demo"]["build"]
    missing = missing_masks(sheet.ids, paths) if skip else []
    if not missing:
        return None
    sample_id, path = missing[0]
    return (
        f"xaipipe: {len(missing)} mask file(s) named in column {data['mask_column']!r} of "
        f"{data['samples']} do not exist (e.g. sample {sample_id!r}: {path}); on_error: skip leaves those "
        "samples out of the evaluation, each listed in failures.tsv"
    )


def resolve_data_paths(config: dict[str, Any]) -> None:
    """Fill in ``data.images`` and ``model.path`` (``null`` in the schema): the demo's, or the user's.

    With ``demo.build`` the demo writes its images and model only into its own folder
    (:func:`demo_files`): a path that points elsewhere is an error, for the demo would
    write there. Without it, both must name the user's files.
    """
    keys = {"data.images": ("data", "images", "images"), "model.path": ("model", "path", "model")}
    if config.get("models"):  # each model's path: models.<name>.path (model_specs checks model.path)
        del keys["model.path"]
        if config["demo"]["build"]:
            for name, entry in config["models"].items():
                if demo_model_seed(entry["path"], config["output"]) is None:
                    folder = demo_files(config["output"])["folder"]
                    raise ValueError(
                        f"config key models.{name}.path: {entry['path']!r}, but with demo.build true the demo's models "
                        f"are {folder}/model.keras (seed demo.seed) or {folder}/model-seed<N>.keras (seed N)"
                    )
    if config["demo"]["build"]:
        files = demo_files(config["output"])
        for key, (section, name, demo_key) in keys.items():
            given = config[section][name]
            if given is None:
                config[section][name] = files[demo_key]
            elif os.path.abspath(given) != os.path.abspath(files[demo_key]):
                raise ValueError(
                    f"config key {key}: {given!r}, but with demo.build true the demo writes only into its own "
                    f"folder {files['folder']}/: leave {key} out (or set it to {files[demo_key]}), or set "
                    "demo.build to false to explain your own data"
                )
        return
    for key, (section, name, _) in keys.items():
        if config[section][name] is None:
            what = "the folder of your images" if section == "data" else "your Keras model file (.keras or .h5)"
            raise ValueError(f"config key {key}: not set; set it to {what}, or set demo.build to true for the demo")
