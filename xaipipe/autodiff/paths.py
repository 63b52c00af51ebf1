"""Input gradients along straight paths from baselines to inputs, the points made where the model runs:
:class:`PathGradients` (integrated gradients, Sundararajan et al. 2017)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from xaipipe.autodiff._compiled import CompiledGraph, in_float32
from xaipipe.autodiff._graph import Forward


class PathGradients(CompiledGraph):
    """Weighted sums of input gradients along straight paths from baselines to inputs (integrated gradients).

    The points baseline + alpha * (input - baseline) are made where the model runs,
    from the inputs, their baselines and the alphas, and their gradients, each times
    its alpha's weight, are summed there per image: only the inputs go to the model
    and one sum per image comes back. The alphas and weights are a quadrature rule's.
    """

    def __init__(self, model: keras.Model, score: str = "logits"):
        super().__init__(model, score)
        self._forward = Forward(self._graph, (), None)

    def _compile(self, n_targets: int) -> Callable[..., Any]:
        return self._backend.prepared_gradient_function(
            self._forward, n_targets, self._points, in_float32(self._sum_per_image)
        )

    def _points(self, inputs: Any, baselines: Any, alphas: Any, weights: Any) -> Any:
        """(k * m, ...) points, image-major, for k inputs and baselines and m alphas."""
        from keras import ops

        alphas = ops.reshape(alphas, (1, -1) + (1,) * len(self._input_shape))
        points = ops.expand_dims(baselines, 1) + alphas * ops.expand_dims(inputs - baselines, 1)
        return ops.reshape(points, (-1, *self._input_shape))

    @staticmethod
    def _sum_per_image(points: Any, gradients: Any, inputs: Any, baselines: Any, alphas: Any, weights: Any) -> Any:
        """Gradients (k * m, T, ...) times their alphas' weights (m,), summed over each image's m points: (k, T, ...)."""
        from keras import ops

        per_image = ops.reshape(gradients, (ops.shape(inputs)[0], -1, *gradients.shape[1:]))
        return ops.sum(per_image * ops.reshape(weights, (1, -1) + (1,) * (len(gradients.shape) - 1)), axis=1)

    def integral(
        self,
        inputs: np.ndarray,
        baselines: np.ndarray,
        classes: np.ndarray,
        alphas: np.ndarray,
        weights: np.ndarray,
        batch_size: int = 64,
    ) -> np.ndarray:
        """sum_k weights_k * dS/dx (baseline + alphas_k * (input - baseline)), (B, T, ...): the quadrature of
        the input gradients along each path, every target class of an input from the same points.

        Each model call takes about ``batch_size`` points: whole images' paths when
        they fit (``batch_size // len(alphas)`` images), else one image's path in parts.
        """
        inputs = np.asarray(inputs, np.float32)
        baselines = np.ascontiguousarray(np.broadcast_to(np.asarray(baselines, np.float32), inputs.shape))
        classes = np.asarray(classes, np.int32)
        alphas = np.asarray(alphas, np.float32)
        weights = np.asarray(weights, np.float32)
        if alphas.shape != weights.shape or alphas.ndim != 1:
            raise ValueError(f"alphas {alphas.shape} and weights {weights.shape} must be vectors of the same length")
        n_targets = classes.shape[1]
        compiled = self._function(n_targets)
        images_per_call = max(1, batch_size // len(alphas))
        steps_per_call = min(len(alphas), batch_size)
        total = np.zeros((len(inputs), n_targets, *inputs.shape[1:]), np.float32)
        for group, used in self._chunks(len(inputs), images_per_call):
            for step in range(0, len(alphas), steps_per_call):
                part = slice(step, step + steps_per_call)
                sums = compiled(
                    (inputs[group], baselines[group], alphas[part], weights[part]),
                    np.repeat(classes[group], len(alphas[part]), axis=0),
                )
                total[group[:used]] += sums[:used]
        return total
