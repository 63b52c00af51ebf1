import numpy as np
import pytest

from xaipipe.naming import overlay_name
from xaipipe.drawing import colorize, render


def test_overlay_names_follow_the_seed():
    assert overlay_name("case_01.png") == "case_01.png"
    assert overlay_name("disk/case_01.png") == "disk.case_01.png"
    assert overlay_name("a/b/c.tiff", 2) == "a.b.c.class_2.png"
    assert overlay_name("a\\b.jpg") == "a.b.png"


def test_alpha_blends_image_and_colour_by_each_pixels_value():
    image = np.full((4, 4, 3), 100, np.uint8)
    heat = np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4)
    colour = colorize(heat).astype(np.float64)
    np.testing.assert_array_equal(render(heat, image, alpha=0.0), image)
    # opacity alpha * v: full colour only where v = 1, the image itself where v = 0
    np.testing.assert_array_equal(render(heat, image, alpha=1.0)[3, 3], colour[3, 3])
    np.testing.assert_array_equal(render(heat, image, alpha=1.0)[0, 0], image[0, 0])
    w = 0.25 * heat.astype(np.float64)[..., None]
    expected = np.round((1 - w) * 100 + w * colour).astype(np.uint8)
    np.testing.assert_array_equal(render(heat, image, alpha=0.25), expected)


def test_jet_runs_from_blue_to_red():
    ends = colorize(np.array([[0.0, 1.0]], np.float32))
    assert ends[0, 0].argmax() == 2  # blue at 0
    assert ends[0, 1].argmax() == 0  # red at 1


def test_heatmap_alone_and_resized_to_the_image():
    image = np.zeros((8, 6, 3), np.uint8)
    out = render(np.ones((4, 3), np.float32), image, overlay=False)
    assert out.shape == (8, 6, 3)
    np.testing.assert_array_equal(out, colorize(np.ones((8, 6), np.float32)))


def test_bad_render_input_is_refused():
    with pytest.raises(ValueError, match="alpha"):
        render(np.zeros((2, 2), np.float32), np.zeros((2, 2, 3), np.uint8), alpha=1.5)
    with pytest.raises(ValueError, match="colormap"):
        colorize(np.zeros((2, 2), np.float32), "rainbow")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        colorize(np.full((2, 2), 2.0, np.float32))


def test_overlay_names_of_volumes_and_ids_without_extension():
    assert overlay_name("ct/case_7.nii.gz", None, ".nii.gz") == "ct.case_7.nii.gz"
    assert overlay_name("mr/brain.mha", 1, ".gif") == "mr.brain.class_1.gif"
    assert overlay_name("case.01", None, ".png") == "case.01.png"
