"""Caches that are stale, damaged or half-written are never used: each is named, and rebuilt or refused."""

from __future__ import annotations

import hashlib
import os

import cv2
import h5py
import numpy as np
import pytest

from xaipipe import caches, h5store
from xaipipe.atomic import atomic_path
from xaipipe.config import resolve_data_paths
from xaipipe.preprocess import Preprocessing


def tiny_model(path, seed: int) -> None:
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1))
    features = keras.layers.Conv2D(2, 3, activation="relu", name="conv")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(features)
    keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(pooled)).save(path)


@pytest.fixture(scope="module")
def shard(tmp_path_factory):
    """A preprocessed shard of two 8x8 images (minmax), the predictions of model A, and models A and B."""
    from xaipipe.stages import predict_shard, preprocess_shard

    folder = tmp_path_factory.mktemp("cache")
    rng = np.random.default_rng(0)
    paths = [folder / f"img{k}.png" for k in range(2)]
    for path in paths:
        cv2.imwrite(str(path), rng.integers(0, 256, (8, 8), dtype=np.uint8))
    preprocessing = Preprocessing(size=(8, 8), channels=1, standardize="minmax")
    preprocess_shard(paths, ["img0.png", "img1.png"], None, None, preprocessing, folder / "pre.h5")
    tiny_model(folder / "a.keras", seed=1)
    tiny_model(folder / "b.keras", seed=2)
    predict_shard(folder / "pre.h5", folder / "a.keras", folder / "pred.h5", 2)
    return folder, preprocessing


def test_heatmaps_refuse_predictions_of_another_model(shard):
    from xaipipe.stages import compute_heatmaps_shard

    folder, preprocessing = shard
    with pytest.raises(ValueError) as error:
        compute_heatmaps_shard(
            folder / "pre.h5", folder / "pred.h5", folder / "b.keras", "gradcam", {}, "argmax", 2, folder / "maps.h5",
            preprocessing=preprocessing,
        )  # fmt: skip
    message = str(error.value)
    assert str(folder / "pred.h5") in message and str(folder / "b.keras") in message
    assert "--forcerun predict" in message
    assert not (folder / "maps.h5").exists()


def test_predictions_and_heatmaps_refuse_a_shard_preprocessed_otherwise(shard):
    from xaipipe.stages import compute_heatmaps_shard, predict_shard

    folder, _ = shard
    other = Preprocessing(size=(8, 8), channels=1, standardize="tf")
    with pytest.raises(ValueError) as error:
        predict_shard(folder / "pre.h5", folder / "a.keras", folder / "pred2.h5", 2, preprocessing=other)
    assert str(folder / "pre.h5") in str(error.value) and "standardize" in str(error.value)
    assert "--forcerun preprocess" in str(error.value)
    with pytest.raises(ValueError, match="standardize"):
        compute_heatmaps_shard(
            folder / "pre.h5", folder / "pred.h5", folder / "a.keras", "gradcam", {}, "argmax", 2, folder / "maps.h5",
            preprocessing=other,
        )  # fmt: skip
    assert not (folder / "pred2.h5").exists() and not (folder / "maps.h5").exists()


def test_the_same_settings_and_model_are_accepted(shard):
    from xaipipe.stages import compute_heatmaps_shard

    folder, preprocessing = shard
    compute_heatmaps_shard(
        folder / "pre.h5", folder / "pred.h5", folder / "a.keras", "gradcam", {}, "argmax", 2, folder / "maps.h5",
        preprocessing=Preprocessing(size=(8, 8), channels=1, standardize="minmax"),  # an equal, new object
    )  # fmt: skip
    with h5store.HeatmapsFile.open(folder / "maps.h5") as maps:
        assert len(maps) == 2


def predictions_file(path) -> None:
    h5store.write_predictions(path, ["a", "b"], np.array([0, 1]), np.eye(2, dtype=np.float32), class_names=["x", "y"])


