"""Integrated gradients (Sundararajan et al., 2017, "Axiomatic Attribution for Deep Networks").

IG_i = (x_i - x'_i) * integral_0^1 dS(x' + a (x - x')) / dx_i da, approximated by a
quadrature rule (``rule``) with points a_k and weights w_k (sum_k w_k = 1):

    IG_i ~= (x_i - x'_i) * sum_k w_k dS(x' + a_k (x - x')) / dx_i

- ``midpoint`` (n = ``steps`` points): a_k = (k + 1/2) / n, w_k = 1 / n, k = 0..n-1;
  exact for integrands (the gradient along the path) of degree <= 1, error
  g'(xi) / (24 n^2) for a smooth integrand g.
- ``trapezoid`` (n + 1 points, both ends: one model pass more): a_k = k / n, w_k = 1 / n,
  w_0 = w_n = 1 / (2 n); exact for degree <= 1, error -g'(xi) / (12 n^2)
  (twice the midpoint rule's, of the other sign).
- ``gauss-legendre`` (n points): the Gauss-Legendre nodes t_k and weights v_k on [-1, 1]
  (``numpy.polynomial.legendre.leggauss``) mapped to [0, 1], a_k = (t_k + 1) / 2,
  w_k = v_k / 2; exact for integrands of degree <= 2 n - 1.

By completeness, sum_i IG_i = S(x) - S(x') (up to the quadrature error). The map is the sum
of IG over the input channels; the RAW map keeps its sign, so completeness can be checked.
benchmarks/ig_rules.py measures the completeness error of each rule against ``steps``.

The baseline x' (in the model's input space, after preprocessing):
``"zeros"`` (default): all zeros; ``"black"``: each input's own per-channel minimum,
the darkest value of that channel in the image (the method sees model inputs, not
pixels, so this is the preprocessed black where the image has black pixels); a
number: that constant everywhere.

With ``noise`` (see :mod:`xaipipe.methods.noise`) the statistic is taken of the per-channel
IG of the noisy copies x_k, each from the baseline of the clean input x (as Captum's
``NoiseTunnel(IntegratedGradients)`` with fixed baselines), then summed over the channels;
all copies' path points go through the model ``chunk_size`` at a time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras
import numpy as np

from xaipipe.autodiff import PathGradients
from xaipipe.methods import IG_RULES, defaults
from xaipipe.methods.base import Method
from xaipipe.methods.params import check_params

_DEFAULTS = defaults("integratedgradients")


def quadrature(rule: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """The points a_k in [0, 1] and weights w_k (summing to 1) of ``rule`` with ``steps`` (module docstring)."""
    if rule == "midpoint":
        return (np.arange(steps) + 0.5) / steps, np.full(steps, 1.0 / steps)
    if rule == "trapezoid":
        weights = np.full(steps + 1, 1.0 / steps)
        weights[[0, -1]] /= 2
        return np.arange(steps + 1) / steps, weights
    if rule == "gauss-legendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return (nodes + 1) / 2, weights / 2
    raise ValueError(f"rule must be one of {list(IG_RULES)}, got {rule!r}")


def baseline_for(inputs: np.ndarray, baseline: str | float) -> np.ndarray:
    """The baseline inputs, shaped like or broadcastable to ``inputs`` (B, ..., C)."""
    if isinstance(baseline, str):
        if baseline in ("zeros", "zero"):
            return np.zeros_like(inputs)
        if baseline == "black":
            spatial_axes = tuple(range(1, inputs.ndim - 1))
            return np.broadcast_to(inputs.min(axis=spatial_axes, keepdims=True), inputs.shape)
        raise ValueError(f"baseline must be 'zeros', 'black' or a number, got {baseline!r}")
    if isinstance(baseline, bool) or not isinstance(baseline, (int, float, np.number)):
        raise ValueError(f"baseline must be 'zeros', 'black' or a number, got {baseline!r}")
    return np.full_like(inputs, float(baseline))


class IntegratedGradients(Method):
    name = "integratedgradients"

    def __init__(
        self,
        model: keras.Model,
        score: str = _DEFAULTS["score"],
        steps: int = _DEFAULTS["steps"],
        rule: str = _DEFAULTS["rule"],
        baseline: str | float = _DEFAULTS["baseline"],
        noise: Mapping[str, Any] | None = _DEFAULTS["noise"],
        chunk_size: int = _DEFAULTS["chunk_size"],
    ):
        """``rule``: the quadrature of the path integral (module docstring); ``chunk_size``: path points per
        model call (whole paths of several images when they fit); ``noise``: None, or SmoothGrad's/VarGrad's
        settings."""
        super().__init__(model, score)
        checked = check_params({"steps": steps, "rule": rule, "baseline": baseline}, method=self.name)
        self.steps = checked["steps"]
        self.rule = checked["rule"]
        self.baseline = checked["baseline"]
        self._init_noise(noise, chunk_size)
        self._gradients = PathGradients(model, score)

    @property
    def params(self) -> dict[str, Any]:
        return {**super().params, "steps": self.steps, "baseline": self.baseline, "rule": self.rule}

    def _integrated(self, inputs: np.ndarray, classes: np.ndarray, baselines: np.ndarray) -> np.ndarray:
        """IG (B, T, *spatial, C) of inputs from their baselines."""
        alphas, weights = quadrature(self.rule, self.steps)
        integral = self._gradients.integral(inputs, baselines, classes, alphas, weights, self.chunk_size)
        return (inputs - baselines)[:, None] * integral

    def attributions(self, inputs: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """IG (B, T, *spatial, C) per input value (with ``noise``: its statistic over the noisy copies)."""
        inputs = np.asarray(inputs, np.float32)
        baselines = np.ascontiguousarray(np.broadcast_to(baseline_for(inputs, self.baseline), inputs.shape))
        return self.smoothed(self._integrated, inputs, classes, baselines)

    def raw_maps(self, inputs: np.ndarray, classes: np.ndarray) -> np.ndarray:
        return self.attributions(inputs, classes).sum(axis=-1)
