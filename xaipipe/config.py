"""What the Snakefile needs at parse time: samples, shards, methods, output names.

Nothing here imports TensorFlow, so building the job graph stays fast.
"""

from __future__ import annotations

import os
from typing import Any

from xaipipe import demo, methods
from xaipipe.methods.params import check_params
from xaipipe.naming import overlay_name
from xaipipe.samples import SampleSheet, discover_folder, read_csv, read_json, shard_slice


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
            sheet = discover_folder(data["images"], data["class_subfolders"], config["classes"])
        elif data["samples"].lower().endswith(".csv"):
            sheet = read_csv(
                data["samples"], data["id_column"], data["class_column"], data["class_columns"], config["classes"]
            )
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


def method_specs(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Canonical method name -> its parameters, from the ``methods`` list of the config.

    An entry is a key (``gradcam``) or a mapping with ``name`` and parameters; the
    config's ``model.layer`` is the default ``layer`` of the methods that take one, its
    ``score`` the default ``score`` of all. Unknown keys and parameters, renamed
    parameters and the same method listed twice stop the run here, before any job.
    """
    specs: dict[str, dict[str, Any]] = {}
    for position, entry in enumerate(config["methods"]):
        entry = {"name": entry} if isinstance(entry, str) else dict(entry)
        key = entry.pop("name")
        try:
            name = methods.canonical_name(key)
        except ValueError as error:
            raise ValueError(f"config key methods[{position}]: {error}") from None
        if name in specs:
            raise ValueError(f"config key methods[{position}]: method {name!r} is listed twice")
        allowed = methods.parameters(name)
        for param in entry:
            renamed = methods.renamed_parameter(name, param)
            if renamed is not None:
                why = methods.renamed_message(param, renamed)
                raise ValueError(f"config key methods[{position}].{param}: {key}'s {why}")
            if param not in allowed:
                raise ValueError(
                    f"config key methods[{position}].{param}: {key} takes no parameter {param!r}; "
                    f"its parameters: {', '.join(allowed)}"
                )
        if methods.takes_layer(name):
            entry.setdefault("layer", config["model"]["layer"])
        entry.setdefault("score", config["score"])
        size = config.get("preprocessing", {}).get("size")
        try:
            check_params(entry, size)
        except ValueError as error:
            raise ValueError(f"config key methods[{position}] ({key}): {error}") from None
        specs[name] = entry
    return specs


def overlay_names(
    sheet: SampleSheet, shard: str, shard_size: int, classes: int | None, extension: str = ".png"
) -> list[str]:
    """The overlay file names of one shard: one per sample, or one per sample and class."""
    ids = sheet.ids[shard_slice(shard, shard_size)]
    if classes is None:
        return [overlay_name(i, None, extension) for i in ids]
    return [overlay_name(i, c, extension) for i in ids for c in range(classes)]


def check_sample_ids(sheet: SampleSheet, key: str = "data.images") -> None:
    """ValueError naming the ids at fault when an id holds ``{`` or ``}`` (Snakemake reads them as
    wildcards in file names) or two ids give the same output name (``a/b.png`` and ``a.b.png``)."""
    seen: dict[str, str] = {}
    for sample_id in sheet.ids:
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
    return paths


def resolve_data_paths(config: dict[str, Any]) -> None:
    """Fill in ``data.images`` and ``model.path`` (``null`` in the schema): the demo's, or the user's.

    With ``demo.build`` the demo writes its images and model only into its own folder
    (:func:`demo_files`): a path that points elsewhere is an error, for the demo would
    write there. Without it, both must name the user's files.
    """
    keys = {"data.images": ("data", "images", "images"), "model.path": ("model", "path", "model")}
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
