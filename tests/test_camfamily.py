"""CAMFamily: several CAM methods from one pass give each method's own maps; members that cannot share are refused.

The expected maps come from each method built on its own (``methods.create``: its own
compiled ScoreGradients and reduce, an independent code path), never from the family.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from xaipipe import methods
from xaipipe.methods.camfamily import CAMFamily, create_family

FIVE = ["gradcam", "gradcam++", "hirescam", "xgradcam", "layercam"]


def small_cnn(shape: tuple[int, ...], seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    conv, gap = (
        (keras.layers.Conv2D, keras.layers.GlobalAveragePooling2D)
        if len(shape) == 3
        else (keras.layers.Conv3D, keras.layers.GlobalAveragePooling3D)
    )
    inputs = keras.Input(shape)
    x = conv(6, 3, padding="same", activation="relu", name="early")(inputs)
    x = conv(8, 3, strides=2, padding="same", activation="relu", name="last_conv")(x)
    x = gap()(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))


def inputs_for(shape: tuple[int, ...], n: int = 3) -> np.ndarray:
    return np.random.default_rng(1).uniform(0.0, 1.0, (n, *shape)).astype(np.float32)


@pytest.mark.parametrize("shape", [(16, 16, 3), (8, 8, 8, 1)], ids=["2d", "3d"])
def test_family_gives_each_methods_own_maps(shape):
    model = small_cnn(shape)
    x = inputs_for(shape)
    # each variant with its own normalization, as a config's variants may set it
    variants = [
        ("gradcam", {}),
        ("gradcam++", {"normalize": "positive"}),
        ("hirescam", {}),
        ("xgradcam", {"normalize": "absolute"}),
        ("layercam", {}),
        ("gradcam", {"normalize": "positive"}),  # a method listed twice (two labels)
    ]
    _, family = create_family(model, variants)
    for classes in (np.array([[0], [2], [1]]), np.tile(np.arange(3), (3, 1))):  # one target and every class
        results = family.explain(x, classes)
        assert len(results) == len(variants)
        for (key, params), (raw, normalized) in zip(variants, results, strict=True):
            alone = methods.create(key, model, **params)
            expected_raw, expected_normalized = alone.explain(x, classes)
            assert raw.shape == expected_raw.shape == (3, classes.shape[1], *shape[:-1])
            assert np.abs(expected_raw).max() > 0  # a map worth comparing
            np.testing.assert_allclose(raw, expected_raw, rtol=1e-5, atol=1e-6 * np.abs(expected_raw).max())
            np.testing.assert_allclose(normalized, expected_normalized, atol=1e-5)
    # the five maps are not the same map: the members really are different methods
    raws = [raw for raw, _ in family.explain(x, np.array([[0], [2], [1]]))[:5]]
    # (behind global average pooling Grad-CAM equals HiResCAM; LayerCAM drops the negative gradients first)
    assert not np.allclose(raws[0], raws[4]) and not np.allclose(raws[0], raws[1])


@pytest.mark.parametrize("shape", [(16, 16, 3), (8, 8, 8, 1)], ids=["2d", "3d"])
def test_saliency_and_input_x_gradient_share_the_cams_pass(shape):
    """Input-gradient members among the CAM members, in any order: one forward pass, the layer's and the
    input's gradients, and every member's maps as its own method gives them."""
    model = small_cnn(shape, seed=5)
    x = inputs_for(shape)
    variants = [("saliency", {}), ("gradcam", {}), ("inputxgradient", {"normalize": "signed"}),
                ("gradcam++", {}), ("saliency", {"normalize": "minmax"})]  # fmt: skip
    _, family = create_family(model, variants)
    assert type(family._gradients).__name__ == "GuidedCAMGradients"  # one pass for both kinds of gradients
    for classes in (np.array([[0], [2], [1]]), np.tile(np.arange(3), (3, 1))):
        results = family.explain(x, classes)
        for (key, params), (raw, normalized) in zip(variants, results, strict=True):
            expected_raw, expected_normalized = methods.create(key, model, **params).explain(x, classes)
            assert raw.shape == expected_raw.shape == (3, classes.shape[1], *shape[:-1])
            assert np.abs(expected_raw).max() > 0
            np.testing.assert_allclose(raw, expected_raw, rtol=1e-5, atol=1e-6 * np.abs(expected_raw).max())
            np.testing.assert_allclose(normalized, expected_normalized, atol=1e-5)
    # saliency is max_c |dS/dx_c| by hand, from TensorFlow's own gradient of the logit of class 0
    import tensorflow as tf

    saliency = family.explain(x, np.zeros((3, 1), np.int32))[0][0][:, 0]
    features, dense = keras.Model(model.inputs, model.layers[-2].output), model.layers[-1]
    with tf.GradientTape() as tape:
        xt = tf.constant(x)
        tape.watch(xt)
        logit = tf.reduce_sum((tf.matmul(features(xt), dense.kernel) + dense.bias)[:, 0])  # before the softmax
    gradient = tape.gradient(logit, xt).numpy()
    np.testing.assert_allclose(saliency, np.abs(gradient).max(axis=-1), rtol=1e-4, atol=1e-7)


def test_family_at_an_earlier_layer_and_probabilities():
    shape = (16, 16, 3)
    model = small_cnn(shape, seed=3)
    x = inputs_for(shape)
    params = {"layer": "early", "score": "probabilities"}
    _, family = create_family(model, [(key, params) for key in FIVE])
    classes = np.array([[1], [0], [2]])
    for key, (raw, _) in zip(FIVE, family.explain(x, classes), strict=True):
        expected, _ = methods.create(key, model, **params).explain(x, classes)
        np.testing.assert_allclose(raw, expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())


def test_family_in_bfloat16_matches_each_method_in_bfloat16():
    shape = (16, 16, 3)
    model = small_cnn(shape, seed=4)
    x = inputs_for(shape)
    members, family = create_family(
        model, [("gradcam", {"precision": "bfloat16"}), ("layercam", {"precision": "bfloat16"})]
    )
    assert all(member.precision == "bfloat16" for member in members)
    assert members[0].model is not model and members[0].model is members[1].model  # one copy for both
    classes = np.array([[0], [1], [2]])
    for key, (raw, _) in zip(["gradcam", "layercam"], family.explain(x, classes), strict=True):
        expected, _ = methods.create(key, model, precision="bfloat16").explain(x, classes)
        np.testing.assert_allclose(raw, expected, rtol=1e-2, atol=1e-2 * np.abs(expected).max())


@pytest.mark.parametrize(
    "other, reason",
    [
        (("hirescam", {"layer": "early"}), "target layer"),
        (("hirescam", {"score": "probabilities"}), "score"),
        (("hirescam", {"noise": {"samples": 2}}), "noise"),
        (("guidedgradcam", {}), "computes its maps neither"),
        (("scorecam", {}), "computes its maps neither"),
        (("guidedbackprop", {}), "computes its maps neither"),  # guided gradients: not the plain pass's
        (("saliency", {"noise": {"samples": 2}}), "noise"),
        (("inputxgradient", {"score": "probabilities"}), "score"),
    ],
)
def test_members_that_cannot_share_the_pass_are_refused(other, reason):
    model = small_cnn((16, 16, 3))
    first = methods.create("gradcam", model)
    with pytest.raises(ValueError, match=reason):
        CAMFamily([first, methods.create(other[0], model, **other[1])])


def test_another_model_or_precision_is_refused():
    model = small_cnn((16, 16, 3))
    first = methods.create("gradcam", model)
    with pytest.raises(ValueError, match="another object"):
        CAMFamily([first, methods.create("layercam", small_cnn((16, 16, 3)))])
    with pytest.raises(ValueError, match="precision"):
        create_family(model, [("gradcam", {}), ("layercam", {"precision": "bfloat16"})])
    with pytest.raises(ValueError, match="at least one"):
        CAMFamily([])
    with pytest.raises(ValueError, match="at least one CAM"):  # saliency alone has no layer to share
        CAMFamily([methods.create("saliency", model)])


def test_saliency_and_input_x_gradient_join_a_cam_group_of_their_score_and_precision():
    groups = methods.shared_pass_groups
    assert groups([("saliency", {}), ("gradcam", {})]) == [[0, 1]]  # one CAM suffices for the pass
    assert groups([("gradcam", {"layer": "early"}), ("inputxgradient", {}), ("gradcam", {})]) == [[0, 1]]  # the first
    assert groups([("saliency", {}), ("inputxgradient", {})]) == []  # no CAM: each its own pass
    assert groups([("saliency", {"score": "probabilities"}), ("gradcam", {}),
                   ("hirescam", {"score": "probabilities"})]) == [[0, 2]]  # fmt: skip
    assert groups([("saliency", {"precision": "bfloat16"}), ("gradcam", {})]) == []
    assert groups([("saliency", {"noise": {"samples": 2}}), ("gradcam", {}), ("guidedbackprop", {})]) == []


def test_registry_says_which_variants_may_share_a_pass():
    assert methods.shares_pass("GradCAM", {}) and methods.shares_pass("layercam", {"layer": "x"})
    assert not methods.shares_pass("gradcam", {"noise": {"samples": 4}})
    assert not methods.shares_pass("GuidedGradCAM", {}) and not methods.shares_pass("scorecam", {})
    assert methods.family_signature("gradcam", {}) == methods.family_signature("gc++", {"precision": "float32"})
    assert methods.family_signature("gradcam", {}) != methods.family_signature("hirescam", {"score": "probabilities"})


# ---------------------------------------------------------------- the pipeline stage: one file per member


def h5_contents(path) -> dict[str, tuple[dict, object]]:
    """Every group's and dataset's attributes and every dataset's values, by name."""
    import h5py

    contents: dict[str, tuple[dict, object]] = {}
    with h5py.File(path, "r") as f:
        contents["/"] = ({k: f.attrs[k] for k in f.attrs}, None)

        def visit(name, item):
            value = item[()] if isinstance(item, h5py.Dataset) else None
            contents[name] = ({k: item.attrs[k] for k in item.attrs}, value)

        f.visititems(visit)
    return contents


