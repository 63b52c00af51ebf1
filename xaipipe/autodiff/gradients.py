"""Gradients of class scores at a layer or the input, one forward pass per batch: :class:`ScoreGradients`
(plain or guided) and :class:`GuidedCAMGradients` (Guided Grad-CAM's two backward passes)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np

from xaipipe.autodiff._compiled import CompiledGraph, in_float32
from xaipipe.autodiff._graph import Forward, GuidedSwitch, warn_without_relu
from xaipipe.layers import layer_path


class ScoreGradients(CompiledGraph):
    """Activations of a layer and the gradients of chosen class scores with respect to them.

    With ``layer=None`` the gradients are taken with respect to the input. The
    layer may sit inside a nested sub-model (give the layer or its path of layers).
    ``guided=True`` gives guided-backpropagation gradients (Springenberg et al.
    2014): at every ReLU only positive gradients flow back, and only where the
    ReLU's input was positive. One forward pass serves all requested classes of
    a batch; the computation is compiled once per number of targets.

    ``reduce(source, gradients)``, written with ``keras.ops``, is compiled into the
    same function: a method's maps are then computed where the gradients are, and
    only the maps come back (not the activations and gradients).
    """

    def __init__(
        self,
        model: keras.Model,
        layer: keras.layers.Layer | Sequence[keras.layers.Layer] | None = None,
        score: str = "logits",
        guided: bool = False,
        reduce: Callable[[Any, Any], Any] | None = None,
    ):
        super().__init__(model, score)
        target: tuple[keras.layers.Layer, ...]
        if layer is None:
            target = ()
        elif isinstance(layer, keras.layers.Layer):
            path = layer_path(model, layer)
            if path is None:
                raise ValueError(f"layer {layer.name!r} is not part of model {model.name!r}")
            target = path
        else:
            target = tuple(layer)
        target = self.score_source.graph_path(target)
        self._reduce = in_float32(reduce)
        if guided:
            warn_without_relu(self._graph, model.name)
        gate = self._backend.make_guided_gate(GuidedSwitch()) if guided else None
        self._forward = Forward(self._graph, target, gate)

    def _compile(self, n_targets: int) -> Callable[..., Any]:
        return self._backend.gradient_function(self._forward, n_targets, self._reduce, self._input_shape)

    def __call__(self, inputs: np.ndarray, classes: np.ndarray) -> Any:
        """For inputs (B, ...) and classes (B, T): activations (B, ...), gradients (B, T, ...), scores (B, K);
        with ``reduce``, what it returns instead."""
        classes = np.asarray(classes, dtype=np.int32)
        if classes.ndim != 2 or len(classes) != len(inputs):
            raise ValueError(f"classes must be (batch, targets), got {classes.shape} for {len(inputs)} inputs")
        result = self._function(classes.shape[1])(inputs, classes)
        if self._reduce is None:  # activations, gradients and scores: float32 whatever the model's dtype
            return tuple(np.asarray(r, np.float32) for r in result)
        return result


class GuidedCAMGradients(CompiledGraph):
    """Grad-CAM's gradients at a layer and guided backpropagation's at the input, from one forward pass.

    ``reduce(activations, layer_gradients, inputs, input_gradients)``, written with
    ``keras.ops``, is compiled with them (layer gradients (B, T, ...) plain, input
    gradients (B, T, ...) guided, see :class:`ScoreGradients`). The forward pass
    runs once with guided gates that a :class:`GuidedSwitch` turns off for the
    plain backward pass, which stops at the layer, and on for the guided one, so
    the pair costs about one forward and one backward pass instead of two of each.
    With ``guided=False`` there are no gates: both gradients are plain (a CAM method's
    and saliency's from one pass, :class:`~xaipipe.methods.camfamily.CAMFamily`).
    """

    def __init__(
        self,
        model: keras.Model,
        layer: Sequence[keras.layers.Layer],
        score: str,
        reduce: Callable[[Any, Any, Any, Any], Any],
        guided: bool = True,
    ):
        super().__init__(model, score)
        self._reduce = in_float32(reduce)
        self._switch = GuidedSwitch()
        target = self.score_source.graph_path(tuple(layer))
        if guided:
            warn_without_relu(self._graph, model.name)
        gate = self._backend.make_guided_gate(self._switch) if guided else None
        self._forward = Forward(self._graph, target, gate)

    def _compile(self, n_targets: int) -> Callable[..., Any]:
        return self._backend.guided_cam_function(
            self._forward, self._switch, n_targets, self._reduce, self._input_shape
        )

    def __call__(self, inputs: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """What ``reduce`` returns for inputs (B, ...) and classes (B, T)."""
        classes = np.asarray(classes, dtype=np.int32)
        return self._function(classes.shape[1])(inputs, classes)
