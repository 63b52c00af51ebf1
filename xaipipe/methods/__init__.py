"""The registry of XAI methods: keys (as in the seed framework) to implementations.

Each entry names the method's class and its keys, and holds what the workflow needs
before any job runs: the method's parameters with their defaults (the constructors
take their defaults from here, so each number lives in one place), its model passes
per sample and the rows of one of its model calls (``xaipipe.resources`` turns them
into memory and run time). Importing this module is cheap (no TensorFlow), so the
workflow can check the configured methods at parse time.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

#: The class scores a method can explain: before the final softmax/sigmoid, or after it.
SCORES = ("logits", "probabilities")
#: The class score a method explains unless told otherwise.
DEFAULT_SCORE = "logits"
#: A forward and backward pass costs about three forward passes.
GRADIENT_PASS = 3
#: The parameter every method takes (the base class's): how its maps are normalized.
NORMALIZE = "normalize"
#: The other parameter every method takes: the precision the model and the method run in (``precision``; the maps
#: are summed and returned in float32 whatever it is), :func:`xaipipe.model.in_precision`.
PRECISION = "precision"
PRECISIONS = ("float32", "bfloat16", "float16")
DEFAULT_PRECISION = "float32"
#: Parameters renamed since they were first published: old name -> new name.
RENAMED = MappingProxyType({"batch_size": "chunk_size"})
#: The statistics of a method's attributions over noisy copies of the input (``noise.kind``, see
#: :mod:`xaipipe.methods.noise`): SmoothGrad's mean, SmoothGrad-squared's mean square, VarGrad's variance.
NOISE_KINDS = ("smoothgrad", "smoothgrad_sq", "vargrad")
#: The settings of the ``noise`` option that a mapping leaves out (``sigma`` relative to each input's range).
NOISE = MappingProxyType({"kind": "smoothgrad", "samples": 50, "sigma": 0.15, "seed": 0})
#: The quadrature rules of integrated gradients' path integral (``rule``, see
#: :mod:`xaipipe.methods.integratedgradients`): ``steps`` midpoints, ``steps`` + 1 trapezoid points (both ends
#: included), or ``steps`` Gauss-Legendre nodes.
IG_RULES = ("midpoint", "trapezoid", "gauss-legendre")

Params = Mapping[str, Any]


def _gradient_passes(params: Params, size: Sequence[int]) -> float:
    """One forward and backward pass per target."""
    return GRADIENT_PASS


def _path_passes(params: Params, size: Sequence[int]) -> float:
    """A forward and backward pass at each point of the path: ``steps`` points, ``steps`` + 1 for the trapezoid rule
    (both ends)."""
    return GRADIENT_PASS * (params["steps"] + (params["rule"] == "trapezoid"))


def _occlusion_passes(params: Params, size: Sequence[int]) -> float:
    """One forward pass per patch position: ceil((n - patch) / stride) + 1 along each axis."""
    patch = params["patch_size"]
    stride = params["stride"] or patch
    return math.prod(max(1, math.ceil((n - patch) / stride) + 1) for n in size)


def _lime_passes(params: Params, size: Sequence[int]) -> float:
    """One forward pass per perturbed sample."""
    return params["num_samples"]


#: The channels of the target layer that Score-CAM's cost assumes (the registry sees neither model nor layer):
#: the last convolutional layer of a VGG16 has 512, a DenseNet121's 1024, a ResNet50's 2048, small CNNs fewer.
SCORECAM_CHANNELS = 512


def _scorecam_passes(params: Params, size: Sequence[int]) -> float:
    """One forward pass per channel K of the target layer (estimated: SCORECAM_CHANNELS), plus the one that reads
    the activations; counted per target like every method's, though one set of passes serves all of a sample's."""
    return SCORECAM_CHANNELS + 1


def _forward_pass(params: Params, size: Sequence[int]) -> float:
    """One forward pass."""
    return 1


def _rise_passes(params: Params, size: Sequence[int]) -> float:
    """One forward pass per random mask."""
    return params["num_masks"]


@dataclass(frozen=True)
class Entry:
    """One method: where it lives, the keys that name it, its parameters and its costs.

    defaults: every parameter the constructor takes (in its order) with its default.
    passes: model passes one target of one sample costs, from the parameters (with
        the defaults filled in) and the input's spatial size.
    chunk: the parameter that sets the rows of one model call (perturbed copies or
        path points); None: one call takes the workflow's ``batch_size`` samples.
    gradients: whether the model calls also run a backward pass.
    normalize: how the method's maps are scaled unless told otherwise (the parameter
        ``normalize``, which every method takes; see :func:`xaipipe.maps.normalize_maps`):
        ``minmax`` (the default), ``positive``, ``absolute`` or ``signed``.
    """

    module: str
    cls: str
    keys: tuple[str, ...]
    defaults: Mapping[str, Any]
    passes: Callable[[Params, Sequence[int]], float]
    chunk: str | None = None
    gradients: bool = True
    normalize: str = "minmax"

    @property
    def params(self) -> tuple[str, ...]:
        """Every parameter the method takes: its constructor's, then ``normalize`` and ``precision`` (the base
        class's)."""
        return (*self.defaults, NORMALIZE, PRECISION)


