"""Property-based tests: random sample tables, images and configs either work or raise the documented error.

The documented errors are ValueError (FileNotFoundError for a missing file) with a
message that names the file, the sample or the config key at fault; any other
exception, or a result that breaks the contract, is a bug that hypothesis shrinks to
a small example.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xaipipe import config as xconfig
from xaipipe.preprocess import INTERPOLATIONS, STANDARDIZE_MODES, Preprocessing
from xaipipe.samples import read_csv, read_json
from xaipipe.subfunctions import Pipeline, from_config

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml"
SCHEMA = yaml.safe_load(SCHEMA_PATH.read_text())
# XAIPIPE_EXAMPLES raises the number of examples for a deeper search than the suite's quick one
FAST = settings(max_examples=int(os.environ.get("XAIPIPE_EXAMPLES", 80)), deadline=None, suppress_health_check=[HealthCheck.too_slow])

CLASS_POOL = ["benign", "malignant", "normal", "cat", "dog"]

# --- sample tables ---------------------------------------------------------------------

cells = st.one_of(
    st.sampled_from(CLASS_POOL + ["malignent", "", " ", "0", "1", "2", "7", "-1", "1.0", "x y"]),
    st.text(alphabet='ab01,"; \t-', max_size=4),
)
ids = st.one_of(st.sampled_from(["a", "b", "c", "d/e.png", " a ", ""]), st.text(alphabet="abc/._ ", max_size=5))
classes_strategy = st.one_of(st.just([]), st.lists(st.sampled_from(CLASS_POOL), min_size=1, max_size=4, unique=True))


def _check_sheet(sheet, classes) -> None:
    """The contract of a sheet that was read: aligned labels, in range, names from the config where given."""
    assert len(sheet.ids) >= 1 and all(i.strip() for i in sheet.ids)
    assert len(set(sheet.ids)) == len(sheet.ids)
    if sheet.labels is not None:
        assert len(sheet.labels) == len(sheet.ids)
        assert all(isinstance(label, int) and label >= 0 for label in sheet.labels)
        if sheet.class_names is not None:
            assert all(label < len(sheet.class_names) for label in sheet.labels)
    if classes and sheet.class_names is not None:
        assert list(sheet.class_names) == list(classes)


def _documented(error: Exception, path: Path) -> None:
    assert isinstance(error, (ValueError, FileNotFoundError)), repr(error)
    assert path.name in str(error), f"the message names no file: {error}"


@FAST
@given(
    header_extra=st.lists(st.sampled_from(["CLASS", "benign", "malignant", "normal", "ID", "SAMPLE"]), max_size=3),
    rows=st.lists(st.tuples(ids, st.lists(cells, max_size=4)), max_size=6),
    bom=st.booleans(),
    id_column=st.sampled_from(["SAMPLE", "ID"]),
    class_column=st.sampled_from([None, "CLASS", "missing"]),
    class_columns=st.sampled_from([[], ["benign", "malignant"], ["malignant", "benign", "normal"], ["benign", "benign"]]),
    classes=classes_strategy,
)
def test_random_csv_tables_work_or_name_the_file(header_extra, rows, bom, id_column, class_column, class_columns, classes):
    header = ["SAMPLE", *header_extra]
    lines = [",".join(header)] + [",".join([sample_id, *values]) for sample_id, values in rows]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "table.csv"
        path.write_bytes(("\ufeff" if bom else "").encode() + ("\n".join(lines) + "\n").encode())
        try:
            sheet = read_csv(path, id_column, class_column, class_columns, classes)
        except Exception as error:  # noqa: BLE001 - the property: only the documented errors
            _documented(error, path)
            return
    _check_sheet(sheet, classes)
    # in file order, stripped; a row of no id and no cells is a blank line, which CSV skips (csv.DictReader, pandas)
    assert sheet.ids == tuple(r[0].strip() for r in rows if r[0] or r[1])


@FAST
@given(
    table=st.dictionaries(
        ids,
        st.one_of(
            cells,
            st.integers(-2, 6),
            st.floats(allow_nan=False),
            st.none(),
            st.booleans(),
            st.lists(st.integers(0, 2), max_size=4),
            st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
        ),
        max_size=6,
    ),
    raw=st.sampled_from([None, "", "[1, 2]", '{"a": 1, "a": 2}', "{not json", '"text"', "\x00", '{"a": "\udcff"}']),
    bom=st.booleans(),
    classes=classes_strategy,
)
def test_random_json_tables_work_or_name_the_file(table, raw, bom, classes):
    text = json.dumps(table) if raw is None else raw
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "table.json"
        path.write_bytes(("\ufeff" if bom else "").encode() + text.encode("utf-8", "surrogateescape"))
        try:
            sheet = read_json(path, classes)
        except Exception as error:  # noqa: BLE001
            _documented(error, path)
            return
    _check_sheet(sheet, classes)
    assert list(sheet.ids) == list(table)


def test_a_missing_table_is_a_file_not_found_error_naming_it(tmp_path):
    for reader in (read_csv, read_json):
        with pytest.raises(FileNotFoundError, match="nowhere"):
            reader(tmp_path / "nowhere")


# --- subfunctions and the model input -----------------------------------------------------

DTYPES = {"uint8": (0, 255), "uint16": (0, 65535), "int16": (-2000, 3000), "float32": (-1e4, 1e4)}
sizes = st.integers(1, 9)


@st.composite
def images(draw):
    """A random gray or RGB image (2D) or volume (3D) of a random type, and its number of spatial axes."""
    dims = draw(st.sampled_from([2, 3]))
    shape = tuple(draw(sizes) for _ in range(dims)) + draw(st.sampled_from([(), (1,), (3,)]))
    dtype = draw(st.sampled_from(sorted(DTYPES)))
    lo, hi = DTYPES[dtype]
    if dtype == "float32":
        lo, hi = draw(st.sampled_from([(0.0, 1.0), (0.0, 255.0), (lo, hi), (-3e38, 3e38)]))
    seed = draw(st.integers(0, 2**16))
    values = np.random.default_rng(seed).uniform(lo, hi, shape)
    return values.astype(dtype), dims


def _shape_param(dims):
    return st.one_of(
        st.lists(st.integers(-1, 12), min_size=dims - 1, max_size=dims + 1),
        st.lists(st.floats(0.5, 12.5), min_size=dims, max_size=dims),
        st.just("square"),
        st.integers(1, 5),
    )


@st.composite
def subfunction_entries(draw, dims):
    name = draw(st.sampled_from(["padding", "crop", "clip", "color_constancy", "channels", "blur"]))
    entry = {"name": name}
    if name == "padding":
        if draw(st.booleans()):
            entry["shape"] = draw(_shape_param(dims))
        if draw(st.booleans()):
            entry["mode"] = draw(st.sampled_from(["constant", "edge", "reflect", "wrap", "median", "zero"]))
    elif name == "crop":
        entry["shape"] = draw(_shape_param(dims))
        if draw(st.booleans()):
            entry["mode"] = draw(st.sampled_from(["center", "random", "left"]))
    elif name == "clip":
        bound = st.one_of(
            st.none(),
            st.floats(-3000, 70000),
            st.integers(-70000, 70000),
            st.sampled_from([-1, 300, 65536]),
            st.lists(st.floats(0, 255), min_size=1, max_size=3),
        )
        entry["min"], entry["max"] = draw(bound), draw(bound)
    elif name == "color_constancy":
        if draw(st.booleans()):
            entry["power"] = draw(st.one_of(st.floats(-2, 12), st.sampled_from([0, 1, 6, "six"])))
    elif name == "channels":
        entry["channels"] = draw(st.sampled_from([1, 2, 3, 0]))
    if draw(st.integers(0, 9)) == 0:
        entry["unknown_parameter"] = 1
    return entry


@FAST
@given(data=st.data())
def test_random_subfunctions_keep_their_contract_or_raise_a_value_error(data):
    image, dims = data.draw(images())
    entry = data.draw(subfunction_entries(dims))
    try:
        step = from_config(entry)
        out = Pipeline([step], seed=1)(image, dims, sample_index=data.draw(st.integers(0, 3)))
    except ValueError as error:
        assert str(error)
        return
    assert out.shape[:dims] and min(out.shape[:dims]) >= 1
    assert out.ndim - dims in (0, 1)  # gray, or a channel axis
    name = entry["name"]
    if name == "padding":
        assert all(o >= i for o, i in zip(out.shape[:dims], image.shape[:dims])) and out.dtype == image.dtype
        target = max(image.shape[:dims]) if entry.get("shape", "square") == "square" else None
        if target is not None:
            assert out.shape[:dims] == (target,) * dims
    elif name == "crop":
        assert list(out.shape[:dims]) == list(entry["shape"]) and out.dtype == image.dtype
    elif name == "clip":
        lo, hi = entry["min"], entry["max"]
        if isinstance(lo, (int, float)):
            assert out.min() >= np.floor(lo) - 1e-3 * abs(lo)
        if isinstance(hi, (int, float)):
            assert out.max() <= np.ceil(hi) + 1e-3 * abs(hi)
    elif name == "color_constancy":
        assert out.dtype == (image.dtype if image.dtype in (np.uint8, np.uint16) else np.float32)
        assert np.isfinite(out).all()
    elif name == "channels":
        assert (out.ndim == dims + 1 and out.shape[-1] == 3) == (entry["channels"] == 3)
        assert out.shape[:dims] == image.shape[:dims]


@st.composite
def preprocessing_configs(draw, dims):
    return {
        "size": [draw(sizes) for _ in range(dims)],
        "channels": draw(st.sampled_from([1, 3])),
        "standardize": draw(st.sampled_from(STANDARDIZE_MODES)),
        "interpolation": draw(st.sampled_from(["auto", *INTERPOLATIONS])),
        "subfunctions": draw(st.lists(subfunction_entries(dims), max_size=3)),
        "seed": draw(st.integers(0, 5)),
    }


@FAST
@given(data=st.data())
def test_random_images_and_preprocessing_give_the_model_input_or_a_value_error(data):
    image, dims = data.draw(images())
    cfg = data.draw(preprocessing_configs(dims))
    try:
        pre = Preprocessing.from_config(cfg)
    except ValueError as error:
        assert "preprocessing." in str(error), f"the message names no config key: {error}"
        return
    try:
        x = pre.model_input(image, sample_index=data.draw(st.integers(0, 3)))
    except ValueError as error:
        assert str(error), "an empty message"
        return
    assert x.shape == (*cfg["size"], cfg["channels"]) and x.dtype == np.float32
    assert np.isfinite(x).all()
    if cfg["standardize"] == "minmax":
        assert x.min() >= 0 and x.max() <= 1 + 1e-6
    if cfg["standardize"] == "tf":
        assert x.min() >= -1 - 1e-5 and x.max() <= 1 + 1e-5


# --- config validation --------------------------------------------------------------------


def _schema_value(prop: dict, depth: int = 0):
    """A strategy of values for a schema property: valid ones drawn from its type, enum and bounds, and junk."""
    junk = st.one_of(st.none(), st.booleans(), st.integers(-3, 300), st.text(max_size=4), st.just([]), st.just({}))
    if "enum" in prop:
        valid = st.sampled_from(prop["enum"])
    elif "oneOf" in prop:
        valid = st.one_of(*[_schema_value(p, depth) for p in prop["oneOf"]])
    else:
        kind = prop.get("type")
        kinds = kind if isinstance(kind, list) else [kind]
        options = []
        for kind in kinds:
            if kind == "object" and "properties" in prop and depth < 2:
                options.append(
                    st.fixed_dictionaries(
                        {},
                        optional={k: _schema_value(v, depth + 1) for k, v in prop["properties"].items()},
                    )
                )
            elif kind == "integer":
                options.append(st.integers(prop.get("minimum", -2) - 1, 40))
            elif kind == "number":
                options.append(st.floats(-1, 3, allow_nan=False))
            elif kind == "string":
                options.append(st.sampled_from(["results", "x", "", "a.csv", "a.json", "gradcam", "conv"]))
            elif kind == "boolean":
                options.append(st.booleans())
            elif kind == "null":
                options.append(st.none())
            elif kind == "array":
                items = prop.get("items", {})
                item = _schema_value(items, depth + 1) if items else st.sampled_from(["gradcam", "gc", "ig", "bogus"])
                if "oneOf" in items:  # methods: keys, or mappings with a name and parameters
                    item = st.one_of(
                        st.sampled_from(["gradcam", "gc", "ig", "occlusion", "bogus"]),
                        st.fixed_dictionaries(
                            {"name": st.sampled_from(["gradcam", "ig", "lime", "bogus"])},
                            optional={
                                "layer": st.sampled_from([None, "conv"]),
                                "score": st.sampled_from(["logits", "probabilities", "x"]),
                                "steps": st.integers(-1, 60),
                                "batch_size": st.integers(1, 4),
                            },
                        ),
                    )
                options.append(st.lists(item, max_size=3))
        valid = st.one_of(*options) if options else junk
    return st.one_of(valid, valid, valid, junk)


@st.composite
def configs(draw):
    config = draw(_schema_value(SCHEMA))
    if not isinstance(config, dict):
        return config
    if draw(st.integers(0, 7)) == 0:
        config[draw(st.sampled_from(["unknown", "method", "Classes"]))] = 1
    return config


def _image_folder(folder: Path) -> Path:
    from xaipipe.writers import write_png

    for name in ("a/1.png", "b/2.png"):
        write_png(folder / "images" / name, np.zeros((4, 4), np.uint8))
    (folder / "table.csv").write_text("SAMPLE,CLASS\na/1.png,a\nb/2.png,1\n")
    (folder / "table.json").write_text(json.dumps({"a/1.png": [1, 0], "b/2.png": [0, 1]}))
    return folder


@FAST
@given(config=configs(), data_source=st.sampled_from(["folder", "csv", "json", "missing"]))
def test_random_configs_are_accepted_or_refused_naming_the_key(config, data_source):
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    config = copy.deepcopy(config)
    if not isinstance(config, dict):
        return  # a YAML file whose top level is not a mapping: Snakemake itself refuses it
    try:
        validate(config, str(SCHEMA_PATH))
    except WorkflowError:
        problems = xconfig.config_errors(config, str(SCHEMA_PATH))
        assert problems and all(p.startswith("config key ") for p in problems), problems
        return
    with tempfile.TemporaryDirectory() as folder:
        root = _image_folder(Path(folder))
        data = config["data"]
        data["images"] = str(root / ("nowhere" if data_source == "missing" else "images"))
        data["samples"] = {"csv": str(root / "table.csv"), "json": str(root / "table.json")}.get(data_source)
        for step in (xconfig.sample_sheet, xconfig.method_specs, lambda c: Preprocessing.from_config(c["preprocessing"])):
            try:
                step(config)
            except ValueError as error:
                assert "config key" in str(error) or "preprocessing." in str(error), error
