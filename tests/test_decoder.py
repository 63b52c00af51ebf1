"""xai_decoder as outside code calls it: duck-typed generators and model wrappers written here."""

from __future__ import annotations

import cv2
import keras
import numpy as np
import pytest

from xaipipe import DataGenerator, methods, xai_decoder
from xaipipe.readers import load_volume
from xaipipe.subfunctions import Crop
from xaipipe.writers import write_png

K = 3


def small_cnn(input_shape: tuple[int, ...]) -> keras.Model:
    keras.utils.set_random_seed(7)
    conv = keras.layers.Conv3D if len(input_shape) == 4 else keras.layers.Conv2D
    pool = keras.layers.GlobalAveragePooling3D if len(input_shape) == 4 else keras.layers.GlobalAveragePooling2D
    inputs = keras.Input(input_shape)
    x = conv(4, 3, padding="same", activation="relu", name="conv")(inputs)
    return keras.Model(inputs, keras.layers.Dense(K, activation="softmax")(pool()(x)))


@pytest.fixture
def image_dir(tmp_path):
    rng = np.random.default_rng(0)
    for k in range(5):
        write_png(tmp_path / "imgs" / f"case_{k}.png", rng.integers(0, 255, (40 + k, 30), dtype=np.uint8))
    return tmp_path / "imgs"


class SeedStyleGenerator:
    """The attributes and methods of the seed framework's DataGenerator, as outside code has them."""

    def __init__(self, samples, path_imagedir, image_format, resize):
        self.samples = samples
        self.path_imagedir = str(path_imagedir)
        self.image_format = image_format
        self.grayscale = True
        self.batch_size = 2
        self.kwargs = {}
        self.resize = resize

    def sample_loader(self, sample, path_imagedir, image_format=None, grayscale=False, **kwargs):
        image = cv2.imread(f"{path_imagedir}/{sample}.{image_format}", cv2.IMREAD_GRAYSCALE)
        return image[..., None]

    def preprocess_image(self, index, run_resize=True, run_aug=True, run_standardize=True):
        image = self.sample_loader(self.samples[index], self.path_imagedir, self.image_format).astype(np.float32)
        image = image[2:-2, 2:-2]  # a "subfunction": crop a 2-pixel border
        if run_resize:
            image = cv2.resize(image, self.resize[::-1])[..., None]
        if run_standardize:
            image = image / 255.0
        return image


class Wrapper:
    """The seed framework's NeuralNetwork: the Keras model in .model, the class count in .n_labels."""

    def __init__(self, model):
        self.model = model
        self.n_labels = K