def _frozen(**defaults: Any) -> Mapping[str, Any]:
    return MappingProxyType(defaults)


# ``noise``: None (off) or a mapping (see NOISE); ``chunk_size``: the noisy copies per model call
_CAM = _frozen(layer=None, score=DEFAULT_SCORE, noise=None, chunk_size=64)
_INPUT_GRADIENT = _frozen(score=DEFAULT_SCORE, noise=None, chunk_size=64)
_LIME = _frozen(
    score=DEFAULT_SCORE,
    num_samples=1000,
    segments=50,
    segmentation="grid",
    compactness=None,  # SLIC's: None is 10 for 2D RGB inputs, 0.1 otherwise (xaipipe.methods.lime)
    num_features=5,
    kernel_width=0.25,
    seed=0,
    fill=0.0,
    chunk_size=256,
)
_REGISTRY: dict[str, Entry] = {
    "gradcam": Entry("xaipipe.methods.gradcam", "GradCAM", ("gradcam", "GradCAM", "gc"), _CAM, _gradient_passes),
    "gradcam++": Entry(
        "xaipipe.methods.gradcampp",
        "GradCAMPlusPlus",
        ("gradcam++", "GradCAM++", "GradCAMpp", "gc++"),
        _CAM,
        _gradient_passes,
    ),
    "guidedgradcam": Entry(
        "xaipipe.methods.guidedgradcam", "GuidedGradCAM", ("GuidedGradCAM", "ggc"), _CAM, _gradient_passes
    ),
    "hirescam": Entry("xaipipe.methods.hirescam", "HiResCAM", ("hirescam", "HiResCAM"), _CAM, _gradient_passes),
    "xgradcam": Entry("xaipipe.methods.xgradcam", "XGradCAM", ("xgradcam", "XGradCAM"), _CAM, _gradient_passes),
    "layercam": Entry("xaipipe.methods.layercam", "LayerCAM", ("layercam", "LayerCAM"), _CAM, _gradient_passes),
    "scorecam": Entry(
        "xaipipe.methods.scorecam",
        "ScoreCAM",
        ("scorecam", "ScoreCAM"),
        _frozen(layer=None, score=DEFAULT_SCORE, chunk_size=256),
        _scorecam_passes,
        chunk="chunk_size",
        gradients=False,
    ),
    "eigencam": Entry(
        "xaipipe.methods.eigencam",
        "EigenCAM",
        ("eigencam", "EigenCAM"),
        _frozen(layer=None, score=DEFAULT_SCORE),
        _forward_pass,
        gradients=False,
    ),
    "saliency": Entry(
        "xaipipe.methods.saliency",
        "SaliencyMap",
        ("saliency", "SaliencyMap", "sm"),
        _INPUT_GRADIENT,
        _gradient_passes,
        normalize="absolute",
    ),
    "guidedbackprop": Entry(
        "xaipipe.methods.guidedbackprop",
        "GuidedBackprop",
        ("guidedbackprop", "GuidedBackpropagation", "gb"),
        _INPUT_GRADIENT,
        _gradient_passes,
        normalize="absolute",
    ),
    "inputxgradient": Entry(
        "xaipipe.methods.inputxgradient",
        "InputXGradient",
        ("inputxgradient", "InputXGradient", "ixg"),
        _INPUT_GRADIENT,
        _gradient_passes,
        normalize="positive",
    ),
    "smoothgrad": Entry(
        "xaipipe.methods.smoothgrad",
        "SmoothGrad",
        ("smoothgrad", "SmoothGrad"),
        _frozen(score=DEFAULT_SCORE, noise=_frozen(**{**NOISE, "kind": "smoothgrad"}), chunk_size=64),
        _gradient_passes,
        normalize="absolute",
    ),
    "vargrad": Entry(
        "xaipipe.methods.smoothgrad",
        "VarGrad",
        ("vargrad", "VarGrad"),
        _frozen(score=DEFAULT_SCORE, noise=_frozen(**{**NOISE, "kind": "vargrad"}), chunk_size=64),
        _gradient_passes,
        normalize="absolute",
    ),
    "integratedgradients": Entry(
        "xaipipe.methods.integratedgradients",
        "IntegratedGradients",
        ("IntegratedGradients", "ig"),
        _frozen(score=DEFAULT_SCORE, steps=50, rule="midpoint", baseline="zeros", noise=None, chunk_size=64),
        _path_passes,
        chunk="chunk_size",
        normalize="positive",
    ),
    "occlusion": Entry(
        "xaipipe.methods.occlusion",
        "OcclusionSensitivity",
        ("OcclusionSensitivity", "os"),
        _frozen(score=DEFAULT_SCORE, patch_size=16, stride=None, fill=0.0, chunk_size=256),
        _occlusion_passes,
        chunk="chunk_size",
        gradients=False,
        normalize="positive",
    ),
    "limepro": Entry(
        "xaipipe.methods.limepro",
        "LimePro",
        ("LimePro", "lp"),
        _LIME,
        _lime_passes,
        "chunk_size",
        gradients=False,
        normalize="positive",
    ),
    "limecon": Entry(
        "xaipipe.methods.limecon",
        "LimeCon",
        ("LimeCon", "lc"),
        _LIME,
        _lime_passes,
        "chunk_size",
        gradients=False,
        normalize="positive",
    ),
    "rise": Entry(
        "xaipipe.methods.rise",
        "RISE",
        ("rise", "RISE"),
        _frozen(score=DEFAULT_SCORE, num_masks=4000, cells=7, p=0.5, seed=0, chunk_size=256),
        _rise_passes,
        chunk="chunk_size",
        gradients=False,
    ),
}
# the canonical names (used in output paths) are accepted as keys too
_KEYS = {key: name for name, entry in _REGISTRY.items() for key in (name, *entry.keys)}


