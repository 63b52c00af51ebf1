"""The base of every compiled function in this package: the scores graph, the backend, the compile cache, fixed shapes.

:class:`CompiledGraph` owns what :class:`~xaipipe.autodiff.ScoreGradients`,
:class:`~xaipipe.autodiff.GuidedCAMGradients`, :class:`~xaipipe.autodiff.PathGradients`,
:class:`~xaipipe.autodiff.Scores`, :class:`~xaipipe.autodiff.PerturbedScores` and
:class:`~xaipipe.autodiff.LayerActivations` share: the graph of the model's class scores (a new ``keras.Model`` over the
user's layers, which stay untouched), the backend module, the functions compiled
per number of target classes, and the chunking of a call into one compiled shape
where the backend compiles per shape (:func:`pad_rows`, ``FIXED_SHAPES``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import keras
import numpy as np

from xaipipe.autodiff._backend import backend_module
from xaipipe.autodiff._graph import score_source


def pad_rows(array: np.ndarray, size: int) -> np.ndarray:
    """``array`` with its first row repeated up to ``size`` rows (for a backend that compiles per shape)."""
    missing = size - len(array)
    return array if missing <= 0 else np.concatenate([array, np.repeat(array[:1], missing, axis=0)])


def in_float32(reduce: Callable[..., Any] | None) -> Callable[..., Any] | None:
    """``reduce`` called with its tensors cast to float32, inside the compiled function.

    A float16 or mixed-precision model's activations and gradients would otherwise
    enter a method's formula in float16, where Grad-CAM++'s g^2 and g^3 underflow;
    every map is computed and returned in float32 whatever the model's dtype.
    """
    if reduce is None:
        return None

    def reduce_in_float32(*tensors: Any) -> Any:
        from keras import ops

        return reduce(*(ops.cast(tensor, "float32") for tensor in tensors))

    return reduce_in_float32


class CompiledGraph:
    """The class scores of ``model`` (``score``: ``logits`` or ``probabilities``) as a graph to compile on the backend.

    Subclasses that compile one function per number of targets T (the classes
    explained per input) implement :meth:`_compile` and call :meth:`_function`.
    """

    def __init__(self, model: keras.Model, score: str):
        self.score_source = score_source(model, score)
        self._graph = keras.Model(model.inputs, self.score_source.tensor)
        self._input_shape = tuple(model.inputs[0].shape[1:])
        self._backend = backend_module()
        self._compiled: dict[int, Callable[..., Any]] = {}

    def _compile(self, n_targets: int) -> Callable[..., Any]:
        """The backend's function for ``n_targets`` classes per input."""
        raise NotImplementedError(f"{type(self).__name__} compiles no function per number of targets")

    def _function(self, n_targets: int) -> Callable[..., Any]:
        """The function for ``n_targets`` classes per input, compiled on its first use."""
        if n_targets not in self._compiled:
            self._compiled[n_targets] = self._compile(n_targets)
        return self._compiled[n_targets]

    def _chunks(self, n_rows: int, size: int) -> Iterator[tuple[np.ndarray, int]]:
        """(row indices, how many of them are real) for consecutive chunks of ``size`` of ``n_rows`` rows.

        Where the backend compiles per shape and there is more than one chunk, the
        last chunk is padded to ``size`` rows by repeating its first row, so that
        one compiled shape serves every call; the padded rows' results are dropped.
        """
        pad = self._backend.FIXED_SHAPES and n_rows > size
        for first in range(0, n_rows, size):
            rows = np.arange(first, min(first + size, n_rows))
            yield (pad_rows(rows, size) if pad else rows), len(rows)
