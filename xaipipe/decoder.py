"""``xai_decoder``: the seed framework's XAI decoder, on xaipipe's batched methods.

Same signature and behaviour as AUCMEDI's ``aucmedi.xai.decoder.xai_decoder``; the
maps come from the same method classes and the files from the same writer
(:func:`xaipipe.writers.write_map`) as the Snakemake pipeline's.

A method named by its key is built and compiled once per model and reused by later
calls (:func:`cached_method`): a notebook that calls the decoder batch by batch pays
the tracing on its first call only. This module is the one place of that cache.
"""

from __future__ import annotations

import os
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from xaipipe.drawing import display_image, map_at
from xaipipe.methods.base import Method, upsample_to_input
from xaipipe.naming import overlay_name
from xaipipe.writers import EXTENSIONS, format_of_extension, write_map


class SeedMethod(Method):
    """Adapter for a method object of the seed framework's interface, ``compute_heatmap(image, class_index)``.

    It is called image by image and class by class (a one-image batch in, one map
    out), as the seed's decoder calls it; its maps are resized to the input.
    """

    def __init__(self, model: Any, method: Any):
        super().__init__(model, score="probabilities")  # the seed's method takes its own score; only the classes
        self.method = method

    def raw_maps(self, inputs: np.ndarray, classes: np.ndarray) -> np.ndarray:
        maps = np.stack(
            [
                np.stack([np.asarray(self.method.compute_heatmap(image=x[None], class_index=int(c))) for c in row])
                for x, row in zip(inputs, classes, strict=True)
            ]
        ).astype(np.float32)
        if maps.shape[2:] != self.spatial_shape:
            maps = upsample_to_input(maps, self.spatial_shape)
        return maps


def _keras_model(model: Any) -> tuple[Any, int]:
    """The Keras model and its class count, from a Keras model or a wrapper with ``.model`` and ``.n_labels``."""
    if hasattr(model, "model") and hasattr(model, "n_labels"):
        return model.model, int(model.n_labels)
    if hasattr(model, "inputs") and hasattr(model, "outputs"):
        return model, int(model.outputs[0].shape[-1])
    raise TypeError("model must be a Keras model or an object with .model (a Keras model) and .n_labels")


#: The compiled methods the decoder keeps per model; the least recently used is dropped beyond it.
CACHED_METHODS = 4
#: The model's attribute that holds its :class:`_MethodCache`.
_CACHE_ATTRIBUTE = "_xaipipe_decoder_methods"


class _MethodCache:
    """The decoder's methods of one model, least recently used first, keyed by :func:`_cache_key`.

    It hangs on the model itself, its only reference: a method refers to its model, so a
    cache outside the model (a global dict, a ``WeakKeyDictionary`` keyed by the model) would
    keep every model alive through its methods. Here model and methods form a cycle that the
    garbage collector frees with the model. A copy or a pickle of the model starts empty.
    """

    __slots__ = ("methods",)

    def __init__(self) -> None:
        self.methods: OrderedDict[tuple[str, Any], Method] = OrderedDict()

    def __copy__(self) -> _MethodCache:
        return _MethodCache()

    def __deepcopy__(self, memo: dict) -> _MethodCache:
        return _MethodCache()

    def __reduce__(self) -> tuple[type, tuple]:
        return _MethodCache, ()


def _frozen(value: Any) -> Any:
    """A hashable form of a parameter's value (mappings and sequences become sorted / plain tuples)."""
    if isinstance(value, Mapping):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    return value


def _cache_key(key: str, params: Mapping[str, Any]) -> tuple[str, Any]:
    """The method's canonical name and every parameter as the registry resolves them (its defaults filled in),
    so that aliases (``gc``, ``GradCAM``) and an explicit default share one entry."""
    from xaipipe import methods

    name = methods.canonical_name(key)
    return name, _frozen(methods.resolved_params(name, params))


def cached_method(key: str, model: Any, **params: Any) -> Method:
    """``methods.create(key, model, **params)``, built once per model and parameters and reused.

    The entry is keyed by the model object's identity and :func:`_cache_key`; a model keeps
    at most :data:`CACHED_METHODS` methods. The compiled functions read the model's variables
    at each call, so a model whose weights change gives the new maps. The cache lives as long
    as the model (see :class:`_MethodCache`); the model's computation, weights and saved files
    are not touched. :func:`forget_methods` empties it.
    """
    from xaipipe import methods

    cache_key = _cache_key(key, params)
    cache = model.__dict__.get(_CACHE_ATTRIBUTE)
    if not isinstance(cache, _MethodCache):
        cache = _MethodCache()
        object.__setattr__(model, _CACHE_ATTRIBUTE, cache)  # not Keras's tracking: the cache is no part of the model
    explainer = cache.methods.get(cache_key)
    if explainer is None:
        explainer = methods.create(key, model, **params)
        cache.methods[cache_key] = explainer
        while len(cache.methods) > CACHED_METHODS:
            cache.methods.popitem(last=False)
    cache.methods.move_to_end(cache_key)
    return explainer


