"""The comparison of two runs' outputs that the fault and SLURM tests rely on."""

from __future__ import annotations

import h5py
import numpy as np

from compare_runs import compare


def write(results, name, values):
    results.mkdir(parents=True, exist_ok=True)
    with h5py.File(results / name, "w") as f:
        f.create_dataset("values", data=np.asarray(values))


def test_nan_in_the_same_places_is_equal_and_other_values_are_not(tmp_path):
    # NaN marks a value left out (a map without a mask region): two runs that leave out the same agree
    write(tmp_path / "a", "eval.h5", [0.5, np.nan, 1.0])
    write(tmp_path / "b", "eval.h5", [0.5, np.nan, 1.0])
    assert compare(tmp_path / "a", tmp_path / "b") == []
    write(tmp_path / "b", "eval.h5", [0.5, 0.0, 1.0])
    assert compare(tmp_path / "a", tmp_path / "b") == ["eval.h5: dataset values differs"]
    write(tmp_path / "a", "ids.h5", np.array([b"x", b"y"]))
    write(tmp_path / "b", "ids.h5", np.array([b"x", b"z"]))
    assert "ids.h5: dataset values differs" in compare(tmp_path / "a", tmp_path / "b")
