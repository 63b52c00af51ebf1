import cv2
import numpy as np
import pytest

from xaipipe.readers import load_image
from xaipipe.writers import write_png


@pytest.mark.parametrize("suffix", [".png", ".tif", ".bmp"])
def test_gray_8bit_round_trip(tmp_path, suffix):
    image = np.arange(48, dtype=np.uint8).reshape(6, 8)
    cv2.imwrite(str(tmp_path / f"g{suffix}"), image)
    loaded = load_image(tmp_path / f"g{suffix}")
    assert loaded.dtype == np.uint8 and loaded.shape == (6, 8)
    np.testing.assert_array_equal(loaded, image)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_gray_16bit_keeps_its_depth(tmp_path, suffix):
    image = (np.arange(48, dtype=np.uint16) * 1000).reshape(6, 8)
    cv2.imwrite(str(tmp_path / f"g{suffix}"), image)
    loaded = load_image(tmp_path / f"g{suffix}")
    assert loaded.dtype == np.uint16
    np.testing.assert_array_equal(loaded, image)


def test_color_is_returned_in_rgb_order(tmp_path):
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 0] = 200  # red
    write_png(tmp_path / "red.png", rgb)
    bgr_on_disk = cv2.imread(str(tmp_path / "red.png"))
    assert bgr_on_disk[0, 0].tolist() == [0, 0, 200]
    np.testing.assert_array_equal(load_image(tmp_path / "red.png"), rgb)


def test_jpeg_color_loads_close_to_the_original(tmp_path):
    rgb = np.full((16, 16, 3), (30, 120, 220), np.uint8)
    cv2.imwrite(str(tmp_path / "c.jpg"), rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 100])
    loaded = load_image(tmp_path / "c.jpg")
    assert np.abs(loaded.astype(int) - rgb).max() <= 2


def test_alpha_channel_is_dropped(tmp_path):
    bgra = np.zeros((4, 4, 4), np.uint8)
    bgra[..., 2] = 180  # red in BGR order
    bgra[..., 3] = 10  # nearly transparent: the colour is kept as stored
    cv2.imwrite(str(tmp_path / "a.png"), bgra)
    loaded = load_image(tmp_path / "a.png")
    assert loaded.shape == (4, 4, 3)
    assert loaded[0, 0].tolist() == [180, 0, 0]


def test_truncated_and_missing_images_name_the_file(tmp_path):
    write_png(tmp_path / "ok.png", np.zeros((32, 32), np.uint8))
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 3])
    with pytest.raises(ValueError, match="cut.png"):
        load_image(tmp_path / "cut.png")
    with pytest.raises(FileNotFoundError, match="gone.png"):
        load_image(tmp_path / "gone.png")


def test_write_png_leaves_no_temporary_files(tmp_path):
    write_png(tmp_path / "sub" / "x.png", np.ones((3, 3), np.uint8))
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["x.png"]


@pytest.mark.parametrize(
    "suffix, mode, bits",
    [(".webp", "RGB", 8), (".jp2", "RGB", 8), (".jp2", "I;16", 16), (".pgm", "L", 8), (".pgm", "I;16", 16),
     (".ppm", "RGB", 8)],
)  # fmt: skip
def test_webp_jpeg2000_and_netpbm_read_as_pillow_writes_them(tmp_path, suffix, mode, bits):
    """The formats folder discovery now takes, lossless, against the pixels Pillow (another decoder) wrote;
    16-bit JPEG 2000 and PGM keep their depth."""
    from PIL import Image

    rng = np.random.default_rng(7)
    shape = (9, 13, 3) if mode == "RGB" else (9, 13)
    pixels = rng.integers(0, 2**bits - 1, shape).astype(np.uint16 if bits == 16 else np.uint8)
    path = tmp_path / f"x{suffix}"
    Image.fromarray(pixels).save(path, **({"lossless": True} if suffix == ".webp" else {}))
    loaded = load_image(path)
    assert loaded.dtype == pixels.dtype
    np.testing.assert_array_equal(loaded, pixels)


def test_jfif_is_a_jpeg(tmp_path):
    from PIL import Image

    rgb = np.random.default_rng(3).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "x.jpg", quality=95)
    (tmp_path / "x.jfif").write_bytes((tmp_path / "x.jpg").read_bytes())
    decoded = np.asarray(Image.open(tmp_path / "x.jpg"))
    assert np.abs(load_image(tmp_path / "x.jfif").astype(int) - decoded).max() <= 2