def assert_same_file(got, expected) -> None:
    """The same groups, datasets and attributes; float datasets within float tolerance, everything else equal."""
    a, b = h5_contents(got), h5_contents(expected)
    assert sorted(a) == sorted(b)
    for name in b:
        (attrs_a, value_a), (attrs_b, value_b) = a[name], b[name]
        assert sorted(attrs_a) == sorted(attrs_b), name
        for key in attrs_b:
            np.testing.assert_array_equal(attrs_a[key], attrs_b[key], err_msg=f"{name} attribute {key}")
        if isinstance(value_b, np.ndarray) and value_b.dtype.kind == "f":
            scale = np.nanmax(np.abs(value_b)) if np.isfinite(value_b).any() else 1.0
            np.testing.assert_allclose(value_a, value_b, rtol=1e-5, atol=1e-6 * scale, err_msg=name)
        else:
            np.testing.assert_array_equal(value_a, value_b, err_msg=name)


FAMILY_MEMBERS = [
    ("gradcam", {}, "gradcam"),
    ("gradcam++", {"normalize": "positive"}, "gcpp-positive"),
    ("layercam", {"layer": None}, "layercam"),
    ("xgradcam", {}, "xgradcam"),
]


@pytest.fixture
def skipping_shard(tmp_path):
    """A shard of 5 images, the second unreadable (skipped by preprocess), its predictions, and a small CNN."""
    from error_policy_shards import skipping_shard_files

    return skipping_shard_files(tmp_path, small_cnn((32, 32, 1), seed=5))


