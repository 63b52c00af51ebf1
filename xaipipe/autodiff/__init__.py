"""Batched gradients of class scores, compiled once per model, on Keras 3's TensorFlow, JAX or PyTorch backend.

This is the only package that differentiates; every gradient-based method
calls it. Whatever can be computed where the model runs (a method's maps from
its gradients, perturbed copies, path points) is compiled with it, so that only
inputs go to the model and only maps come back. Where each piece lives:

- :mod:`~xaipipe.autodiff.gradients`: :class:`ScoreGradients` (a layer's or the
  input's gradients, plain or guided) and :class:`GuidedCAMGradients` (Guided
  Grad-CAM's two backward passes from one forward pass);
- :mod:`~xaipipe.autodiff.paths`: :class:`PathGradients` (integrated gradients);
- :mod:`~xaipipe.autodiff.scores`: the forward passes, :class:`Scores`,
  :class:`PerturbedScores` for the perturbation methods, and :class:`LayerActivations`
  (a layer's activations without gradients: Eigen-CAM, Score-CAM);
- ``_compiled``: their base class (the scores graph, the backend, the functions
  compiled per number of targets, padding to fixed shapes);
- ``_graph``: what does not depend on the backend, the class scores
  (:func:`score_source`: the logits found behind every form of final softmax or
  sigmoid, the two classes of a one-unit sigmoid model, float32) and the replay of the model's graph with its hooks
  (read or shift a layer's output, gate the ReLUs for guided backpropagation);
- ``_backend``: the interface every backend module provides, and
  :func:`backend_module`, which picks the one Keras runs on
  (``keras.backend.backend()``, chosen with ``KERAS_BACKEND``; TensorFlow by
  default); ``_tensorflow``, ``_jax`` and ``_torch`` hold only what differs: how
  a function is compiled, how the gradient is taken, the guided gate, and the
  conversion from and to numpy.

The same ``.keras`` file therefore gives the same maps on every backend.
"""

from xaipipe.autodiff._backend import backend_module
from xaipipe.autodiff._graph import (
    SCORES,
    ScoreSource,
    log_probabilities,
    multi_label,
    one_unit_sigmoid,
    score_source,
    score_tensor,
    two_class_probabilities,
)
from xaipipe.autodiff.gradients import GuidedCAMGradients, ScoreGradients
from xaipipe.autodiff.paths import PathGradients
from xaipipe.autodiff.scores import LayerActivations, PerturbedScores, Scores

__all__ = [
    "SCORES",
    "GuidedCAMGradients",
    "LayerActivations",
    "PathGradients",
    "PerturbedScores",
    "ScoreGradients",
    "ScoreSource",
    "log_probabilities",
    "multi_label",
    "Scores",
    "backend_module",
    "one_unit_sigmoid",
    "score_source",
    "score_tensor",
    "two_class_probabilities",
]
