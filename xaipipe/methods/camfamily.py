"""Several CAM methods' maps from one forward and backward pass: :class:`CAMFamily`.

Grad-CAM, Grad-CAM++, HiResCAM, XGradCAM and LayerCAM (:class:`~xaipipe.methods.cam.CAMMethod`
with gradients) all read the same two tensors, the target layer's activations A and the
gradients g^c = dS^c/dA of the class score S^c. Each method's maps are ``cam_maps(A, g)``;
a family compiles one :class:`~xaipipe.autodiff.ScoreGradients` whose ``reduce`` returns
every member's ``cam_maps`` stacked, so asking for the five methods costs one forward pass
and one backward pass to the layer, plus five cheap reductions, instead of five passes.

Members qualify when they share the model (the same object: with a reduced precision,
the same copy, see :func:`create_family`), the target layer, the score and the precision,
and take no ``noise`` (a noisy member's statistic needs its own copies). Anything else is
refused with a ValueError naming the member and what differs. Each member keeps its own
``normalize``: :meth:`CAMFamily.explain` gives, per member, exactly what that member's
own :meth:`~xaipipe.methods.base.Method.explain` gives, within float tolerance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from xaipipe.autodiff import ScoreGradients
from xaipipe.maps import normalize_maps
from xaipipe.methods.base import check_classes
from xaipipe.methods.cam import CAMMethod


def _difference(first: CAMMethod, other: CAMMethod) -> str | None:
    """What keeps ``other`` from sharing ``first``'s pass, or None."""
    if not isinstance(other, CAMMethod) or not other.uses_gradients:
        return f"{type(other).__name__} does not compute its maps from the layer's activations and gradients"
    if type(other).cam_maps is not CAMMethod.cam_maps or type(other).upsample is not CAMMethod.upsample:
        return f"{type(other).__name__} computes its maps otherwise than ReLU(combine(A, g)), upsampled"
    if other.noise is not None:
        return "it takes 'noise' (its maps are a statistic over noisy copies, each with its own pass)"
    if other.precision != first.precision:
        return f"its precision {other.precision!r} is not the first member's {first.precision!r}"
    if other.model is not first.model:
        return "its model is another object than the first member's (build the members with create_family)"
    if len(other.layer_path) != len(first.layer_path) or any(
        a is not b for a, b in zip(other.layer_path, first.layer_path, strict=True)
    ):
        return f"its target layer {other.target_layer!r} is not the first member's {first.target_layer!r}"
    if other.score != first.score:
        return f"its score {other.score!r} is not the first member's {first.score!r}"
    return None


class CAMFamily:
    """The maps of several CAM methods (``members``) from one forward and backward pass per batch.

    ``members``: method objects that qualify (see the module's docstring); a ValueError
    names the first that does not. :meth:`explain` returns one (raw, normalized) pair per
    member, in the members' order, each normalized as that member's ``normalize`` says.
    """

    def __init__(self, members: Sequence[CAMMethod]):
        members = tuple(members)
        if not members:
            raise ValueError("CAMFamily needs at least one member")
        first = members[0]
        for index, member in enumerate(members):
            reason = _difference(first, member)
            if reason is not None:
                name = getattr(member, "name", type(member).__name__)
                raise ValueError(
                    f"CAMFamily: member {index} ({name}) cannot share one pass with {first.name}: {reason}"
                )
        self.members = members
        self.model = first.model
        self.spatial_shape = first.spatial_shape
        self.n_classes = first.n_classes
        self._gradients = ScoreGradients(first.model, first.layer_path, first.score, reduce=self._stacked_maps)

    def _stacked_maps(self, activations: Any, gradients: Any) -> Any:
        """Every member's maps (B, M, T, *spatial), compiled with the gradients: each member's
        ReLU(combine(A, g)) at the layer's resolution, then all upsampled in one call (the
        upsampling is linear and the same for every member: ``CAMMethod.cam_maps``, one member at a time)."""
        from keras import ops

        cams = ops.stack([ops.relu(member.combine(activations, gradients)) for member in self.members], axis=1)
        batch, n_members, n_targets = -1, len(self.members), int(cams.shape[2])
        upsampled = self.members[0].upsample(ops.reshape(cams, (batch, n_members * n_targets, *cams.shape[3:])))
        return ops.reshape(upsampled, (batch, n_members, n_targets, *self.spatial_shape))

    def raw_maps(self, inputs: np.ndarray, classes: np.ndarray) -> list[np.ndarray]:
        """Each member's raw maps (B, T, *spatial) for inputs (B, ...) and classes (B, T), in the members' order."""
        stacked = np.asarray(self._gradients(inputs, classes), np.float32)
        return [stacked[:, m] for m in range(len(self.members))]

    def explain(
        self, inputs: np.ndarray, classes: np.ndarray, ids: Sequence[str] | None = None
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each member's (raw, normalized) maps (B, T, *spatial), as its own ``explain`` gives them."""
        classes = check_classes(classes, len(inputs), self.n_classes, ids)
        results = []
        for member, raw in zip(self.members, self.raw_maps(inputs, classes), strict=True):
            flat = raw.reshape(-1, *self.spatial_shape)
            results.append((raw, normalize_maps(flat, member.normalize).reshape(raw.shape)))
        return results


def create_family(model: Any, variants: Sequence[tuple[str, Mapping[str, Any]]]) -> tuple[list[CAMMethod], CAMFamily]:
    """The methods of ``variants`` ((method key, parameters) each) for ``model``, and their family.

    With a reduced ``precision`` the model is copied into it once (:func:`xaipipe.model.in_precision`)
    and every member is made for that copy, as each would make its own copy if built alone; the
    members are otherwise exactly what ``methods.create(key, model, **params)`` makes. A ValueError
    where they do not qualify (:class:`CAMFamily`).
    """
    from xaipipe import methods
    from xaipipe.model import in_precision

    copies: dict[str, Any] = {}
    members = []
    for key, params in variants:
        params = dict(params)
        precision = params.pop("precision", None) or methods.DEFAULT_PRECISION
        if precision not in copies:
            copies[precision] = in_precision(model, precision)
        member = methods.create(key, copies[precision], **params)  # built in float32 on the copy ...
        member.precision = precision  # ... which is what the method's constructor does with a precision
        members.append(member)
    return members, CAMFamily(members)