@pytest.mark.parametrize("targets", ["argmax", "all"])
def test_family_job_writes_each_members_file_as_its_own_job_does(tmp_path, skipping_shard, targets):
    from xaipipe.stages import HeatmapsMember, compute_heatmaps_family_shard, compute_heatmaps_shard

    pre, pred, model_path = skipping_shard
    members = [
        HeatmapsMember(key, params, tmp_path / "family" / f"{label}.h5", label) for key, params, label in FAMILY_MEMBERS
    ]
    compute_heatmaps_family_shard(pre, pred, model_path, members, targets, 2, on_error="skip")
    for key, params, label in FAMILY_MEMBERS:
        alone = tmp_path / "alone" / f"{label}.h5"
        compute_heatmaps_shard(pre, pred, model_path, key, params, targets, 2, alone, on_error="skip", label=label)
        assert_same_file(tmp_path / "family" / f"{label}.h5", alone)
    from xaipipe import h5store

    with h5store.HeatmapsFile.open(tmp_path / "family" / "gcpp-positive.h5") as maps:
        assert maps.skipped.tolist() == [False, True, False, False, False]
        assert np.nanmax(maps.raw(0)) > 0  # real maps, not placeholders


def test_family_job_explains_alone_where_the_shared_pass_fails(tmp_path, skipping_shard, monkeypatch):
    """A batch whose shared pass raises is explained by each member on its own: the same files as without the
    failure (the members' own passes work here)."""
    from xaipipe.stages import HeatmapsMember, compute_heatmaps_family_shard

    pre, pred, model_path = skipping_shard
    members = [
        HeatmapsMember(key, params, tmp_path / "a" / f"{label}.h5", label) for key, params, label in FAMILY_MEMBERS
    ]
    compute_heatmaps_family_shard(pre, pred, model_path, members, "argmax", 2, on_error="fail")
    original = CAMFamily.raw_maps
    calls = []

    def failing(self, inputs, classes):
        calls.append(len(inputs))
        if len(calls) == 2:
            raise RuntimeError("simulated failure of the shared pass")
        return original(self, inputs, classes)

    monkeypatch.setattr(CAMFamily, "raw_maps", failing)
    again = [HeatmapsMember(m.method, m.params, tmp_path / "b" / f"{m.label}.h5", m.label) for m in members]
    compute_heatmaps_family_shard(pre, pred, model_path, again, "argmax", 2, on_error="fail")
    assert len(calls) == 3  # three batches of 2, 2 (one skipped sample) and 1
    for first, second in zip(members, again, strict=True):
        assert_same_file(second.out_path, first.out_path)


