"""Normalization as a declared property of each method (``normalize``), and signed maps drawn and judged honestly."""

import math

import keras
import numpy as np
import pytest

from xaipipe import config as xconfig
from xaipipe import faithfulness, h5store, methods, metrics
from xaipipe.drawing import colorize, draw, render
from xaipipe.writers import write_map

# ---------------------------------------------------------------- the registry and the parameter


def test_each_method_declares_its_normalization_as_the_literature_shows_it():
    expected = {
        "gradcam": "minmax",  # CAMs are ReLU'd already: today's scaling
        "gradcam++": "minmax",
        "guidedgradcam": "minmax",
        "saliency": "absolute",  # max_c |dS/dx|
        "guidedbackprop": "absolute",
        "integratedgradients": "positive",  # signed attributions: evidence for the class
        "occlusion": "positive",
        "limepro": "positive",  # non-negative by construction, 0 off the shown segments
        "limecon": "positive",
        "hirescam": "minmax",  # the CAM variants: ReLU'd or non-negative like the CAMs
        "xgradcam": "minmax",
        "layercam": "minmax",
        "scorecam": "minmax",
        "eigencam": "minmax",
        "inputxgradient": "positive",  # signed, like integrated gradients
        "smoothgrad": "absolute",  # saliency-type: magnitudes
        "vargrad": "absolute",
        "rise": "minmax",  # non-negative with a large offset: as is
    }
    assert {name: methods.normalization(name) for name in methods.canonical_names()} == expected
    assert methods.Entry("m", "M", ("m",), {}, lambda p, s: 1.0).normalize == "minmax"  # new entries need no edit
    for name in methods.canonical_names():  # the base class's parameters, every method's: normalize, precision
        assert methods.parameters(name)[-2:] == ("normalize", "precision")


def linear_model(shape, n_classes=2, seed=0):
    inputs = keras.Input(shape)
    dense = keras.layers.Dense(n_classes, name="out")
    model = keras.Model(inputs, dense(keras.layers.Flatten()(inputs)))
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(int(np.prod(shape)), n_classes)).astype(np.float32)
    dense.set_weights([weights, np.zeros(n_classes, np.float32)])
    return model, weights


def test_integrated_gradients_defaults_to_positive_and_takes_any_normalization():
    shape = (6, 5, 2)
    model, weights = linear_model(shape)
    x = np.random.default_rng(1).normal(size=(1, *shape)).astype(np.float32)
    # a linear model's IG from a zero baseline is exact: x_i * W_ic, summed over channels
    raw = (x[0] * weights[:, 1].reshape(shape)).sum(-1)
    assert raw.min() < 0 < raw.max()
    hand = {
        "positive": np.maximum(raw, 0) / raw.max(),
        "signed": raw / np.abs(raw).max(),
        "absolute": np.abs(raw) / np.abs(raw).max(),
        "minmax": (raw - raw.min()) / (raw.max() - raw.min()),
    }
    default = methods.create("ig", model, steps=4)
    assert default.normalize == "positive" and default.params["normalize"] == "positive"
    np.testing.assert_allclose(default.explain(x, np.array([[1]]))[1][0, 0], hand["positive"], atol=1e-5)
    for mode, expected in hand.items():
        method = methods.create("ig", model, steps=4, normalize=mode)
        assert method.params["normalize"] == mode and method.signed == (mode == "signed")
        np.testing.assert_allclose(method.explain(x, np.array([[1]]))[1][0, 0], expected, atol=1e-5)


@pytest.mark.parametrize("key", ["gradcam", "saliency", "occlusion", "limepro"])
def test_every_method_takes_normalize_and_refuses_a_bad_one_by_name(key):
    model, _ = linear_model((8, 8, 1)) if key != "gradcam" else (conv_model(), None)
    method = methods.create(key, model, normalize="signed")
    assert method.normalize == "signed" and list(method.params)[:2] == ["score", "normalize"]
    with pytest.raises(ValueError, match=r"normalize must be one of \['minmax', 'positive', 'absolute', 'signed'\]"):
        methods.create(key, model, normalize="foo")


def conv_model():
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(3, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="out")(x))


def test_the_config_check_refuses_a_bad_normalize_naming_the_method():
    base = {"model": {"layer": None}, "score": "logits", "classes": [], "demo": {"build": False}}
    with pytest.raises(ValueError, match=r"methods\[1\] \(ig\): normalize must be one of \['minmax', 'positive'"):
        xconfig.method_specs({**base, "methods": ["gradcam", {"name": "ig", "normalize": "foo"}]})
    # the workflow's heatmaps job takes these parameters: a changed normalize changes them, so the job reruns
    specs = xconfig.method_specs({**base, "methods": [{"name": "ig", "normalize": "signed"}, "occlusion"]})
    assert specs["integratedgradients"] == {"score": "logits", "normalize": "signed"}
    assert "normalize" not in specs["occlusion"]  # the default is the method's, not written into the params


# ---------------------------------------------------------------- drawing


