import h5py
import numpy as np
import pytest

from xaipipe import __version__, h5store


def test_preprocessed_shard_round_trip(tmp_path):
    path = tmp_path / "shard-00000.h5"
    inputs = np.random.default_rng(0).normal(size=(5, 4, 4, 1)).astype(np.float32)
    with h5store.create(path, h5store.PREPROCESSED, class_names=["a", "b"]) as f:
        h5store.create_preprocessed(f, [f"s{i}.png" for i in range(5)], (4, 4, 1), [0, 1, -1, 0, 1])
        for row in range(5):
            f["inputs"][row] = inputs[row]
            h5store.put_overlay_image(f, row, np.full((3 + row, 2, 3), row, np.uint8))
    with h5store.PreprocessedShard.open(path) as shard:
        assert shard.ids == [f"s{i}.png" for i in range(5)]
        assert shard.labels.tolist() == [0, 1, -1, 0, 1]
        batches = list(shard.batches(2))
        assert [rows for rows, _ in batches] == [slice(0, 2), slice(2, 4), slice(4, 5)]
        np.testing.assert_array_equal(np.concatenate([x for _, x in batches]), inputs)
        assert shard.overlay_image(3).shape == (6, 2, 3) and (shard.overlay_image(3) == 3).all()
        assert h5store.json_attr(shard.file, "class_names") == ["a", "b"]
        assert shard.file.attrs["xaipipe_version"] == __version__


def test_predictions_round_trip(tmp_path):
    probs = np.array([[0.1, 0.9], [0.7, 0.3]], np.float32)
    h5store.write_predictions(tmp_path / "p.h5", ["a", "b"], np.array([1, -1]), probs, class_names=["x", "y"])
    table = h5store.read_predictions(tmp_path / "p.h5")
    assert table.ids == ["a", "b"]
    assert table.predicted.tolist() == [1, 0]
    np.testing.assert_array_equal(table.probabilities, probs)
    assert table.class_names == ["x", "y"]


def test_interrupted_write_leaves_nothing_that_looks_finished(tmp_path):
    path = tmp_path / "p.h5"
    with pytest.raises(RuntimeError):
        with h5store.create(path, h5store.PREDICTIONS) as f:
            f.create_dataset("ids", data=[1, 2])
            raise RuntimeError("killed mid-write")
    assert list(tmp_path.iterdir()) == []


def test_failed_rewrite_keeps_the_previous_file(tmp_path):
    path = tmp_path / "p.h5"
    h5store.write_predictions(path, ["a"], np.array([0]), np.array([[1.0, 0.0]]), class_names=[])
    with pytest.raises(KeyboardInterrupt):
        with h5store.create(path, h5store.PREDICTIONS):
            raise KeyboardInterrupt
    assert h5store.read_predictions(path).ids == ["a"]
    assert [p.name for p in tmp_path.iterdir()] == ["p.h5"]


def test_wrong_schema_is_refused(tmp_path):
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f.attrs["schema"] = "something.else"
    with pytest.raises(ValueError, match="xaipipe.predictions"):
        h5store.read_predictions(tmp_path / "x.h5")


def test_outputs_get_the_usual_permissions(tmp_path):
    import os

    from xaipipe.atomic import write_bytes_atomic

    mask = os.umask(0o022)
    try:
        write_bytes_atomic(tmp_path / "a.bin", b"x")
    finally:
        os.umask(mask)
    assert (tmp_path / "a.bin").stat().st_mode & 0o777 == 0o644
