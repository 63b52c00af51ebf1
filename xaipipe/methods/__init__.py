"""The registry of XAI methods: keys (as in the seed framework) to implementations.

Importing this module is cheap (no TensorFlow), so the workflow can check the
configured method keys before any job runs.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

@dataclass(frozen=True)
class Entry:
    """Where a method lives, the keys that name it and the parameters its constructor takes."""

    module: str
    cls: str
    keys: tuple[str, ...]
    params: tuple[str, ...]


_COMMON = ("layer", "score")
_LIME = (*_COMMON, "num_samples", "segments", "num_features", "kernel_width", "seed", "fill", "batch_size")
_REGISTRY: dict[str, Entry] = {
    "gradcam": Entry("xaipipe.methods.gradcam", "GradCAM", ("gradcam", "GradCAM", "gc"), _COMMON),
    "gradcam++": Entry(
        "xaipipe.methods.gradcampp", "GradCAMPlusPlus", ("gradcam++", "GradCAM++", "GradCAMpp", "gc++"), _COMMON
    ),
    "guidedgradcam": Entry("xaipipe.methods.guidedgradcam", "GuidedGradCAM", ("GuidedGradCAM", "ggc"), _COMMON),
    "saliency": Entry("xaipipe.methods.saliency", "SaliencyMap", ("saliency", "SaliencyMap", "sm"), _COMMON),
    "guidedbackprop": Entry(
        "xaipipe.methods.guidedbackprop", "GuidedBackprop", ("guidedbackprop", "GuidedBackpropagation", "gb"), _COMMON
    ),
    "integratedgradients": Entry(
        "xaipipe.methods.integratedgradients",
        "IntegratedGradients",
        ("IntegratedGradients", "ig"),
        (*_COMMON, "steps", "baseline", "batch_size"),
    ),
    "occlusion": Entry(
        "xaipipe.methods.occlusion",
        "OcclusionSensitivity",
        ("OcclusionSensitivity", "os"),
        (*_COMMON, "patch_size", "stride", "fill", "batch_size"),
    ),
    "limepro": Entry("xaipipe.methods.limepro", "LimePro", ("LimePro", "lp"), _LIME),
    "limecon": Entry("xaipipe.methods.limecon", "LimeCon", ("LimeCon", "lc"), _LIME),
}
# the canonical names (used in output paths) are accepted as keys too
_KEYS = {key: name for name, entry in _REGISTRY.items() for key in (name, *entry.keys)}


def canonical_names() -> list[str]:
    return list(_REGISTRY)


def parameters(key: str) -> tuple[str, ...]:
    """The parameters that the method ``key`` accepts."""
    return _REGISTRY[canonical_name(key)].params


def valid_keys() -> list[str]:
    return list(_KEYS)


def canonical_name(key: str) -> str:
    """The canonical name of a method key; ValueError listing the valid keys otherwise."""
    try:
        return _KEYS[key]
    except (KeyError, TypeError):
        raise ValueError(f"unknown XAI method {key!r}; valid keys: {', '.join(_KEYS)}") from None


def method_class(key: str) -> type:
    entry = _REGISTRY[canonical_name(key)]
    return getattr(importlib.import_module(entry.module), entry.cls)


def create(key: str, model: Any, **params: Any) -> Any:
    """Instantiate the method ``key`` for ``model`` with its parameters."""
    return method_class(key)(model, **params)
