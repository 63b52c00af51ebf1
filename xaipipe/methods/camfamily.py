"""Several CAM methods' maps from one forward and backward pass: :class:`CAMFamily`.

Grad-CAM, Grad-CAM++, HiResCAM, XGradCAM and LayerCAM (:class:`~xaipipe.methods.cam.CAMMethod`
with gradients) all read the same two tensors, the target layer's activations A and the
gradients g^c = dS^c/dA of the class score S^c. Each method's maps are ``layer_maps(A, g)``
upsampled to the input; a family compiles one :class:`~xaipipe.autodiff.ScoreGradients` whose
``reduce`` returns every member's ``layer_maps`` stacked, and upsamples them all in one call on
the host, so asking for the five methods costs one forward pass and one backward pass to the
layer, plus five cheap reductions and upsamplings, instead of five passes.

Members qualify when they share the model (the same object: with a reduced precision,
the same copy, see :func:`create_family`), the target layer, the score and the precision,
and take no ``noise`` (a noisy member's statistic needs its own copies). Anything else is
refused with a ValueError naming the member and what differs. Each member keeps its own
``normalize``: :meth:`CAMFamily.explain` gives, per member, exactly what that member's
own :meth:`~xaipipe.methods.base.Method.explain` gives, within float tolerance.

Saliency and Input x Gradient (plain, without ``noise``) may join a family too: their maps come
from the gradients at the input, which the same backward pass reaches after the layer's. A family
with such members compiles one :class:`~xaipipe.autodiff.GuidedCAMGradients` without guided
gates: one forward pass, the backward pass of the layer's gradients (through the head alone) and
that of the input's, where each method alone would run its own forward pass (on ResNet50 the
forward pass is about half of saliency's time).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from xaipipe.autodiff import GuidedCAMGradients, ScoreGradients
from xaipipe.maps import normalize_maps
from xaipipe.methods.base import Method, check_classes, check_inputs, upsample_to_input
from xaipipe.methods.cam import CAMMethod
from xaipipe.methods.saliency import SaliencyMap


def _reads_input_gradients(member: Method) -> bool:
    """Whether ``member``'s maps are a function of the input and its plain gradients (saliency, Input x Gradient)."""
    return isinstance(member, SaliencyMap) and not member.guided


