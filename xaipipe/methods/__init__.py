"""The registry of XAI methods: keys (as in the seed framework) to implementations.

Importing this module is cheap (no TensorFlow), so the workflow can check the
configured method keys before any job runs.
"""

from __future__ import annotations

import importlib
from typing import Any

# canonical name -> (module, class, accepted keys)
_REGISTRY: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "gradcam": ("xaipipe.methods.gradcam", "GradCAM", ("gradcam", "GradCAM", "gc")),
}
_KEYS = {key: name for name, (_, _, keys) in _REGISTRY.items() for key in keys}


def valid_keys() -> list[str]:
    return list(_KEYS)


def canonical_name(key: str) -> str:
    """The canonical name of a method key; ValueError listing the valid keys otherwise."""
    try:
        return _KEYS[key]
    except (KeyError, TypeError):
        raise ValueError(f"unknown XAI method {key!r}; valid keys: {', '.join(_KEYS)}") from None


def method_class(key: str) -> type:
    module, cls, _ = _REGISTRY[canonical_name(key)]
    return getattr(importlib.import_module(module), cls)


def create(key: str, model: Any, **params: Any) -> Any:
    """Instantiate the method ``key`` for ``model`` with its parameters."""
    return method_class(key)(model, **params)