def test_a_truncated_cache_is_named_with_the_way_to_recover(tmp_path):
    path = tmp_path / "shard-00000.h5"
    predictions_file(path)
    path.write_bytes(path.read_bytes()[:800])
    with pytest.raises(ValueError) as error:
        h5store.read_predictions(path)
    assert str(path) in str(error.value) and "delete it" in str(error.value)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.attrs["schema"] = "something.else"
    with pytest.raises(ValueError) as error:
        h5store.read_predictions(other)
    assert str(other) in str(error.value) and "'something.else'" in str(error.value) and "delete it" in str(error.value)


def test_damaged_caches_are_moved_aside_and_sound_ones_left(tmp_path):
    names = ("sound", "cut", "empty", "foreign", "gone")
    sound, truncated, empty, foreign, missing = (tmp_path / f"{n}.h5" for n in names)
    for path in (sound, truncated, foreign):
        predictions_file(path)
    truncated.write_bytes(truncated.read_bytes()[:800])
    empty.write_bytes(b"")
    with h5py.File(foreign, "a") as f:
        del f["probabilities"]  # the right schema attribute, a dataset missing
    sound_bytes = sound.read_bytes()
    moved = caches.move_damaged_aside({p: h5store.PREDICTIONS for p in (sound, truncated, empty, foreign, missing)})
    assert [m[0] for m in moved] == [truncated, empty, foreign]
    assert all(str(m[0]) in m[1] and f"{m[0]}.damaged" in m[1] for m in moved)
    assert sound.read_bytes() == sound_bytes
    assert not truncated.exists() and (tmp_path / "cut.h5.damaged").exists()
    assert (tmp_path / "empty.h5.damaged").exists() and (tmp_path / "foreign.h5.damaged").exists()
    assert not missing.exists()


def test_a_model_checksum_is_forgotten_when_the_model_changed(tmp_path):
    model, checksum = tmp_path / "model.keras", tmp_path / "checksums/model.sha256"
    model.write_bytes(b"model one")
    caches.write_model_checksum(model, checksum)
    assert checksum.read_text().split()[0] == hashlib.sha256(b"model one").hexdigest()
    assert caches.forget_stale_checksum(model, checksum) is None  # unchanged: kept
    assert checksum.exists()
    mtime = model.stat().st_mtime_ns
    model.write_bytes(b"model two")
    os.utime(model, ns=(mtime - 10**10, mtime - 10**10))  # older than before
    dry = caches.forget_stale_checksum(model, checksum, dry_run=True)  # snakemake -n: said, nothing removed
    assert checksum.exists() and str(model) in dry and "this dry run removed nothing" in dry
    message = caches.forget_stale_checksum(model, checksum)
    assert not checksum.exists() and str(model) in message and "dry run" not in message
    checksum.parent.mkdir(exist_ok=True)
    checksum.write_text("garbage")
    assert caches.forget_stale_checksum(model, checksum) is not None and not checksum.exists()
    assert caches.forget_stale_checksum(tmp_path / "absent.keras", checksum) is None


def test_a_new_write_removes_the_leftovers_of_a_killed_one(tmp_path):
    target = tmp_path / "shard-00000.h5"
    stale = tmp_path / ".shard-00000.h5.k1l9x_2a.part"  # what a killed writer left
    other = tmp_path / ".shard-00000.h5.png.abcd1234.part"  # another target's
    stale.write_bytes(b"half")
    other.write_bytes(b"half")
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"whole")
    assert target.read_bytes() == b"whole"
    assert not stale.exists() and other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [other.name, target.name]


def test_data_paths_are_the_demos_or_required():
    def config(build, images=None, model=None):
        return {"output": "out", "demo": {"build": build}, "data": {"images": images}, "model": {"path": model}}

    demo = config(True, model="out/demo/model.keras")
    resolve_data_paths(demo)
    assert (demo["data"]["images"], demo["model"]["path"]) == ("out/demo/images", "out/demo/model.keras")
    with pytest.raises(ValueError, match="config key model.path: .*out/demo/"):
        resolve_data_paths(config(True, model="results/demo/model.keras"))
    with pytest.raises(ValueError, match="config key data.images: not set"):
        resolve_data_paths(config(False, model="m.keras"))
    with pytest.raises(ValueError, match="config key model.path: not set"):
        resolve_data_paths(config(False, images="images"))