def _difference(first: CAMMethod, other: Method) -> str | None:
    """What keeps ``other`` from sharing ``first``'s pass, or None."""
    cam = not _reads_input_gradients(other)  # else its maps come from the input's gradients: any layer will do
    if cam and (not isinstance(other, CAMMethod) or not other.uses_gradients):
        return (f"{type(other).__name__} computes its maps neither from the layer's activations and gradients "
                "nor from the input's plain gradients")  # fmt: skip
    if cam and any(getattr(type(other), name) is not getattr(CAMMethod, name)
                   for name in ("layer_maps", "cam_maps", "upsample", "raw_maps", "_input_maps")):  # fmt: skip
        return f"{type(other).__name__} computes its maps otherwise than ReLU(combine(A, g)), upsampled"
    if other.noise is not None:
        return "it takes 'noise' (its maps are a statistic over noisy copies, each with its own pass)"
    if other.precision != first.precision:
        return f"its precision {other.precision!r} is not the first member's {first.precision!r}"
    if other.model is not first.model:
        return "its model is another object than the first member's (build the members with create_family)"
    if cam and (
        len(other.layer_path) != len(first.layer_path)
        or any(a is not b for a, b in zip(other.layer_path, first.layer_path, strict=True))
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

    def __init__(self, members: Sequence[Method]):
        members = tuple(members)
        first = next((m for m in members if isinstance(m, CAMMethod)), None)
        if first is None:
            raise ValueError("CAMFamily needs at least one CAM method among its members (it shares a CAM's pass)")
        for index, member in enumerate(members):
            reason = _difference(first, member)
            if reason is not None:
                name = getattr(member, "name", type(member).__name__)
                raise ValueError(
                    f"CAMFamily: member {index} ({name}) cannot share one pass with {first.name}: {reason}"
                )
        self.members = members
        self.model = first.model
        self.input_shape = first.input_shape
        self.spatial_shape = first.spatial_shape
        self.n_classes = first.n_classes
        self._cams = [m for m in members if not _reads_input_gradients(m)]
        self._upsample = first.upsample
        if len(self._cams) == len(members):
            self._gradients = ScoreGradients(first.model, first.layer_path, first.score, reduce=self._layer_maps)
        else:  # one forward pass, the layer's gradients and the input's
            self._gradients = GuidedCAMGradients(
                first.model, first.layer_path, first.score, reduce=self._stacked_maps, guided=False
            )

    def _layer_maps(self, activations: Any, gradients: Any) -> Any:
        """Every member's ReLU(combine(A, g)) (M, B, T, *s) at the layer's resolution, compiled with the gradients
        (:meth:`CAMMethod.layer_maps`, one member at a time); :meth:`raw_maps` upsamples them on the host, as each
        member alone does."""
        from keras import ops

        return ops.stack([member.layer_maps(activations, gradients) for member in self._cams], axis=0)

    def _stacked_maps(self, activations: Any, gradients: Any, inputs: Any, input_gradients: Any) -> Any:
        """Every member's maps (M, B, T, *spatial) where input-gradient members join, compiled with the gradients:
        each CAM member's :meth:`CAMMethod.layer_maps`, all upsampled in one call (the upsampling is linear and the
        same for every member: :meth:`CAMMethod.cam_maps`, one member at a time); each input-gradient member's map of
        ``inputs`` and ``input_gradients`` (``SaliencyMap._map``)."""
        from keras import ops

        cams = ops.stack([member.layer_maps(activations, gradients) for member in self._cams], axis=1)
        batch, n_cams, n_targets = -1, len(self._cams), int(cams.shape[2])
        upsampled = self._upsample(ops.reshape(cams, (batch, n_cams * n_targets, *cams.shape[3:])))
        cam_maps = iter(ops.unstack(ops.reshape(upsampled, (batch, n_cams, n_targets, *self.spatial_shape)), axis=1))
        maps = [member._map(inputs, input_gradients) if _reads_input_gradients(member) else next(cam_maps)
                for member in self.members]  # fmt: skip
        return ops.stack(maps, axis=0)

    def raw_maps(self, inputs: np.ndarray, classes: np.ndarray) -> list[np.ndarray]:
        """Each member's raw maps (B, T, *spatial) for inputs (B, ...) and classes (B, T), in the members' order."""
        stacked = np.asarray(self._gradients(inputs, classes), np.float32)  # (M, B, T, ...)
        if len(self._cams) == len(self.members):  # at the layer's resolution
            n_members, batch = stacked.shape[:2]
            flat = upsample_to_input(stacked.reshape(n_members * batch, *stacked.shape[2:]), self.spatial_shape)
            stacked = flat.reshape(n_members, batch, *flat.shape[1:])
        return list(stacked)  # each member's maps contiguous

    def explain(
        self, inputs: np.ndarray, classes: np.ndarray, ids: Sequence[str] | None = None
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each member's (raw, normalized) maps (B, T, *spatial), as its own ``explain`` gives them."""
        results = []
        for member, raw in zip(self.members, self.explain_raw(inputs, classes, ids), strict=True):
            flat = raw.reshape(-1, *self.spatial_shape)
            results.append((raw, normalize_maps(flat, member.normalize).reshape(raw.shape)))
        return results

    def explain_raw(
        self, inputs: np.ndarray, classes: np.ndarray, ids: Sequence[str] | None = None
    ) -> list[np.ndarray]:
        """Each member's raw maps (B, T, *spatial), as its own ``explain_raw`` gives them."""
        inputs = check_inputs(inputs, self.input_shape, ids)
        classes = check_classes(classes, len(inputs), self.n_classes, ids)
        return self.raw_maps(inputs, classes)


def create_family(model: Any, variants: Sequence[tuple[str, Mapping[str, Any]]]) -> tuple[list[Method], CAMFamily]:
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
        member.source_model = model
        members.append(member)
    return members, CAMFamily(members)
