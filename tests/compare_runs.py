"""Compare the outputs of two pipeline runs: HDF5 datasets equal, images equal pixel for pixel.

    python tests/compare_runs.py RESULTS_A RESULTS_B [--attributes]

lists every output that differs (or exists in one run only) and exits 1 if any does.
Logs and benchmark records are left out; HDF5 attributes are compared only with
``--attributes`` (they record versions and paths, which may differ between runs that
computed the same values). The SLURM test uses the same comparison.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import h5py
import numpy as np

SKIPPED_FOLDERS = {"logs", "benchmarks"}
IMAGE_SUFFIXES = {".png", ".gif", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}


def output_files(results: Path) -> list[Path]:
    """Every output file under ``results``, relative to it (logs and benchmark records left out)."""
    return sorted(
        p.relative_to(results)
        for p in results.rglob("*")
        if p.is_file() and not SKIPPED_FOLDERS & set(p.relative_to(results).parts)
    )


def h5_contents(path: Path) -> tuple[dict[str, object], dict[str, np.ndarray]]:
    """(attributes of the root, dataset name -> values) of an HDF5 file."""
    datasets: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as f:
        attributes = dict(f.attrs)
        f.visititems(lambda name, obj: datasets.update({name: obj[()]} if isinstance(obj, h5py.Dataset) else {}))
    return attributes, datasets


def _read_image(path: Path) -> np.ndarray:
    if path.suffix.lower() == ".gif":
        ok, frames = cv2.imreadanimation(str(path))
        return np.stack(frames) if ok else np.array([])
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def _keras_contents(path: Path) -> tuple[bytes, object]:
    """A ``.keras`` archive's weights and its architecture, without what differs between two saves of
    one model (the save date in metadata.json, the memory addresses in ``shared_object_id``)."""
    import json
    import zipfile

    def without_ids(value: object) -> object:
        if isinstance(value, dict):
            return {k: without_ids(v) for k, v in value.items() if k != "shared_object_id"}
        if isinstance(value, list):
            return [without_ids(v) for v in value]
        return value

    with zipfile.ZipFile(path) as archive:
        return archive.read("model.weights.h5"), without_ids(json.loads(archive.read("config.json")))


def difference(a: Path, b: Path, attributes: bool = False) -> str | None:
    """How two output files differ, or None when they hold the same values."""
    name = a.name.lower()
    if name.endswith(".h5"):
        (attrs_a, data_a), (attrs_b, data_b) = h5_contents(a), h5_contents(b)
        if data_a.keys() != data_b.keys():
            return f"datasets differ: {sorted(data_a.keys() ^ data_b.keys())}"
        for key in data_a:
            floats = all(np.asarray(d).dtype.kind in "fc" for d in (data_a[key], data_b[key]))
            if not np.array_equal(data_a[key], data_b[key], equal_nan=floats):  # NaN: a value left out in both
                return f"dataset {key} differs"
        if attributes and attrs_a != attrs_b:
            return "attributes differ"
        return None
    if a.suffix.lower() in IMAGE_SUFFIXES:
        image_a, image_b = _read_image(a), _read_image(b)
        same = image_a.shape == image_b.shape and np.array_equal(image_a, image_b)
        return None if same else "pixels differ"
    if name.endswith((".nii", ".nii.gz", ".mha", ".mhd")):
        import SimpleITK as sitk

        image_a, image_b = sitk.ReadImage(str(a)), sitk.ReadImage(str(b))
        same = np.array_equal(sitk.GetArrayFromImage(image_a), sitk.GetArrayFromImage(image_b)) and np.allclose(
            image_a.GetSpacing(), image_b.GetSpacing()
        )
        return None if same else "voxels or spacing differ"
    if name.endswith(".keras"):
        return None if _keras_contents(a) == _keras_contents(b) else "model weights or architecture differ"
    if name.endswith(".npy"):
        return None if np.array_equal(np.load(a), np.load(b)) else "array differs"
    return None if a.read_bytes() == b.read_bytes() else "bytes differ"


def compare(results_a: Path, results_b: Path, attributes: bool = False) -> list[str]:
    """One line per output that differs between two runs' result folders; empty when they agree."""
    files_a, files_b = set(output_files(results_a)), set(output_files(results_b))
    problems = [f"only in {results_a}: {p}" for p in sorted(files_a - files_b)]
    problems += [f"only in {results_b}: {p}" for p in sorted(files_b - files_a)]
    for path in sorted(files_a & files_b):
        problem = difference(results_a / path, results_b / path, attributes)
        if problem:
            problems.append(f"{path}: {problem}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results_a", type=Path)
    parser.add_argument("results_b", type=Path)
    parser.add_argument("--attributes", action="store_true", help="compare HDF5 root attributes too")
    args = parser.parse_args(argv)
    problems = compare(args.results_a, args.results_b, args.attributes)
    n = len(output_files(args.results_a))
    for line in problems:
        print(line)
    print(f"{n} outputs compared: {'all equal' if not problems else f'{len(problems)} differ'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