def test_a_sample_file_replaced_with_its_date_kept_removes_its_shard_and_only_that(tmp_path, monkeypatch):
    from xaipipe.stages import preprocess_shard

    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png", "c.png"):
        cv2.imwrite(str(images / name), rng.integers(0, 256, (8, 8), dtype=np.uint8))
    pre = Preprocessing(size=(8, 8), channels=1)
    shards = [tmp_path / "shard-0.h5", tmp_path / "shard-1.h5"]
    preprocess_shard([images / "a.png", images / "b.png"], ["a.png", "b.png"], None, None, pre, shards[0])
    preprocess_shard([images / "c.png"], ["c.png"], None, None, pre, shards[1])
    with h5store.PreprocessedShard.open(shards[0]) as f:  # the record: the files' sha256, as sha256sum computes it
        assert f.source_sha256 == [hashlib.sha256((images / n).read_bytes()).hexdigest() for n in ("a.png", "b.png")]

    def check():
        return caches.forget_changed_sources(shards, lambda i: str(images / i), caches.StatCache(tmp_path / "st.json"))

    assert check() == [] and all(s.exists() for s in shards)  # nothing changed: each file hashed once, recorded
    hashed = []
    monkeypatch.setattr(caches, "content_sha256", lambda p: hashed.append(p) or hashlib.sha256(b"").hexdigest())
    assert check() == [] and hashed == []  # a file whose size, dates and inode did not move is not read again
    monkeypatch.undo()
    os.utime(images / "c.png", ns=(10**18, 10**18))  # touched, the same content: hashed again, nothing removed
    assert check() == [] and shards[1].exists()
    # a and b swapped by mv, each keeping its modification time (a mislabelled pair put right)
    os.replace(images / "a.png", tmp_path / "swap.png")
    os.replace(images / "b.png", images / "a.png")
    os.replace(tmp_path / "swap.png", images / "b.png")
    (message,) = check()
    assert not shards[0].exists() and shards[1].exists()
    assert "2 sample file(s) of" in message and "('a.png', 'b.png'; whatever their dates)" in message


def test_a_metaimages_data_file_replaced_removes_its_shard(tmp_path):
    # the record hashed the .mhd header alone: a new .raw beside it went unseen, the maps those of the old volume
    import SimpleITK as sitk

    from xaipipe.stages import preprocess_shard

    def write(folder, value):
        folder.mkdir(exist_ok=True)
        volume = np.zeros((4, 5, 6), np.uint8)
        volume[1, 2, value] = 200
        sitk.WriteImage(sitk.GetImageFromArray(volume), str(folder / "vol.mhd"))
        return folder / "vol.mhd"

    header = write(tmp_path / "data", 1)
    assert [p.name for p in caches.sample_files(header)] == ["vol.mhd", "vol.raw"]
    shard = tmp_path / "shard.h5"
    pre = Preprocessing(size=(4, 5, 6), channels=1, interpolation="linear")
    preprocess_shard([header], ["vol.mhd"], None, None, pre, shard)

    def check():
        stats = caches.StatCache(tmp_path / "s")
        return caches.forget_changed_sources([shard], lambda i: str(tmp_path / "data" / i), stats)

    assert check() == [] and shard.exists()
    other = write(tmp_path / "other", 4).with_suffix(".raw")  # the same header, the blob moved
    assert other.read_bytes() != (tmp_path / "data/vol.raw").read_bytes()
    os.utime(other, ns=(10**9, 10**9))  # an older file
    os.replace(other, tmp_path / "data/vol.raw")
    (message,) = check()
    assert "'vol.mhd'" in message and not shard.exists()


def test_former_model_folders_are_a_removed_models_not_another_studys(tmp_path):
    # the shipped demo's output holds config/methods.yaml's study (results/methods): its 1,220 files were called
    # outputs of no sample of the shipped config; a model removed from `models` left its folder unnamed before
    out = tmp_path / "results"
    for folder in ("current/predictions", "removed/heatmaps/gradcam", "methods/predictions", "demo/images"):
        (out / folder).mkdir(parents=True)
    (out / "methods" / caches.STUDY_MARK).write_text("model\tvariant\n")  # every study writes it at its root
    assert caches.former_model_folders(out, [out / "current"]) == [str(out / "removed")]