def test_a_tiff_of_several_pages_is_refused_naming_its_pages(tmp_path):
    # a z-stack or channels stored as TIFF pages: OpenCV's imread returns the first page, and a 3-page stack of
    # 10, 128 and 250 was explained as a constant image of 10 (all zeros after minmax) without a word
    from PIL import Image

    path = tmp_path / "stack.tif"
    pages = [Image.fromarray(np.full((30, 30), v, np.uint8)) for v in (10, 128, 250)]
    pages[0].save(path, save_all=True, append_images=pages[1:])
    assert Image.open(path).n_frames == 3
    with pytest.raises(ValueError, match=r"stack\.tif: a TIFF of 3 pages.*one page.*volume"):
        load_image(path)
    pages[1].save(tmp_path / "one.tif")
    assert load_image(tmp_path / "one.tif").tolist() == np.full((30, 30), 128, np.uint8).tolist()


def test_an_image_that_opencv_cannot_decode_says_so_not_truncated(tmp_path):
    # a valid TIFF with an Orientation tag of 6: OpenCV 5 fails inside imread (None), and the error said
    # "unreadable or truncated image", which sent the user looking for a damaged file
    from PIL import Image

    pixels = np.zeros((48, 64, 3), np.uint8)
    pixels[:16, :32, 0] = 255
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6
    path = tmp_path / "turned.tif"
    image.save(path, exif=exif.tobytes())
    if cv2.imread(str(path), cv2.IMREAD_UNCHANGED) is not None:  # an OpenCV that decodes it: the stored pixels
        np.testing.assert_array_equal(load_image(path), pixels)
        return
    with pytest.raises(ValueError, match=r"OpenCV cannot decode .*turned\.tif.*Pillow reads it \(TIFF RGB"):
        load_image(path)


# TIFFs as microscopes and scanners write them, made with tifffile (scikit-image's dependency) and read back with it
# as the reference: OpenCV read each of these differently from the file, without a word


def test_a_16_bit_min_is_white_tiff_is_inverted_as_an_8_bit_one_is(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    rng = np.random.default_rng(0)
    for dtype, top in ((np.uint8, 255), (np.uint16, 65535)):
        stored = rng.integers(0, top + 1, (20, 24), dtype=dtype)
        tifffile.imwrite(tmp_path / "mw.tif", stored, photometric="miniswhite")
        loaded = load_image(tmp_path / "mw.tif")
        assert loaded.dtype == dtype
        np.testing.assert_array_equal(loaded, top - tifffile.imread(tmp_path / "mw.tif"))  # 0 is white


def test_an_rgba_tiff_keeps_its_colours_and_drops_its_alpha(tmp_path):
    # OpenCV multiplied the colours by the unassociated alpha: transparent pixels came back black
    tifffile = pytest.importorskip("tifffile")
    rng = np.random.default_rng(1)
    rgba = rng.integers(0, 256, (16, 18, 4), dtype=np.uint8)
    rgba[:8, :, 3] = 0
    tifffile.imwrite(tmp_path / "rgba.tif", rgba, photometric="rgb", extrasamples=["unassalpha"])
    np.testing.assert_array_equal(load_image(tmp_path / "rgba.tif"), tifffile.imread(tmp_path / "rgba.tif")[..., :3])


def test_a_tiff_with_channels_beyond_colour_and_alpha_is_refused(tmp_path):
    # a two-channel microscope image was read as its first channel alone
    tifffile = pytest.importorskip("tifffile")
    tifffile.imwrite(tmp_path / "two.tif", np.zeros((10, 12, 2), np.uint8), photometric="minisblack",
                     planarconfig="contig", extrasamples=["unspecified"])  # fmt: skip
    with pytest.raises(ValueError, match=r"two\.tif: a TIFF of 2 channels per pixel, 1 of them neither colour nor"):
        load_image(tmp_path / "two.tif")


def test_a_gif_listed_in_a_sample_table_is_refused_as_folder_discovery_passes_it_over(tmp_path):
    from PIL import Image

    frames = [Image.fromarray(np.full((8, 8), v, np.uint8)) for v in (10, 200)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    with pytest.raises(ValueError, match=r"anim\.gif: GIF is not read as a sample.*save the image as PNG"):
        load_image(tmp_path / "anim.gif")


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.float64])
def test_signed_and_wide_tiffs_keep_their_values(tmp_path, dtype):
    # an int16 TIFF (a CT exported in HU) was refused as an "unsupported pixel type", with no way forward
    tifffile = pytest.importorskip("tifffile")
    values = np.random.default_rng(2).integers(-1024, 3000, (12, 14)).astype(dtype)
    tifffile.imwrite(tmp_path / "ct.tif", values)
    loaded = load_image(tmp_path / "ct.tif")
    assert loaded.dtype == dtype
    np.testing.assert_array_equal(loaded, tifffile.imread(tmp_path / "ct.tif"))