def canonical_names() -> list[str]:
    return list(_REGISTRY)


def entry(key: str) -> Entry:
    """The registry entry of the method ``key``; ValueError listing the valid keys for an unknown key."""
    return _REGISTRY[canonical_name(key)]


def parameters(key: str) -> tuple[str, ...]:
    """The parameters that the method ``key`` accepts."""
    return entry(key).params


def defaults(key: str) -> Mapping[str, Any]:
    """The constructor's parameters of the method ``key`` with their defaults (read-only; ``normalize``,
    the base class's, is :func:`normalization`)."""
    return entry(key).defaults


def normalization(key: str) -> str:
    """How the maps of the method ``key`` are normalized unless its ``normalize`` says otherwise."""
    return entry(key).normalize


def takes_layer(key: str) -> bool:
    """Whether the method ``key`` explains a target layer (and so takes ``layer``)."""
    return "layer" in parameters(key)


def renamed_parameter(key: str, param: str) -> str | None:
    """The new name of ``param`` if the method ``key`` knew it under this old name, else None."""
    new = RENAMED.get(param)
    return new if new in parameters(key) else None


def renamed_message(param: str, new: str) -> str:
    """Why an old parameter name is refused."""
    return (
        f"parameter {param!r} was renamed to {new!r} (the rows of one model call); "
        "the workflow's top-level batch_size (samples per model call) is a different setting"
    )


