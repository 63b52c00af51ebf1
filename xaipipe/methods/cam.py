"""The Grad-CAM family: a ReLU of a combination of a layer's activation maps, upsampled to the input."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import keras
import numpy as np

from xaipipe.autodiff import ScoreGradients
from xaipipe.layers import find_target_path, path_name
from xaipipe.maps import resize_linear_ops
from xaipipe.methods import defaults
from xaipipe.methods.base import Method, upsample_to_input

_DEFAULTS = defaults("gradcam")  # the layer and score defaults of every CAM method


class CAMMethod(Method):
    """Base of the CAM methods; a subclass states its channel weights, or how it combines activations and gradients.

    map_c = ReLU(combine(A, g^c)), upsampled (bi/trilinearly) to the input size (on the host),
    where A^k are the target layer's activation maps and g^c = dS^c/dA the gradients
    of the class score S^c. The default combination is the channel-weighted sum
    sum_k w_k^c A^k with the subclass's :meth:`channel_weights` (Grad-CAM, Grad-CAM++,
    XGradCAM); HiResCAM and LayerCAM override :meth:`combine` with element-wise
    products. A method that reads the layer without gradients (Score-CAM, Eigen-CAM)
    sets ``uses_gradients = False`` and computes its own maps (:meth:`upsample` serves it).
    The target layer may sit inside a nested sub-model (``layer="inner_model/conv"`` or ``layer="conv"``).
    With ``noise`` (the methods that use gradients) the statistic is taken of the maps
    (:mod:`xaipipe.methods.noise`), ``chunk_size`` noisy copies per model call.
    """

    #: Whether the maps come from the layer's gradients (then one forward and backward pass per batch).
    uses_gradients: ClassVar[bool] = True

    def __init__(
        self,
        model: keras.Model,
        layer: str | None = _DEFAULTS["layer"],
        score: str = _DEFAULTS["score"],
        noise: Mapping[str, Any] | None = _DEFAULTS["noise"],
        chunk_size: int = _DEFAULTS["chunk_size"],
    ):
        super().__init__(model, score)
        if self.uses_gradients:  # Score-CAM and Eigen-CAM take neither
            self._init_noise(noise, chunk_size)
        try:
            self.layer_path = find_target_path(model, layer)
        except ValueError as error:
            raise ValueError(
                f"{type(self).__name__} ({self.name}): parameter 'layer' ({layer!r}): {error}; a CAM method needs "
                "a layer with spatial activation maps (its output has the input's rank: (batch, *spatial, channels))"
            ) from None
        self.layer = self.layer_path[-1]
        if self.uses_gradients:
            self._gradients = ScoreGradients(model, self.layer_path, score, reduce=self.layer_maps)

    @property
    def target_layer(self) -> str:
        return path_name(self.layer_path)

    def channel_weights(self, activations: Any, gradients: Any) -> Any:
        """Weights (B, T, K) from activations (B, *s, K) and gradients (B, T, *s, K), in ``keras.ops``."""
        raise NotImplementedError(f"{type(self).__name__} states neither channel_weights nor combine")

    def combine(self, activations: Any, gradients: Any) -> Any:
        """Maps (B, T, *s) before the ReLU: sum_k w_k A^k with :meth:`channel_weights`, in ``keras.ops``."""
        from keras import ops

        weights = self.channel_weights(activations, gradients)
        axes = "dhw"[-(len(activations.shape) - 2) :]
        return ops.einsum(f"b{axes}k,btk->bt{axes}", activations, weights)

    def upsample(self, cams: Any) -> Any:
        """Maps (B, T, *s) resized (bi/trilinearly) to (B, T, *input spatial shape), in ``keras.ops``."""
        from keras import ops

        n_targets = int(cams.shape[1])
        resized = resize_linear_ops(ops.reshape(cams, (-1, *cams.shape[2:])), self.spatial_shape)
        return ops.reshape(resized, (-1, n_targets, *self.spatial_shape))

    def layer_maps(self, activations: Any, gradients: Any) -> Any:
        """ReLU(combine(A, g)) (B, T, *s) at the layer's resolution: compiled together with the gradients."""
        from keras import ops

        return ops.relu(self.combine(activations, gradients))

    def cam_maps(self, activations: Any, gradients: Any) -> Any:
        """:meth:`layer_maps` upsampled to the input, in ``keras.ops`` (for a method that combines them there)."""
        return self.upsample(self.layer_maps(activations, gradients))

    def _input_maps(self, inputs: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """The maps at the layer's resolution from the compiled pass, upsampled on the host (:func:`upsample_to_input`:
        on a 64^3 map 0.6x the time of the same products compiled in TensorFlow; and only the small maps come back
        from an accelerator)."""
        return upsample_to_input(np.asarray(self._gradients(inputs, classes), np.float32), self.spatial_shape)

    def raw_maps(self, inputs: np.ndarray, classes: np.ndarray) -> np.ndarray:
        return self.smoothed(self._input_maps, inputs, classes)