def test_an_overlay_of_an_all_zero_map_is_the_image_byte_for_byte(tmp_path):
    import cv2

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (9, 7, 3), dtype=np.uint8)
    for signed in (False, True):
        np.testing.assert_array_equal(render(np.zeros((3, 3), np.float32), image, alpha=1.0, signed=signed), image)
        write_map(tmp_path / f"{signed}.png", np.zeros((3, 3), np.float32), image, 2, "png", alpha=1.0, signed=signed)
        np.testing.assert_array_equal(cv2.imread(str(tmp_path / f"{signed}.png"))[..., ::-1], image)
    volume = rng.integers(0, 256, (4, 5, 6, 3), dtype=np.uint8)
    np.testing.assert_array_equal(draw(np.zeros((2, 2, 2), np.float32), volume, 3, alpha=0.8, signed=True), volume)


def test_a_signed_overlay_shows_negative_in_blue_and_positive_in_red():
    image = np.full((1, 3, 3), 128, np.uint8)
    heat = np.array([[-1.0, 0.0, 1.0]], np.float32)
    out = render(heat, image, alpha=0.5, signed=True).astype(int)
    # bwr: -1 is (0, 0, 255), 1 is (255, 0, 0); half opacity over gray 128
    assert out[0, 0].tolist() == [64, 64, 192] and out[0, 2].tolist() == [192, 64, 64]
    assert out[0, 1].tolist() == [128, 128, 128]
    halves = colorize(np.array([[-0.5, 0.5]], np.float32), signed=True)[0]
    np.testing.assert_array_equal(halves, [[128, 128, 255], [255, 128, 128]])  # 127.5 rounds to 128
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        colorize(heat)  # a signed map is not drawn as an unsigned one


# ---------------------------------------------------------------- the heatmaps file says how its maps were scaled


def test_the_heatmaps_file_records_the_normalization(tmp_path):
    for params, expected in (({"score": "logits", "normalize": "signed"}, True), ({"score": "logits"}, False)):
        path = tmp_path / f"{expected}.h5"
        with h5store.heatmaps_writer(path, ["a"], 1, (2, 2), method="m", method_params=params) as writer:
            writer.write(slice(0, 1), np.array([0]), np.array([0]), np.ones((1, 2, 2)))
        with h5store.HeatmapsFile.open(path) as maps:
            assert maps.signed is expected
            assert maps.normalization == ("signed" if expected else "minmax")  # files from before: min-max


# ---------------------------------------------------------------- metrics on a signed map, by hand

SIGNED = np.array([[-1.0, 0.5], [1.0, -0.5]])
TOP_ROW = np.array([[1, 1], [0, 0]])


def test_localization_of_a_signed_map_by_hand():
    assert metrics.pointing_game(SIGNED, TOP_ROW) is False  # the maximum, 1, lies in the bottom row
    assert metrics.pointing_game(SIGNED, 1 - TOP_ROW) is True
    assert metrics.relevance_mass(SIGNED, TOP_ROW) == pytest.approx(0.5 / 1.5)  # positive relevance only
    assert math.isnan(metrics.relevance_mass(-np.abs(SIGNED), TOP_ROW))  # no positive relevance at all
    assert metrics.relevance_rank(SIGNED, TOP_ROW) == pytest.approx(0.5)  # top 2: 1 (out), 0.5 (in)
    # pairs (in, out): (-1, 1) 0, (-1, -0.5) 0, (0.5, 1) 0, (0.5, -0.5) 1
    assert metrics.roc_auc(SIGNED, TOP_ROW) == pytest.approx(0.25)


def test_complexity_of_a_signed_map_counts_magnitudes_by_hand():
    # |v| sorted 0.5, 0.5, 1, 1; weights 2i - n - 1 = -3, -1, 1, 3; sum 3
    assert metrics.sparseness(SIGNED) == pytest.approx((-1.5 - 0.5 + 1 + 3) / (4 * 3))
    assert metrics.complexity(SIGNED) == pytest.approx(math.log(6) / 3 + 2 * math.log(3) / 3)


def test_ssim_of_signed_maps_uses_their_range_of_two():
    rng = np.random.default_rng(2)
    a, b = rng.uniform(-1, 1, (7, 7)), rng.uniform(-1, 1, (7, 7))
    # one 7 x 7 window: the formula with sample (ddof=1) statistics and L = 2
    c1, c2 = (0.01 * 2) ** 2, (0.03 * 2) ** 2
    cov = np.cov(a.ravel(), b.ravel())
    hand = ((2 * a.mean() * b.mean() + c1) * (2 * cov[0, 1] + c2)) / (
        (a.mean() ** 2 + b.mean() ** 2 + c1) * (cov[0, 0] + cov[1, 1] + c2)
    )
    assert metrics.ssim(a, b, data_range=2.0) == pytest.approx(hand, rel=1e-9)
    assert metrics.ssim(a, a, data_range=2.0) == pytest.approx(1.0)


def test_faithfulness_ranks_a_signed_map_by_value():
    ranks = faithfulness.relevance_ranks(SIGNED[None])[0]
    assert ranks.tolist() == [[3, 1], [0, 2]]  # 1 first, then 0.5, -0.5, and -1 last