def forget_methods(model: Any) -> None:
    """Drop the decoder's cached methods of ``model`` (a Keras model or a wrapper with ``.model``);
    the next call builds and compiles them anew."""
    keras_model, _ = _keras_model(model)
    keras_model.__dict__.pop(_CACHE_ATTRIBUTE, None)


def _method(method: Any, model: Any, layer: str | None) -> Method:
    from xaipipe import methods

    if isinstance(method, str):
        # the seed passes layerName to every method; only those with a target layer take it
        return cached_method(method, model, **({"layer": layer} if methods.takes_layer(method) else {}))
    if isinstance(method, Method):
        made_for = getattr(method, "source_model", method.model)
        if made_for is not model:  # its maps would be another model's, for this model's predicted classes
            raise ValueError(
                f"method {method.name!r} was made for model {getattr(made_for, 'name', '?')!r}, not for the model "
                f"given ({getattr(model, 'name', '?')!r}; after load_model the model is another object): make it "
                "for this model, or pass its key (method='gradcam'), which the decoder builds once per model"
            )
        made_layer = getattr(method, "target_layer", None) or layer
        named = (made_layer, made_layer.split("/")[-1])
        if layer is not None and methods.takes_layer(method.name) and layer not in named:
            raise ValueError(
                f"layerName {layer!r} differs from the layer {method.target_layer!r} the method object was made "
                "for; leave layerName out, or make the method with that layer"
            )
        return method
    if hasattr(method, "compute_heatmap"):
        return SeedMethod(model, method)
    raise TypeError(f"method must be a method key, a xaipipe method or have compute_heatmap(); got {type(method)}")


def _class_count(explainer: Method, n_labels: int) -> int:
    """The classes of the model: ``n_labels``, which must agree with the explained scores
    (a one-unit sigmoid model's one label stands for its two classes)."""
    if n_labels == 1 and explainer.n_classes == 2:
        return 2
    if n_labels != explainer.n_classes:
        raise ValueError(
            f"the model wrapper says n_labels={n_labels} but its Keras model has {explainer.n_classes} class scores; "
            "give the wrapper the model's number of classes"
        )
    return n_labels


def _predicted_classes(preds: Any, n_classes: int, samples: list[str]) -> np.ndarray:
    """The argmax class (N, 1) of each sample's predictions (N, K); a ValueError naming the sample or the
    shape at fault. A one-unit sigmoid model's outputs (N, 1) are its probabilities p of class 1."""
    from xaipipe.autodiff import two_class_probabilities
    from xaipipe.methods.base import target_classes

    preds = np.asarray(preds)
    if preds.dtype == bool:  # thresholded predictions (p > 0.5)
        preds = preds.astype(np.float32)
    if preds.dtype == object or not np.issubdtype(preds.dtype, np.number):
        raise ValueError(f"preds must be numbers (N samples, {n_classes} classes), got dtype {preds.dtype}")
    if preds.ndim == 1 and n_classes == 2 and len(preds) == len(samples):  # a one-unit sigmoid's p, raveled
        preds = preds[:, None]
    if preds.ndim == 2 and preds.shape[1] == 1 and n_classes == 2:
        preds = two_class_probabilities(preds)
    if preds.ndim != 2 or preds.shape != (len(samples), n_classes):
        raise ValueError(
            f"preds has shape {preds.shape}; for {len(samples)} samples of a model with {n_classes} classes it must "
            f"be ({len(samples)}, {n_classes}): the model's predictions for the generator's samples, in order"
        )
    return target_classes(preds.astype(np.float64), "argmax", ids=samples)


def _stack(arrays: list[np.ndarray]) -> np.ndarray:
    """One array when all shapes agree, else an object array of the individual arrays."""
    if len({a.shape for a in arrays}) <= 1:
        return np.stack(arrays)
    out = np.empty(len(arrays), dtype=object)
    out[:] = arrays
    return out


