"""Checks of method parameters, cheap enough for the workflow to run on the config before any job.

Each parameter name has one kind (a positive integer, a number, ...); :func:`check_params`
checks a method's parameters against their kinds and against the input size, naming the
parameter and the value at fault. The methods' constructors use the same checks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from numbers import Integral, Real
from typing import Any


def check_positive_int(name: str, value: Any) -> int:
    """``value`` as an int >= 1; ValueError naming the parameter otherwise."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_number(name: str, value: Any) -> float:
    """``value`` as a float; ValueError naming the parameter unless it is a finite real number."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a number, got {value!r}")
    return float(value)


def check_positive_number(name: str, value: Any) -> float:
    number = check_number(name, value)
    if number <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return number


def check_non_negative_number(name: str, value: Any) -> float:
    number = check_number(name, value)
    if number < 0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    return number


def _probability(name: str, value: Any) -> float:
    """A probability strictly between 0 and 1 (RISE's ``p``: a mask that keeps all or nothing shows nothing)."""
    if isinstance(value, bool) or not isinstance(value, Real) or not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be a number between 0 and 1 (both excluded), got {value!r}")
    return float(value)


def check_seed(name: str, value: Any) -> int:
    """A seed of numpy's generators: an integer >= 0 (``numpy.random.default_rng`` refuses a negative one, which
    the jobs then reported as a bare "expected non-negative integer")."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return int(value)


def _optional_positive_int(name: str, value: Any) -> int | None:
    return None if value is None else check_positive_int(name, value)


def _optional_name(name: str, value: Any) -> str | None:
    if value is not None and not (isinstance(value, str) and value):
        raise ValueError(f"{name} must be a layer name (or null for the automatic choice), got {value!r}")
    return value


def _optional_positive_number(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number (or null for the default of the input), got {value!r}")
    return float(value)


#: How LIME splits an input into segments (xaipipe.methods.lime).
SEGMENTATIONS = ("grid", "slic")


def _segmentation(name: str, value: Any) -> str:
    if value not in SEGMENTATIONS:
        raise ValueError(f"{name} must be 'grid' (regular cells) or 'slic' (SLIC superpixels), got {value!r}")
    return value


def _one_of(name: str, value: Any, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")
    return value


# the registries (xaipipe.methods, xaipipe.maps) import this module: their names are read when a value is checked


def _score(name: str, value: Any) -> str:
    from xaipipe.methods import SCORES

    return _one_of(name, value, SCORES)


def _baseline(name: str, value: Any) -> str | float:
    if isinstance(value, str):
        if value in ("zeros", "zero", "black"):
            return value
        raise ValueError(f"{name} must be 'zeros', 'black' or a number, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be 'zeros', 'black' or a number, got {value!r}")
    return value


def _rule(name: str, value: Any) -> str:
    from xaipipe.methods import IG_RULES

    return _one_of(name, value, IG_RULES)


def _noise_kind(name: str, value: Any) -> str:
    from xaipipe.methods import NOISE_KINDS

    return _one_of(name, value, NOISE_KINDS)


_NOISE_KEYS: Mapping[str, Callable[[str, Any], Any]] = {
    "kind": _noise_kind,
    "samples": check_positive_int,
    "sigma": check_non_negative_number,  # 0: every copy is the input itself
    "seed": check_seed,
}


def _noise(name: str, value: Any) -> dict[str, Any] | None:
    """None (off) or a mapping of some of kind, samples, sigma, seed, each checked (the others take defaults)."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError(
            f"{name} must be null (off) or a mapping of {', '.join(_NOISE_KEYS)}, "
            f"e.g. {{kind: smoothgrad, samples: 50, sigma: 0.15, seed: 0}}; got {value!r}"
        )
    for key in value:
        if key not in _NOISE_KEYS:
            raise ValueError(f"{name}.{key}: unknown key {key!r}; {name} takes {', '.join(_NOISE_KEYS)}")
    return {key: _NOISE_KEYS[key](f"{name}.{key}", setting) for key, setting in value.items()}


def _normalize(name: str, value: Any) -> str:
    from xaipipe.maps import NORMALIZATIONS

    return _one_of(name, value, NORMALIZATIONS)


def _precision(name: str, value: Any) -> str:
    from xaipipe.methods import PRECISIONS

    return _one_of(name, value, PRECISIONS)