def test_duck_typed_generator_and_wrapper_return_maps_at_overlay_resolution(image_dir):
    gen = SeedStyleGenerator([f"case_{k}" for k in range(5)], image_dir, "png", (16, 16))
    model = small_cnn((16, 16, 1))
    preds = np.eye(K)[[0, 1, 2, 0, 1]]
    images, heatmaps = xai_decoder(gen, Wrapper(model), preds, method="gc")
    assert len(images) == 5 and images[0].shape == (36, 26, 1)  # cropped, not resized
    assert heatmaps.dtype == object and heatmaps[4].shape == (40, 26)
    for image, heatmap in zip(images, heatmaps):
        assert heatmap.shape == image.shape[:2]
        assert 0.0 <= heatmap.min() and heatmap.max() <= 1.0
    # the same maps as the batched method, resized to the overlay image
    inputs = np.stack([gen.preprocess_image(i, run_aug=False) for i in range(5)])
    _, direct = methods.create("gradcam", model).explain(inputs, np.array([[0], [1], [2], [0], [1]]))
    expected = cv2.resize(direct[2, 0], (26, 38), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(heatmaps[2], np.clip(expected, 0, 1), atol=1e-5)


def test_without_preds_every_class_and_original_images(image_dir):
    gen = SeedStyleGenerator([f"case_{k}" for k in range(2)], image_dir, "png", (16, 16))
    images, heatmaps = xai_decoder(gen, Wrapper(small_cnn((16, 16, 1))), None, method="GradCAM++", preprocess_overlay=False)
    assert images.shape == (2, 40, 30, 1) or images[1].shape == (41, 30, 1)
    assert heatmaps[1].shape == (K, 41, 30)


def test_out_path_writes_files_with_the_seed_naming(image_dir, tmp_path):
    gen = SeedStyleGenerator(["case_0", "case_1"], image_dir, "png", (16, 16))
    model = small_cnn((16, 16, 1))
    out = tmp_path / "xai"
    assert xai_decoder(gen, model, np.eye(K)[[2, 0]], out_path=out) is None
    assert sorted(p.name for p in out.iterdir()) == ["case_0.png", "case_1.png"]
    assert cv2.imread(str(out / "case_1.png")).shape == (37, 26, 3)  # 41x30, cropped
    xai_decoder(gen, model, None, method="sm", out_path=tmp_path / "all")
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == [
        f"case_{s}.class_{c}.png" for s in range(2) for c in range(K)
    ]


def test_seed_style_method_objects_are_called_image_by_image(image_dir):
    model = small_cnn((16, 16, 1))
    calls = []

    class MyGradCAM:
        """A user's own method object with the seed's interface."""

        def __init__(self):
            self.inner = methods.create("gradcam", model)

        def compute_heatmap(self, image, class_index):
            calls.append((image.shape, class_index))
            return self.inner.explain(image, np.array([[class_index]]))[1][0, 0]

    gen = SeedStyleGenerator(["case_0", "case_1", "case_2"], image_dir, "png", (16, 16))
    preds = np.eye(K)[[1, 1, 2]]
    _, theirs = xai_decoder(gen, model, preds, method=MyGradCAM())
    assert calls == [((1, 16, 16, 1), 1), ((1, 16, 16, 1), 1), ((1, 16, 16, 1), 2)]
    _, ours = xai_decoder(gen, model, preds, method="gradcam")
    for a, b in zip(theirs, ours):
        np.testing.assert_allclose(a, b, atol=1e-5)

    class Coarse:
        def compute_heatmap(self, image, class_index):
            return np.arange(16, dtype=np.float32).reshape(4, 4)  # a map at a layer's resolution

    _, coarse = xai_decoder(gen, model, preds, method=Coarse())
    assert coarse[0].shape == (36, 26)
    assert coarse[0][0, 0] < coarse[0][-1, -1]


def test_xaipipe_generator_with_subfunctions(image_dir):
    gen = DataGenerator(
        [f"case_{k}" for k in range(3)], image_dir, image_format="png", resize=(16, 16), grayscale=True,
        subfunctions=[Crop((20, 20))], standardize_mode="minmax", batch_size=2,
    )  # fmt: skip
    images, heatmaps = xai_decoder(gen, small_cnn((16, 16, 1)), np.eye(K)[[0, 1, 2]])
    assert images.shape == (3, 20, 20, 1) and heatmaps.shape == (3, 20, 20)
    images, _ = xai_decoder(gen, small_cnn((16, 16, 1)), np.eye(K)[[0, 1, 2]], preprocess_overlay=False)
    assert [i.shape for i in images] == [(40, 30, 1), (41, 30, 1), (42, 30, 1)]


def test_volumes_return_depth_and_write_nifti(tmp_path):
    rng = np.random.default_rng(1)
    for k in range(2):
        np.save(tmp_path / f"vol_{k}.npy", rng.normal(size=(10, 12, 14)).astype(np.float32))
    gen = DataGenerator(["vol_0", "vol_1"], tmp_path, image_format="npy", resize=(8, 8, 8), grayscale=True,
                        standardize_mode="z-score")  # fmt: skip
    model = small_cnn((8, 8, 8, 1))
    images, heatmaps = xai_decoder(gen, model, None, method="ig")
    assert images.shape == (2, 10, 12, 14, 1) and heatmaps.shape == (2, K, 10, 12, 14)
    gen.image_format = "nii.gz"
    for k in range(2):
        (tmp_path / f"vol_{k}.npy").rename(tmp_path / f"vol_{k}.npy.bak")
    from xaipipe.writers import write_nifti

    for k in range(2):
        write_nifti(tmp_path / f"vol_{k}.nii.gz", rng.normal(size=(10, 12, 14)).astype(np.float32), (2.0, 1.0, 1.0))
    xai_decoder(gen, model, np.eye(K)[[1, 2]], method="gc", out_path=tmp_path / "out")
    written = load_volume(tmp_path / "out" / "vol_1.nii.gz")
    assert written.array.shape == (10, 12, 14) and 0.0 <= written.array.min() and written.array.max() <= 1.0


def test_nifti_maps_keep_their_sources_grid(tmp_path):
    # the decoder wrote every NIfTI map with 1 mm spacing and the identity direction: a viewer placed the map of an
    # anisotropic, oblique scan at the wrong size and angle (the pipeline's maps carried the source's grid)
    import SimpleITK as sitk

    rng = np.random.default_rng(4)
    angle = np.deg2rad(25)
    oblique = (np.cos(angle), -np.sin(angle), 0.0, np.sin(angle), np.cos(angle), 0.0, 0.0, 0.0, 1.0)
    grids = {"aniso": ((0.7, 0.9, 3.0), (-10.0, 20.0, 5.0), (1, 0, 0, 0, 1, 0, 0, 0, 1)),
             "oblique": ((1.5, 1.0, 2.0), (3.0, -4.0, 50.0), oblique)}  # fmt: skip
    for name, (spacing, origin, direction) in grids.items():
        image = sitk.GetImageFromArray(rng.normal(size=(10, 12, 14)).astype(np.float32))
        image.SetSpacing(spacing), image.SetOrigin(origin), image.SetDirection(direction)
        sitk.WriteImage(image, str(tmp_path / f"{name}.nii.gz"))
    gen = DataGenerator(list(grids), tmp_path, image_format="nii.gz", resize=(8, 8, 8), grayscale=True,
                        standardize_mode="minmax")  # fmt: skip
    xai_decoder(gen, small_cnn((8, 8, 8, 1)), np.eye(K)[[0, 1]], method="gc", out_path=tmp_path / "out")
    for name, (spacing, origin, direction) in grids.items():
        written = sitk.ReadImage(str(tmp_path / "out" / f"{name}.nii.gz"))
        assert written.GetSize() == (14, 12, 10)
        np.testing.assert_allclose(written.GetSpacing(), spacing, atol=1e-5, err_msg=name)
        np.testing.assert_allclose(written.GetOrigin(), origin, atol=1e-4, err_msg=name)
        np.testing.assert_allclose(written.GetDirection(), direction, atol=1e-5, err_msg=name)
    # a crop of the subfunctions: the window is not known here, so the origin is not either, and a warning says so
    gen = DataGenerator(["aniso"], tmp_path, image_format="nii.gz", resize=(8, 8, 8), grayscale=True,
                        subfunctions=[Crop((8, 8, 8))])  # fmt: skip
    with pytest.warns(UserWarning, match=r"'aniso': its map keeps the spacing and direction .* not its origin"):
        xai_decoder(gen, small_cnn((8, 8, 8, 1)), np.eye(K)[[0]], method="gc", out_path=tmp_path / "crop")
    written = sitk.ReadImage(str(tmp_path / "crop" / "aniso.nii.gz"))
    assert written.GetSize() == (8, 8, 8) and written.GetOrigin() == (0.0, 0.0, 0.0)
    np.testing.assert_allclose(written.GetSpacing(), grids["aniso"][0], atol=1e-5)


def test_bad_model_and_method_are_refused(image_dir):
    gen = SeedStyleGenerator(["case_0"], image_dir, "png", (16, 16))
    with pytest.raises(TypeError, match="Keras model"):
        xai_decoder(gen, object())
    with pytest.raises(ValueError, match="valid keys"):
        xai_decoder(gen, small_cnn((16, 16, 1)), method="gradkam")


def test_a_method_object_made_for_another_model_is_refused(image_dir):
    """After model = load_model(...) again, a method object made before is bound to the old model: its maps
    were the old model's, for the new model's predicted classes (a new-user session: 0.998 off the new maps)."""
    gen = SeedStyleGenerator(["case_0", "case_1"], image_dir, "png", (16, 16))
    model, other = small_cnn((16, 16, 1)), small_cnn((16, 16, 1))
    with pytest.raises(ValueError, match="made for model .* not for the model given"):
        xai_decoder(gen, Wrapper(other), method=methods.create("gradcam", model))
    with pytest.raises(ValueError, match="made for model"):  # a reduced-precision method: made for the model, too
        xai_decoder(gen, Wrapper(other), method=methods.create("gradcam", model, precision="bfloat16"))
    with pytest.raises(ValueError, match="layerName 'dense' differs from the layer 'conv'"):
        xai_decoder(gen, Wrapper(model), method=methods.create("gradcam", model), layerName="dense")
    maps = xai_decoder(gen, Wrapper(model), method=methods.create("gradcam", model, precision="bfloat16"))
    assert np.asarray(maps[1]).shape[0] == 2  # its own model: accepted
    assert len(xai_decoder(gen, Wrapper(model), method=methods.create("gradcam", model), layerName="conv")[1]) == 2


# --- the decoder's method cache ----------------------------------------------------------


def two_conv_cnn() -> keras.Model:
    keras.utils.set_random_seed(3)
    inputs = keras.Input((12, 12, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv_a")(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv_b")(x)
    return keras.Model(inputs, keras.layers.Dense(K, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x)))


class ArrayGenerator:
    """A generator of images already at the model's size: the decoder's maps are the method's, not resized."""

    def __init__(self, images):
        self.images = images
        self.samples = [f"s{k}" for k in range(len(images))]
        self.image_format = None
        self.batch_size = 4

    def preprocess_image(self, index, run_resize=True, run_aug=True, run_standardize=True):
        return self.images[index]


@pytest.fixture
def counted_create(monkeypatch):
    """methods.create, counting the methods it builds."""
    built = []
    create = methods.create

    def counting(key, model, **params):
        built.append(create(key, model, **params))
        return built[-1]

    monkeypatch.setattr(methods, "create", counting)
    return built


def fresh_maps(key, model, images, classes, **params):
    """The maps of a method constructed here, from its class (not through methods.create)."""
    return np.asarray(methods.method_class(key)(model, **params).explain(images, classes[:, None])[1][:, 0])


def test_repeated_calls_reuse_one_method_with_a_fresh_methods_maps(counted_create):
    model = two_conv_cnn()
    images = np.random.default_rng(0).normal(size=(6, 12, 12, 1)).astype(np.float32)
    gen, classes = ArrayGenerator(images), np.array([0, 1, 2, 0, 1, 2])
    _, first = xai_decoder(gen, model, np.eye(K)[classes], method="gradcam")
    _, second = xai_decoder(gen, model, np.eye(K)[classes], method="gc")  # an alias: the same entry
    _, third = xai_decoder(gen, Wrapper(model), np.eye(K)[classes], method="GradCAM")
    assert len(counted_create) == 1
    expected = fresh_maps("gradcam", model, images, classes)
    for maps in (first, second, third):
        np.testing.assert_allclose(maps, expected, atol=1e-6)
    # another parameter, another method: the target layer conv_a (its maps differ from the last layer's)
    _, on_a = xai_decoder(gen, model, np.eye(K)[classes], method="gradcam", layerName="conv_a")
    assert len(counted_create) == 2 and counted_create[1] is not counted_create[0]
    assert counted_create[1].target_layer == "conv_a" and counted_create[0].target_layer == "conv_b"
    np.testing.assert_allclose(on_a, fresh_maps("gradcam", model, images, classes, layer="conv_a"), atol=1e-6)
    assert np.abs(on_a - expected).max() > 0.05
    xai_decoder(gen, model, np.eye(K)[classes], method="gradcam", layerName="conv_a")
    xai_decoder(gen, model, np.eye(K)[classes], method="gradcam")
    assert len(counted_create) == 2
    # another model, another method
    xai_decoder(gen, two_conv_cnn(), np.eye(K)[classes], method="gradcam")
    assert len(counted_create) == 3


def test_changed_weights_give_a_fresh_methods_maps(counted_create):
    model = two_conv_cnn()
    images = np.random.default_rng(1).normal(size=(4, 12, 12, 1)).astype(np.float32)
    gen, classes = ArrayGenerator(images), np.array([2, 1, 0, 2])
    for seed, key in enumerate(("gradcam", "saliency")):  # the logits of the softmax head, and the input gradients
        _, before = xai_decoder(gen, model, np.eye(K)[classes], method=key)
        rng = np.random.default_rng(seed)  # new weights every time
        model.set_weights([rng.normal(scale=0.5, size=w.shape).astype(np.float32) for w in model.get_weights()])
        _, after = xai_decoder(gen, model, np.eye(K)[classes], method=key)
        np.testing.assert_allclose(after, fresh_maps(key, model, images, classes), atol=1e-5)
        assert np.abs(after - before).max() > 0.05
    assert len(counted_create) == 2  # one per method


def test_a_model_keeps_its_most_recently_used_methods(counted_create, monkeypatch):
    from xaipipe import decoder

    monkeypatch.setattr(decoder, "CACHED_METHODS", 2)
    model = two_conv_cnn()
    gen, preds = ArrayGenerator(np.ones((1, 12, 12, 1), np.float32)), np.eye(K)[[0]]
    for key in ("gradcam", "hirescam", "gradcam", "layercam", "gradcam", "hirescam"):
        xai_decoder(gen, model, preds, method=key)
    # hirescam was the least recently used when layercam came: dropped, then built again
    assert [type(m).__name__ for m in counted_create] == ["GradCAM", "HiResCAM", "LayerCAM", "HiResCAM"]
    decoder.forget_methods(model)
    xai_decoder(gen, model, preds, method="gradcam")
    assert len(counted_create) == 5


def test_the_cache_does_not_keep_a_deleted_model_alive():
    import copy
    import gc
    import weakref

    model = two_conv_cnn()
    gen = ArrayGenerator(np.ones((2, 12, 12, 1), np.float32))
    xai_decoder(gen, Wrapper(model), np.eye(K)[[0, 1]], method="gradcam")
    xai_decoder(gen, model, np.eye(K)[[0, 1]], method="gradcam++")
    method = next(iter(model._xaipipe_decoder_methods.methods.values()))  # the cached Grad-CAM
    assert copy.deepcopy(model._xaipipe_decoder_methods).methods == {}  # a copied model starts empty
    model_ref, method_ref = weakref.ref(model), weakref.ref(method)
    del model, method
    gc.collect()
    assert model_ref() is None and method_ref() is None


def test_the_seeds_example_runs_model_predict_on_the_generator(image_dir):
    """The seed's own example predicts with ``preds = model.predict(datagen)`` and hands those to the decoder; Keras
    refused xaipipe's DataGenerator (not a PyDataset). The predictions equal the model's on the generator's inputs
    made by hand (cv2 resize and min-max, the seed's preprocessing), batch by batch."""
    samples = [f"case_{k}" for k in range(5)]
    gen = DataGenerator(samples, image_dir, image_format="png", resize=(16, 16), grayscale=True, batch_size=2)
    model = small_cnn((16, 16, 1))
    preds = model.predict(gen, verbose=0)
    by_hand = []
    for name in samples:
        image = cv2.imread(str(image_dir / f"{name}.png"), cv2.IMREAD_GRAYSCALE)  # resized as stored (uint8)
        image = cv2.resize(image, (16, 16), interpolation=cv2.INTER_AREA).astype(np.float32)
        by_hand.append(((image - image.min()) / (image.max() - image.min()))[..., None])
    np.testing.assert_allclose(preds, model.predict(np.stack(by_hand), verbose=0), atol=1e-6)
    _, heatmaps = xai_decoder(gen, model, preds)
    assert [h.shape for h in heatmaps] == [(40 + k, 30) for k in range(5)]  # each image's own size
    assert all(np.isfinite(h).all() and 0 <= h.min() <= h.max() <= 1 for h in heatmaps)
    # with labels, a batch is (inputs, one-hot labels) as the seed's generator gives it (model.fit takes it)
    labels = np.eye(K, dtype=np.float32)[[0, 1, 2, 0, 1]]
    labelled = DataGenerator(samples, image_dir, labels=labels, image_format="png", resize=(16, 16), grayscale=True,
                             batch_size=2)  # fmt: skip
    x, y = labelled[2]
    np.testing.assert_allclose(x, np.stack(by_hand[4:]), atol=1e-6)
    np.testing.assert_array_equal(y, labels[4:])
    np.testing.assert_allclose(model.predict(labelled, verbose=0), preds, atol=1e-6)