def xai_decoder(
    data_gen: Any,
    model: Any,
    preds: np.ndarray | None = None,
    method: Any = "gradcam",
    layerName: str | None = None,  # noqa: N803 - the seed's name
    overlay: bool = True,
    alpha: float = 0.25,
    preprocess_overlay: bool = True,
    out_path: str | os.PathLike | None = None,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Compute XAI heatmaps for every sample of ``data_gen``.

    preds: predictions (N, K); with them, one map per sample for its argmax class;
        without, one map per sample and class.
    method: a method key (see the README's table), a xaipipe method object, or an
        object with ``compute_heatmap(image, class_index)``. A key's method is built and
        compiled on the first call for the model and reused by later ones (:func:`cached_method`).
    preprocess_overlay: maps are drawn on / resized to the image after the
        generator's subfunctions (true) or the image as loaded (false).
    out_path: None returns ``(images, heatmaps)``: the images at the overlay
        resolution and the maps resized to them, (N, H, W) with ``preds``, (N, K, H, W)
        without (volumes: with the depth axis). A folder writes one file per map,
        named like ``dir.sample.png`` (``.class_{k}`` without ``preds``), and returns None.
    """
    keras_model, n_labels = _keras_model(model)
    explainer = _method(method, keras_model, layerName)
    dims = len(explainer.spatial_shape)
    n = len(data_gen.samples)
    samples = [str(sample) for sample in data_gen.samples]
    n_classes = _class_count(explainer, n_labels)
    if preds is not None:
        classes = _predicted_classes(preds, n_classes, samples)
        from xaipipe.autodiff import multi_label

        if multi_label(keras_model):
            warnings.warn(
                f"model {keras_model.name!r} ends in {n_classes} sigmoids (multi-label: each output a finding of its "
                "own): with preds the decoder explains one class per sample, its highest, also where no finding is "
                "present; pass preds=None for a map of every finding",
                stacklevel=2,
            )
    else:
        classes = np.tile(np.arange(n_classes, dtype=np.int32), (n, 1))
    extension = (data_gen.image_format or "png") if dims == 2 else (data_gen.image_format or "nii.gz")
    file_format = format_of_extension(extension, dims)
    if out_path is not None:
        extension = "." + extension.lstrip(".") if file_format == "png" else EXTENSIONS[file_format]
    images, heatmaps = [], []
    batch_size = max(1, int(getattr(data_gen, "batch_size", 32) or 32))
    for start in range(0, n, batch_size):
        indices = range(start, min(start + batch_size, n))
        inputs = np.stack(
            [data_gen.preprocess_image(i, run_resize=True, run_aug=False, run_standardize=True) for i in indices]
        )
        _, maps = explainer.explain(inputs, classes[start : start + len(indices)], ids=samples[start : start + len(indices)])
        for j, i in enumerate(indices):
            image = _overlay_image(data_gen, i, preprocess_overlay)
            shape = image.shape[:dims]
            if out_path is None:
                images.append(image)
                resized = np.stack([map_at(m, shape, explainer.signed) for m in maps[j]])
                heatmaps.append(resized[0] if preds is not None else resized)
                continue
            display = display_image(image, dims)
            grid = _source_grid(data_gen, i, shape) if file_format in ("nifti", "gif") else {}
            for t, class_index in enumerate(classes[i]):
                name = overlay_name(str(data_gen.samples[i]), None if preds is not None else int(class_index), extension)
                target = Path(out_path) / name
                write_map(
                    target, maps[j, t], display, dims, file_format, overlay, alpha, signed=explainer.signed, **grid
                )
    if out_path is None:
        return _stack(images), _stack(heatmaps)
    return None


def _source_grid(data_gen: Any, index: int, shape: tuple[int, ...]) -> dict[str, Any]:
    """``spacing``, ``origin`` and ``direction`` of sample ``index``'s file for its map of ``shape`` (a NIfTI map's
    grid; a GIF's orientation), as the pipeline writes them: none (1 mm, the identity) for an ``.npy`` volume, whose
    grid that is, and with a warning where the file cannot be read here (a generator whose loader reads from
    elsewhere); the origin not where subfunctions changed the shape (a crop or a padding, whose window is not known
    here), with a warning. The maps were written with the identity without a word, so a viewer placed an
    anisotropic, oblique or LPS-stored scan's map in the wrong size, side and angle."""
    from xaipipe.geometry import Geometry
    from xaipipe.geometry import equal as geometry_equal
    from xaipipe.readers import load_sample
    from xaipipe.samples import sample_path, split_series

    sample = str(data_gen.samples[index])
    try:
        path = sample_path(data_gen.path_imagedir, sample, data_gen.image_format)
        array, geometry = load_sample(path, 3, split_series(sample)[1])
    except (OSError, ValueError) as error:
        warnings.warn(f"sample {sample!r}: its map gets no geometry of its source (1 mm, identity): {error}",
                      stacklevel=3)  # fmt: skip
        return {}
    if geometry is None or geometry_equal(geometry, Geometry()):
        return {}  # an .npy volume: the made-up grid (1 mm, identity) is its own
    if tuple(array.shape[:3]) != tuple(shape):
        warnings.warn(
            f"sample {sample!r}: its map keeps the spacing and direction of {path} but not its origin: the image "
            f"the map is drawn on has shape {tuple(shape)}, the file {tuple(array.shape[:3])} (a crop or padding of "
            "the subfunctions, whose window is not known here)",
            stacklevel=3,
        )
        return {"spacing": geometry.spacing, "direction": geometry.direction}
    return {"spacing": geometry.spacing, "origin": geometry.origin, "direction": geometry.direction}


def _overlay_image(data_gen: Any, index: int, preprocess_overlay: bool) -> np.ndarray:
    if preprocess_overlay:
        return data_gen.preprocess_image(index, run_resize=False, run_aug=False, run_standardize=False)
    return data_gen.sample_loader(
        data_gen.samples[index],
        data_gen.path_imagedir,
        image_format=data_gen.image_format,
        grayscale=data_gen.grayscale,
        **data_gen.kwargs,
    )