def test_family_job_refuses_members_that_cannot_share_a_pass(tmp_path, skipping_shard):
    from xaipipe.stages import HeatmapsMember, compute_heatmaps_family_shard

    pre, pred, model_path = skipping_shard
    members = [
        HeatmapsMember("gradcam", {}, tmp_path / "a.h5"),
        HeatmapsMember("hirescam", {"score": "probabilities"}, tmp_path / "b.h5"),
    ]
    with pytest.raises(ValueError, match="score"):
        compute_heatmaps_family_shard(pre, pred, model_path, members, "argmax", 2)
    assert not (tmp_path / "a.h5").exists() and not (tmp_path / "b.h5").exists()


def test_group_job_writes_every_variants_file_as_its_own_job_does(tmp_path, skipping_shard):
    """heatmaps_jobs: shard: a CAM family with saliency (from one pass) and a CAM with noise in one job."""
    from xaipipe import methods
    from xaipipe.stages import HeatmapsMember, compute_heatmaps_group_shard, compute_heatmaps_shard

    pre, pred, model_path = skipping_shard
    variants = [
        ("saliency", {}, "saliency"),
        ("gradcam", {}, "gradcam"),
        ("hirescam", {"noise": {"samples": 3, "sigma": 0.1, "seed": 2}}, "hirescam-noisy"),
        ("gradcam++", {"normalize": "positive"}, "gcpp-positive"),
    ]
    # the family is gradcam and gradcam++ (indices 1 and 3), and saliency joins their pass (the input's gradients
    # after the layer's); the noisy HiResCAM goes alone
    assert methods.shared_pass_groups([(key, params) for key, params, _ in variants]) == [[0, 1, 3]]
    members = [HeatmapsMember(key, params, tmp_path / "group" / f"{label}.h5", label) for key, params, label in variants]
    compute_heatmaps_group_shard(pre, pred, model_path, members, "all", 2, on_error="skip")
    for key, params, label in variants:
        alone = tmp_path / "alone" / f"{label}.h5"
        compute_heatmaps_shard(pre, pred, model_path, key, params, "all", 2, alone, on_error="skip", label=label)
        assert_same_file(tmp_path / "group" / f"{label}.h5", alone)


def test_predicting_job_writes_the_predictions_and_every_variants_maps_from_one_model_load(
    tmp_path, skipping_shard, monkeypatch
):
    """heatmaps_jobs: shard: rule predict writes the shard's predictions, then every variant's maps, as the separate
    predict job and heatmaps jobs write them, with one model load and one read of the model file for its sha256."""
    import keras

    from xaipipe import model as xmodel
    from xaipipe.stages import HeatmapsMember, compute_heatmaps_shard, predict_and_explain_shard, predict_shard

    pre, pred, model_path = skipping_shard
    variants = [("saliency", {}, "saliency"), ("gradcam", {}, "gradcam"), ("gradcam++", {}, "gradcam++")]
    loads, digests = [], []
    load, sha256 = keras.saving.load_model, xmodel._sha256
    monkeypatch.setattr(keras.saving, "load_model", lambda *a, **k: loads.append(a) or load(*a, **k))
    monkeypatch.setattr(xmodel, "_sha256", lambda *a: digests.append(a) or sha256(*a))
    members = [HeatmapsMember(key, params, tmp_path / "job" / f"{label}.h5", label) for key, params, label in variants]
    predict_and_explain_shard(pre, model_path, tmp_path / "job/predictions.h5", members, "argmax", 2, on_error="skip")
    assert len(loads) == 1 and len(digests) == 1
    assert xmodel._SHARED is None  # nothing kept after the job: the next load reads the file again
    xmodel.load_model(model_path)
    assert len(loads) == 2

    predict_shard(pre, model_path, tmp_path / "alone" / "predictions.h5", 2, on_error="skip")
    assert_same_file(tmp_path / "job" / "predictions.h5", tmp_path / "alone" / "predictions.h5")
    for key, params, label in variants:
        alone = tmp_path / "alone" / f"{label}.h5"
        compute_heatmaps_shard(pre, pred, model_path, key, params, "argmax", 2, alone, on_error="skip", label=label)
        assert_same_file(tmp_path / "job" / f"{label}.h5", alone)


def test_one_load_per_file_reads_a_replaced_model_again(tmp_path):
    """Within one_load_per_file a model file rewritten at the same path is a new file: loaded and hashed anew."""
    from xaipipe import model as xmodel

    path = tmp_path / "m.keras"
    small_cnn((8, 8, 1), seed=1).save(path)
    with xmodel.one_load_per_file():
        first, digest = xmodel.load_model(path), xmodel.sha256_file(path)
        assert xmodel.load_model(path) is first and xmodel.sha256_file(path) == digest
        small_cnn((8, 8, 1), seed=2).save(path)
        assert xmodel.load_model(path) is not first
        assert xmodel.sha256_file(path) != digest
