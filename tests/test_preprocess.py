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