KINDS: Mapping[str, Callable[[str, Any], Any]] = {
    "layer": _optional_name,
    "score": _score,
    "steps": check_positive_int,
    "rule": _rule,
    "baseline": _baseline,
    "chunk_size": check_positive_int,
    "patch_size": check_positive_int,
    "stride": _optional_positive_int,
    "fill": check_number,
    "num_samples": check_positive_int,
    "segments": check_positive_int,
    "segmentation": _segmentation,
    "compactness": _optional_positive_number,
    "num_features": check_positive_int,
    "kernel_width": check_positive_number,
    "seed": check_seed,
    "noise": _noise,
    "num_masks": check_positive_int,
    "cells": check_positive_int,
    "p": _probability,
    "normalize": _normalize,
    "precision": _precision,
}


def combination_problem(params: Mapping[str, Any]) -> str | None:
    """What makes a method's full parameters (defaults filled in, ``noise`` as :func:`xaipipe.methods.noise_settings`
    completes it) give maps that look like evidence but are not, or None: pixels no occlusion patch covers, a
    single segment or cell (a constant map), VarGrad of one copy or of no noise (all zeros), LIME with no more
    samples than segments (an underdetermined fit)."""
    stride, patch = params.get("stride"), params.get("patch_size")
    if stride is not None and patch is not None and stride > patch:
        return (
            f"stride {stride} is larger than patch_size {patch}: the pixels between the patches would get no "
            "value, 0 in every map, which reads as no relevance; choose stride <= patch_size"
        )
    for name, what in (("segments", "segment"), ("cells", "cell")):
        if params.get(name) == 1:
            return f"{name} 1 makes every map one value over the whole input (a single {what}); choose at least 2"
    noise = params.get("noise")
    if isinstance(noise, Mapping) and noise.get("kind") == "vargrad":  # the full settings (noise_settings)
        if noise.get("samples") == 1:
            return (
                "noise.samples 1 with kind vargrad: the variance of one copy is 0, every map all zeros; "
                "choose 2 or more"
            )
        if noise.get("sigma") == 0:
            return (
                "noise.sigma 0 with kind vargrad: every copy is the input itself, whose variance is 0, every map all "
                "zeros; choose a sigma above 0"
            )
    if params.get("segmentation") == "grid" and params.get("compactness") is not None:
        return (
            f"compactness {params['compactness']} applies to segmentation 'slic' only: the grid's cells ignore it, "
            "and the maps would equal plain grid LIME's under another parameter set; remove it or set segmentation: slic"
        )
    samples, segments = params.get("num_samples"), params.get("segments")
    if samples is not None and segments is not None and samples <= segments:
        return (
            f"num_samples {samples} is not above segments {segments}: LIME fits one weight per segment, and fewer "
            "samples than weights leave the fit to its regularization (maps of noise); choose num_samples well "
            "above segments (the defaults: 1000 for 50)"
        )
    return None


class InputSizeError(ValueError):
    """A parameter too large for the model input's spatial size (which the workflow sets by a preprocessing key)."""


def check_params(
    params: Mapping[str, Any], size: Sequence[int] | None = None, method: str | None = None
) -> dict[str, Any]:
    """Each parameter checked against its kind, and the patch and segment counts against the
    input's spatial ``size`` where given; ValueError naming the parameter and what is allowed
    (preceded by ``method``'s name where given, as the constructors do)."""
    try:
        return _checked(params, size)
    except ValueError as error:
        if method is None:
            raise
        raise type(error)(f"{method}: {error}") from None


def _checked(params: Mapping[str, Any], size: Sequence[int] | None) -> dict[str, Any]:
    checked = {name: KINDS[name](name, value) if name in KINDS else value for name, value in params.items()}
    if size is not None:
        patch = checked.get("patch_size")
        if patch is not None and patch > min(size):
            raise InputSizeError(
                f"patch_size {patch} is larger than the model input {list(size)}; choose at most {min(size)}"
            )
        cells = checked.get("cells")
        if cells is not None and cells > min(size):
            raise InputSizeError(
                f"cells {cells} exceeds the model input's smallest side {min(size)} ({list(size)}): RISE's mask "
                f"cells would be smaller than a pixel; choose at most {min(size)}"
            )
        segments = checked.get("segments")
        if segments is not None and segments > math.prod(size):
            raise InputSizeError(
                f"segments {segments} exceeds the {math.prod(size)} pixels of the model input {list(size)}"
            )
    return checked
