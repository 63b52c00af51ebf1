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
#: Parameters renamed since they were first published: old name -> new name.
RENAMED = MappingProxyType({"batch_size": "chunk_size"})

Params = Mapping[str, Any]


def _gradient_passes(params: Params, size: Sequence[int]) -> float:
    """One forward and backward pass per target."""
    return GRADIENT_PASS


def _path_passes(params: Params, size: Sequence[int]) -> float:
    """A forward and backward pass at each of the ``steps`` points of the path."""
    return GRADIENT_PASS * params["steps"]


def _occlusion_passes(params: Params, size: Sequence[int]) -> float:
    """One forward pass per patch position: ceil((n - patch) / stride) + 1 along each axis."""
    patch = params["patch_size"]
    stride = params["stride"] or patch
    return math.prod(max(1, math.ceil((n - patch) / stride) + 1) for n in size)


def _lime_passes(params: Params, size: Sequence[int]) -> float:
    """One forward pass per perturbed sample."""
    return params["num_samples"]


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
        """Every parameter the method takes: its constructor's, then ``normalize`` (the base class's)."""
        return (*self.defaults, NORMALIZE)


def _frozen(**defaults: Any) -> Mapping[str, Any]:
    return MappingProxyType(defaults)


_CAM = _frozen(layer=None, score=DEFAULT_SCORE)
_INPUT_GRADIENT = _frozen(score=DEFAULT_SCORE)
_LIME = _frozen(
    score=DEFAULT_SCORE,
    num_samples=1000,
    segments=50,
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
    "integratedgradients": Entry(
        "xaipipe.methods.integratedgradients",
        "IntegratedGradients",
        ("IntegratedGradients", "ig"),
        _frozen(score=DEFAULT_SCORE, steps=50, baseline="zeros", chunk_size=64),
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


def passes_per_sample(key: str, params: Params, size: Sequence[int]) -> float:
    """Model passes one target of one sample costs with ``key`` and ``params`` on inputs of spatial ``size``."""
    method = entry(key)
    return method.passes({**method.defaults, **params}, size)


def model_chunk(key: str, params: Params, batch_size: int) -> tuple[int, bool]:
    """Rows of one model call of ``key`` (``batch_size`` samples unless the method sets its own chunk),
    and whether the call runs a backward pass too."""
    method = entry(key)
    if method.chunk is None:
        return batch_size, method.gradients
    return {**method.defaults, **params}[method.chunk], method.gradients


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
