import numpy as np
import pytest

from xaipipe.channels import convert_channels
from xaipipe.drawing import display_image
from xaipipe.preprocess import Preprocessing, standardize


def test_minmax_and_grayscale():
    x = np.array([[2.0, 4.0], [6.0, 10.0]], np.float32)[..., None]
    np.testing.assert_allclose(standardize(x, "minmax")[..., 0], [[0, 0.25], [0.5, 1.0]])
    np.testing.assert_allclose(standardize(x, "grayscale")[..., 0], [[0, 63.75], [127.5, 255]])


def test_zscore_matches_hand_computation():
    x = np.array([1.0, 2.0, 3.0, 6.0], np.float32).reshape(2, 2, 1)
    mean, std = 3.0, np.sqrt((4 + 1 + 0 + 9) / 4)
    np.testing.assert_allclose(standardize(x, "z-score").ravel(), (np.array([1, 2, 3, 6]) - mean) / std, rtol=1e-6)


def test_constant_images_standardize_to_zeros():
    x = np.full((3, 3, 1), 7.0, np.float32)
    assert not standardize(x, "minmax").any()
    assert not standardize(x, "z-score").any()


def test_keras_application_modes():
    rgb = np.array([[[255.0, 0.0, 127.5]]], np.float32)
    np.testing.assert_allclose(standardize(rgb, "tf"), [[[1.0, -1.0, 0.0]]])
    np.testing.assert_allclose(standardize(rgb, "caffe"), [[[127.5 - 103.939, 0 - 116.779, 255 - 123.68]]], rtol=1e-6)
    expected_torch = (np.array([1.0, 0.0, 0.5]) - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    np.testing.assert_allclose(standardize(rgb, "torch")[0, 0], expected_torch, rtol=1e-5)


def test_channel_conversion():
    gray = np.arange(4, dtype=np.uint8).reshape(2, 2)
    rgb = convert_channels(gray, 3)
    assert rgb.shape == (2, 2, 3) and (rgb == gray[..., None]).all()
    red = np.zeros((2, 2, 3), np.uint8)
    red[..., 0] = 100
    assert convert_channels(red, 1)[0, 0] == round(0.299 * 100)


def test_model_input_resizes_converts_and_standardizes():
    p = Preprocessing(size=(4, 6), channels=3, standardize="minmax", interpolation="nearest")
    image = np.zeros((8, 12), np.uint16)
    image[:4] = 1000
    x = p.model_input(image)
    assert x.shape == (4, 6, 3) and x.dtype == np.float32
    np.testing.assert_array_equal(x[:2], 1.0)
    np.testing.assert_array_equal(x[2:], 0.0)


def test_invalid_settings_name_the_key():
    with pytest.raises(ValueError, match="standardize"):
        Preprocessing(size=(4, 4), standardize="zscore")
    with pytest.raises(ValueError, match="channels"):
        Preprocessing(size=(4, 4), channels=2)


def test_display_image_scales_16bit_to_8bit_rgb():
    image = np.array([[1000, 3000]], np.uint16)
    out = display_image(image)
    assert out.dtype == np.uint8 and out.shape == (1, 2, 3)
    assert out[0, :, 0].tolist() == [0, 255]


# --- each mode's input range: the same picture in 8 or 16 bits gives the same model input


def _one_step(mode: str, resized8: np.ndarray) -> float:
    """The change of the model input for one 8-bit step (0..255 units) of the resized image, by hand for each mode."""
    values = resized8.astype(np.float64)
    return {
        "tf": 1 / 127.5,
        "caffe": 1.0,
        "torch": 1 / (255 * 0.224),  # the smallest ImageNet std
        "grayscale": 255 / (values.max() - values.min()),
        "minmax": 1 / (values.max() - values.min()),
        "z-score": 1 / values.std(),
    }[mode]


@pytest.mark.parametrize("mode", ["tf", "caffe", "torch", "grayscale", "minmax", "z-score"])
@pytest.mark.parametrize(
    "shape, size, channels",
    [((37, 29), (16, 16), 1), ((37, 29, 3), (16, 16), 3), ((37, 29), (16, 16), 3), ((9, 11, 13), (6, 6, 6), 1)],
)
def test_the_same_picture_in_8_and_16_bits_gives_the_same_input(mode, shape, size, channels):
    image8 = np.random.default_rng(3).integers(0, 256, shape).astype(np.uint8)
    image16 = image8.astype(np.uint16) * 257  # 255 -> 65535: the same picture
    p = Preprocessing(size=size, channels=channels, standardize=mode, interpolation="linear" if len(size) == 3 else "area")
    x8, x16 = p.model_input(image8), p.model_input(image16)
    assert x8.shape == x16.shape == (*size, channels)
    step = _one_step(mode, p.finish(image8, run_standardize=False))
    # the 8-bit resize rounds to whole 8-bit steps, the 16-bit one to 1/257 of a step
    assert np.abs(x8 - x16).max() <= step
    if len(size) == 3:  # the volume resize keeps floats: no rounding at all
        np.testing.assert_allclose(x8, x16, atol=1e-3 * step)


def test_tf_on_16_bit_data_in_closed_form():
    image = np.array([[0, 65535], [128 * 257, 65535 // 2]], np.uint16)
    x = Preprocessing(size=(2, 2), channels=1, standardize="tf").model_input(image)[..., 0]
    expected = np.array([[0, 255], [128, 65535 // 2 * 255 / 65535]]) / 127.5 - 1
    np.testing.assert_allclose(x, expected, atol=1e-6)
    assert x[0, 0] == -1.0 and x[0, 1] == 1.0


def test_none_keeps_the_stored_values_and_fixed_range_modes_check_other_types():
    raw = np.array([[0, 1000], [65535, 7]], np.uint16)
    np.testing.assert_array_equal(Preprocessing(size=(2, 2), channels=1, standardize="none").model_input(raw)[..., 0], raw)
    floats = np.array([[0.0, 255.0], [127.5, 10.0]], np.float32)  # float data: 0..255 as given
    x = Preprocessing(size=(2, 2), channels=1, standardize="tf").model_input(floats)[..., 0]
    np.testing.assert_allclose(x, floats / 127.5 - 1, atol=1e-6)
    hounsfield = np.array([[-1000, 40], [400, 3000]], np.int16)
    for mode in ("tf", "caffe", "torch"):
        with pytest.raises(ValueError, match=rf"standardize {mode}.*int16.*-1000\.\.3000.*0\.\.255"):
            Preprocessing(size=(2, 2), channels=1, standardize=mode).model_input(hounsfield)
    x = Preprocessing(size=(2, 2), channels=1, standardize="z-score").model_input(hounsfield)[..., 0]
    values = hounsfield.astype(np.float64)
    np.testing.assert_allclose(x, (values - values.mean()) / values.std(), rtol=1e-5)


def test_per_image_modes_on_float32_values_near_its_limit():
    # found by hypothesis: (x - min) overflowed float32 and minmax gave NaN
    x = np.array([3e38, -3e38, 0.0], np.float32).reshape(1, 3, 1)
    np.testing.assert_allclose(standardize(x, "minmax").ravel(), [1.0, 0.0, 0.5], atol=1e-6)
    np.testing.assert_allclose(standardize(x, "grayscale").ravel(), [255.0, 0.0, 127.5], atol=1e-4)
    np.testing.assert_allclose(standardize(x, "z-score").ravel(), np.array([1, -1, 0]) * np.sqrt(1.5), rtol=1e-5)
    for mode in ("minmax", "grayscale", "z-score"):
        assert standardize(x, mode).dtype == np.float32


def test_values_beyond_float32_are_an_error_not_an_infinite_input():
    image = np.array([[1e300, 0.0], [1.0, 2.0]])  # float64: finite, but not in float32
    for mode in ("none", "minmax"):
        with pytest.raises(ValueError, match=r"1 model input values are not finite.*float64.*exceed float32"):
            Preprocessing(size=(2, 2), channels=1, standardize=mode).model_input(image)


def test_a_2d_crop_or_padding_with_overlays_on_the_original_is_refused_before_any_job():
    # the map of the cropped image was resized onto the whole original: a lesion at rows 22-38 lit rows 15-43
    base = {"size": [32, 32], "channels": 1, "standardize": "minmax", "preprocess_overlay": False}
    for step in ({"name": "crop", "shape": [40, 40]}, {"name": "padding", "shape": "square"}):
        with pytest.raises(ValueError, match=r"preprocess_overlay: false .* subfunctions\[1\] crops or pads"):
            Preprocessing.from_config({**base, "subfunctions": [{"name": "clip", "min": 0, "max": 200}, step]})
        Preprocessing.from_config({**base, "preprocess_overlay": True, "subfunctions": [step]})
        Preprocessing.from_config({**base, "size": [8, 32, 32], "subfunctions": [step]})  # volumes are placed back
    Preprocessing.from_config({**base, "subfunctions": [{"name": "clip", "min": 0, "max": 200}]})