def noise_settings(key: str, noise: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The full ``noise`` settings of the method ``key`` (None: off): the keys a mapping leaves out
    come from the method's own default noise (SmoothGrad's, VarGrad's), else from :data:`NOISE`."""
    if noise is None:
        return None
    default = entry(key).defaults.get("noise")
    return {**NOISE, **(default or {}), **noise}


#: The methods whose maps come from the target layer's activations and gradients alone (``layer_maps``), so that
#: several of them share one forward and backward pass (:class:`xaipipe.methods.camfamily.CAMFamily`).
SHARED_PASS = ("gradcam", "gradcam++", "hirescam", "xgradcam", "layercam")


def shares_pass(key: str, params: Params) -> bool:
    """Whether the method ``key`` with ``params`` may join a :class:`~xaipipe.methods.camfamily.CAMFamily`
    (one of :data:`SHARED_PASS`, without ``noise``); the members must also agree on ``layer``, ``score`` and
    ``precision`` (:func:`family_signature`)."""
    return canonical_name(key) in SHARED_PASS and params.get("noise") is None


#: The methods whose maps come from the input and its plain gradients (``SaliencyMap._map``): within one job they
#: join a CAM family's pass, whose backward pass reaches the input after the layer (one forward pass fewer).
INPUT_GRADIENT_PASS = ("saliency", "inputxgradient")


def joins_pass(key: str, params: Params) -> bool:
    """Whether the method ``key`` with ``params`` may join a CAM family's pass within a job as an input-gradient
    member (one of :data:`INPUT_GRADIENT_PASS`, without ``noise``; the same ``score`` and ``precision``)."""
    return canonical_name(key) in INPUT_GRADIENT_PASS and params.get("noise") is None


def resolved_params(key: str, params: Params) -> dict[str, Any]:
    """Every parameter of the method ``key``: ``params`` over its defaults, ``normalize`` and ``precision``
    (the base class's) included, so that two ways of writing the same method compare equal."""
    return {**entry(key).defaults, NORMALIZE: normalization(key), PRECISION: DEFAULT_PRECISION, **params}


def family_signature(key: str, params: Params) -> tuple[Any, ...]:
    """What members of one family must share, from the parameters alone (the defaults filled in): the target
    ``layer``, ``score`` and ``precision``."""
    full = resolved_params(key, params)
    return (full["layer"], full["score"], full[PRECISION])


def shared_pass_groups(variants: Sequence[tuple[str, Params]]) -> list[list[int]]:
    """Which of ``variants`` ((method key, parameters) each) share one pass in one job: the indices of each group
    of two or more, in the variants' order. The CAM variants that :func:`shares_pass` admits group by equal
    :func:`family_signature`s; the input-gradient variants (:func:`joins_pass`) join the first CAM group of
    their ``score`` and ``precision``, which then may hold a single CAM. A variant in no group needs a pass of
    its own."""
    groups: dict[str, list[int]] = {}
    for index, (key, params) in enumerate(variants):
        if shares_pass(key, params):
            groups.setdefault(repr(family_signature(key, params)), []).append(index)
    for index, (key, params) in enumerate(variants):
        if joins_pass(key, params):
            full = resolved_params(key, params)
            wanted = (full["score"], full[PRECISION])  # a CAM group's signature is (layer, score, precision)
            group = next((g for g in groups.values() if family_signature(*variants[g[0]])[1:] == wanted), None)
            if group is not None:
                group.append(index)
    return [sorted(group) for group in groups.values() if len(group) > 1]


def passes_per_sample(key: str, params: Params, size: Sequence[int]) -> float:
    """Model passes one target of one sample costs with ``key`` and ``params`` on inputs of spatial ``size``
    (with ``noise``: its ``samples`` times the method's passes)."""
    method = entry(key)
    full = {**method.defaults, **params}
    noise = noise_settings(key, full.get("noise"))
    return method.passes(full, size) * (1 if noise is None else noise["samples"])


def model_chunk(key: str, params: Params, batch_size: int) -> tuple[int, bool]:
    """Rows of one model call of ``key`` (``batch_size`` samples unless the method sets its own chunk, or
    its noisy copies go through the model ``chunk_size`` at a time), and whether the call runs a backward pass too."""
    method = entry(key)
    full = {**method.defaults, **params}
    if method.chunk is not None:
        return full[method.chunk], method.gradients
    if full.get("noise") is not None:
        return full["chunk_size"], method.gradients
    return batch_size, method.gradients


def valid_keys() -> list[str]:
    return list(_KEYS)


def canonical_name(key: str) -> str:
    """The canonical name of a method key; ValueError listing the valid keys otherwise."""
    try:
        return _KEYS[key]
    except (KeyError, TypeError):
        raise ValueError(f"unknown XAI method {key!r}; valid keys: {', '.join(_KEYS)}") from None


def method_class(key: str) -> type:
    method = entry(key)
    return getattr(importlib.import_module(method.module), method.cls)


def create(key: str, model: Any, **params: Any) -> Any:
    """Instantiate the method ``key`` for ``model`` with its parameters."""
    return method_class(key)(model, **params)
