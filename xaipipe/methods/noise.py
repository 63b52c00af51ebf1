"""The ``noise`` option of the gradient methods: SmoothGrad (Smilkov et al., 2017, "SmoothGrad: removing
noise by adding noise"), SmoothGrad-squared (Hooker et al., 2019, "A Benchmark for Interpretability
Methods in Deep Neural Networks") and VarGrad (Adebayo et al., 2018, "Local Explanation Methods for
Deep Neural Networks Lack Sensitivity to Parameter Values").

A method's attribution a(x) is what it computes before it reduces the input channels: the
input gradient for saliency and guided backpropagation (signed; their maps are max_c |.|),
x * dS/dx for Input x Gradient and the per-channel integrated gradients (their maps sum
over c); the map itself for the methods without a channel reduction (the CAM methods).
With ``noise`` the method's map is the channel reduction of a statistic of a over
n = ``samples`` noisy copies x_k = x + s * eps_k of each input x:

    smoothgrad:     (1/n) sum_k a(x_k)
    smoothgrad_sq:  (1/n) sum_k a(x_k)^2
    vargrad:        (1/n) sum_k a(x_k)^2 - ((1/n) sum_k a(x_k))^2   (the population variance)

taken per input value (every position and channel) BEFORE the channel reduction. This is
Captum's ``NoiseTunnel`` around the method's ``attribute`` (Saliency with ``abs=False``,
InputXGradient, IntegratedGradients, GuidedBackprop) followed by the method's channel reduction.

The noise: eps (``samples``, *input shape) is drawn once per method, from ``seed``, as
``numpy.random.default_rng(seed).standard_normal((samples, *input_shape), dtype=float32)``,
and shared by every input (as LIME shares its perturbations); copy k of input x is
x + s * eps_k with s = ``sigma`` * (max(x) - min(x)), the range of that input over all its
values. A map therefore depends on its input, the model and the settings alone, not on the
inputs that share its batch or shard; ``sigma`` 0 gives n copies of x (smoothgrad then
equals the plain method). The copies are made here, in numpy, and go through the method's
compiled function ``chunk_size`` at a time (whole inputs' copies when they fit, otherwise one
input's copies in parts); the statistics are computed in float64 from each input's n
attributions. The eps array takes ``samples`` x the input's size x 4 bytes (30 MB for 50
copies of a 224 x 224 x 3 input).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

Attribute = Callable[..., np.ndarray]


def noise_draws(settings: Mapping[str, Any], input_shape: tuple[int, ...]) -> np.ndarray:
    """The standard-normal noise eps (samples, *input_shape), float32, from the settings' seed."""
    rng = np.random.default_rng(settings["seed"])
    return rng.standard_normal((settings["samples"], *input_shape), dtype=np.float32)


def noise_scales(inputs: np.ndarray, sigma: float) -> np.ndarray:
    """The noise's standard deviation (B,) for each input: ``sigma`` times its range (max - min)."""
    flat = np.asarray(inputs, np.float32).reshape(len(inputs), -1)
    return (sigma * (flat.max(axis=1).astype(np.float64) - flat.min(axis=1))).astype(np.float32)


def statistic(values: np.ndarray, kind: str) -> np.ndarray:
    """The ``kind`` statistic over axis 1 (the copies) of ``values`` (k, n, ...), in float64."""
    values = np.asarray(values, np.float64)
    if kind == "smoothgrad":
        return values.mean(axis=1)
    if kind == "smoothgrad_sq":
        return (values * values).mean(axis=1)
    if kind == "vargrad":
        return values.var(axis=1)  # two passes: no cancellation where the variance is small
    raise ValueError(f"noise.kind must be smoothgrad, smoothgrad_sq or vargrad, got {kind!r}")


class NoiseTunnel:
    """The noise statistic of a method's attribution, for a batch of inputs (see the module docstring).

    ``attribute(copies (R, ...), classes (R, T), *per_copy)`` -> attributions (R, T, ...) is the
    method's compiled function; ``per_copy`` are arrays given per input (B, ...) that each copy
    takes from its input (integrated gradients' baselines).
    """

    def __init__(self, settings: Mapping[str, Any], input_shape: tuple[int, ...], chunk_size: int):
        self.settings = dict(settings)
        self.input_shape = tuple(input_shape)
        self.chunk_size = chunk_size
        self._eps: np.ndarray | None = None

    @property
    def eps(self) -> np.ndarray:
        """The noise (samples, *input_shape), drawn on first use."""
        if self._eps is None:
            self._eps = noise_draws(self.settings, self.input_shape)
        return self._eps

    def __call__(self, attribute: Attribute, inputs: np.ndarray, classes: np.ndarray, *per_input: np.ndarray) -> Any:
        inputs = np.asarray(inputs, np.float32)
        classes = np.asarray(classes, np.int32)
        if not len(inputs):
            return np.asarray(attribute(inputs, classes, *per_input), np.float32)
        n = self.settings["samples"]
        eps = self.eps
        scales = noise_scales(inputs, self.settings["sigma"]).reshape(-1, *[1] * (inputs.ndim))
        images_per_call = max(1, self.chunk_size // n)
        copies_per_call = min(n, self.chunk_size)
        result = None
        for first in range(0, len(inputs), images_per_call):
            group = np.arange(first, min(first + images_per_call, len(inputs)))
            parts = []
            for start in range(0, n, copies_per_call):
                part = eps[start : start + copies_per_call]
                copies = (inputs[group, None] + scales[group] * part[None]).reshape(-1, *self.input_shape)
                images = np.repeat(group, len(part))
                given = [np.asarray(array)[images] for array in per_input]
                attributions = np.asarray(attribute(copies, classes[images], *given))
                parts.append(attributions.reshape(len(group), len(part), *attributions.shape[1:]))
            values = statistic(np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0], self.settings["kind"])
            if result is None:
                result = np.empty((len(inputs), *values.shape[1:]), np.float32)
            result[group] = values
        return result
