"""What every XAI method shares: the model, the score, the recorded parameters, the batch checks, normalization."""

from __future__ import annotations

import inspect
import warnings
from abc import ABCMeta, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from xaipipe.maps import SIGNED, normalize_maps, one_blas_thread, resize_linear
from xaipipe.methods import (
    DEFAULT_PRECISION,
    DEFAULT_SCORE,
    NORMALIZE,
    PRECISION,
    RENAMED,
    noise_settings,
    renamed_message,
)
from xaipipe.methods.noise import NoiseTunnel
from xaipipe.methods.params import check_params, combination_problem

if TYPE_CHECKING:
    import keras


class _MethodType(ABCMeta):
    """Lets every method's constructor take ``normalize`` and ``precision`` (the base class's parameters)
    without naming them: they are taken out of the keywords; with a precision other than float32 the
    method is made for a copy of the model in that precision (:func:`xaipipe.model.in_precision`);
    then its normalization and precision are set."""

    def __call__(cls, *args: Any, normalize: str | None = None, precision: str | None = None, **kwargs: Any) -> Any:
        try:
            precision = check_params({PRECISION: precision or DEFAULT_PRECISION})[PRECISION]
        except ValueError as error:
            raise ValueError(f"{cls.__name__}: {error}") from None
        source = args[0] if args else kwargs.get("model")
        if precision != DEFAULT_PRECISION:
            from xaipipe.model import in_precision

            if args:
                args = (in_precision(args[0], precision), *args[1:])
            elif "model" in kwargs:
                kwargs["model"] = in_precision(kwargs["model"], precision)
        method = super().__call__(*args, **kwargs)
        #: the model the method was made for (``model`` may be its copy in a reduced precision, whose weights are
        #: those of that moment: make the method again after the weights change)
        method.source_model = source
        method._set_normalize(normalize)
        method.precision = precision
        problem = combination_problem(method.params)
        if problem is not None:
            raise ValueError(f"{cls.__name__}: {problem}")
        return method


class Method(metaclass=_MethodType):
    """An XAI method bound to one model.

    The base class owns what every method shares:

    - the model and the shape of its input (``input_shape``, ``spatial_shape``);
    - the class ``score`` that is explained, checked when the method is made;
    - ``params``, the parameters that determine the maps (recorded with every
      output): ``score`` and ``normalize`` here, each subclass adds its own;
    - ``normalize``: how :meth:`explain` scales the raw maps (:func:`xaipipe.maps.normalize_maps`):
      a keyword of every method's constructor (``Saliency(model, normalize="signed")``), by
      default the method's registry entry's (``xaipipe.methods.normalization``; ``minmax`` for
      a method outside the registry), checked like every parameter (``params.KINDS``);
    - ``precision`` (``float32``, ``bfloat16`` or ``float16``): with a reduced precision the
      method is made for a copy of the model under Keras's mixed-precision policy (variables
      in float32, the convolutions and dense layers computing in the reduced type, the classifier
      head and every other layer in float32: :func:`xaipipe.model.in_precision`); the
      reductions that make the maps (CAM weights, path sums) run in float32 as for every
      model, and the maps come back in float32;
    - the refusal of renamed parameters (``batch_size`` is now ``chunk_size``),
      with a ValueError naming the new name;
    - :meth:`explain`: the check that ``classes`` is (batch, targets) for a batch of
      ``inputs``, then :meth:`raw_maps` and their normalization;
    - the ``noise`` option (SmoothGrad, SmoothGrad-squared, VarGrad, see
      :mod:`xaipipe.methods.noise`) of the methods that take it: their constructor
      calls :meth:`_init_noise`, and their :meth:`raw_maps` passes their compiled
      attribution through :meth:`smoothed`.

    Subclasses implement :meth:`raw_maps`, the method's own computation for a batch;
    the CAM methods also take ``layer`` and report it as :attr:`target_layer`.
    Choosing the target classes (:func:`target_classes`) and splitting a shard into
    batches happen outside, in the caller.
    """

    name: ClassVar[str]
    #: The precision the model and the method run in (``precision``); the maps are float32 whatever it is.
    precision: str = DEFAULT_PRECISION
    #: The settings of the ``noise`` option (all keys filled in), or None: off or not taken.
    noise: dict[str, Any] | None = None
    _takes_noise = False

    def __new__(cls, *args: Any, **kwargs: Any) -> Method:
        # before __init__, which would refuse an old name with a bare TypeError
        accepted = inspect.signature(cls.__init__).parameters
        for old, new in RENAMED.items():
            if old in kwargs and old not in accepted and new in accepted:
                raise ValueError(f"{cls.__name__}: {renamed_message(old, new)}")
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
        unknown = [name for name in kwargs if name not in accepted]
        if unknown and not takes_any:  # a misspelt parameter, which __init__ would refuse with a bare TypeError
            names = [name for name in accepted if name not in ("self", "model")]
            raise TypeError(f"{cls.__name__} takes no parameter {unknown[0]!r}; its parameters: {', '.join(names)}")
        return super().__new__(cls)

    def __init__(self, model: keras.Model, score: str = DEFAULT_SCORE):
        from xaipipe.autodiff import SCORES, score_source
        from xaipipe.model import check_supported

        if score not in SCORES:
            raise ValueError(f"{type(self).__name__}: score must be one of {SCORES}, got {score!r}")
        check_supported(model)
        self.model = model
        self.score = score
        self.input_shape = tuple(model.inputs[0].shape[1:])
        self.spatial_shape = self.input_shape[:-1]
        source = score_source(model, score)  # refuses a head whose logits cannot be found, before any map
        #: Which tensor is differentiated (recorded in every heatmaps file as ``score_tensor``).
        self.score_source = source.description
        #: The classes a target may name: 0 .. n_classes - 1 (two for a one-unit sigmoid model).
        self.n_classes = int(source.tensor.shape[-1])

    def _init_noise(self, noise: Mapping[str, Any] | None, chunk_size: int) -> None:
        """Check and keep the ``noise`` option and ``chunk_size`` (the noisy copies per model call)."""
        checked = check_params({"noise": noise, "chunk_size": chunk_size}, method=self.name)
        self._takes_noise = True
        self.noise = noise_settings(self.name, checked["noise"])
        self.chunk_size = checked["chunk_size"]
        self._tunnel = None if self.noise is None else NoiseTunnel(self.noise, self.input_shape, self.chunk_size)

    def smoothed(
        self, attribute: Callable[..., Any], inputs: np.ndarray, classes: np.ndarray, *per_input: np.ndarray
    ) -> np.ndarray:
        """``attribute(inputs, classes, *per_input)`` (B, T, ...), or with ``noise`` its statistic over the
        noisy copies of each input (:class:`~xaipipe.methods.noise.NoiseTunnel`)."""
        if self.noise is None:
            return attribute(inputs, classes, *per_input)
        return self._tunnel(attribute, inputs, classes, *per_input)

    def _set_normalize(self, normalize: str | None) -> None:
        from xaipipe.methods import canonical_names, normalization

        if normalize is None:
            name = getattr(self, "name", None)
            normalize = normalization(name) if name in canonical_names() else "minmax"
        try:
            self.normalize = check_params({NORMALIZE: normalize})[NORMALIZE]
        except ValueError as error:
            raise ValueError(f"{type(self).__name__}: {error}") from None

    @property
    def signed(self) -> bool:
        """Whether the normalized maps keep their sign (values in [-1, 1])."""
        return self.normalize == SIGNED

    @property
    def params(self) -> dict[str, Any]:
        """The parameters that determine the maps (recorded with every output)."""
        params = {"score": self.score, NORMALIZE: self.normalize, PRECISION: self.precision}
        if self._takes_noise:
            params["noise"] = None if self.noise is None else dict(self.noise)
        return params

    @property
    def target_layer(self) -> str | None:
        return None

    @abstractmethod
    def raw_maps(self, inputs: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """Maps (B, T, *spatial) at the input resolution for inputs (B, ...) and classes (B, T)."""

    def explain(
        self, inputs: np.ndarray, classes: np.ndarray, ids: Sequence[str] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(raw, normalized) maps, each (B, T, *spatial), for inputs (B, ...) and classes (B, T);
        normalized as ``normalize`` says (in [0, 1], or [-1, 1] where ``signed``).

        The inputs must be a batch of the model's input shape, of finite values, and every class an integer in
        0 .. n_classes - 1; otherwise a ValueError names the sample (its id from ``ids``, else its row in the batch).
        """
        raw = self.explain_raw(inputs, classes, ids)
        normalized = normalize_maps(raw.reshape(-1, *self.spatial_shape), self.normalize).reshape(raw.shape)
        return raw, normalized

    def explain_raw(self, inputs: np.ndarray, classes: np.ndarray, ids: Sequence[str] | None = None) -> np.ndarray:
        """The raw maps of :meth:`explain`, with its checks, without the normalized ones: for a caller that keeps
        the raw maps and their normalization's two numbers (a heatmaps file), not maps scaled at full size."""
        inputs = check_inputs(inputs, self.input_shape, ids)
        classes = check_classes(classes, len(inputs), self.n_classes, ids)
        raw = self.raw_maps(inputs, classes)
        if computes_in_float16(self.model) and raw.size:
            _warn_blank_in_float16(self.name, raw, ids)
        return raw


def computes_in_float16(model: keras.Model) -> bool:
    """Whether any layer of ``model`` (nested ones included) computes in float16 (``precision: float16``'s copy, a
    model built under ``mixed_float16``), where gradients below about 6e-8 vanish. Known once per model."""
    known = getattr(model, "_xaipipe_float16", None)
    if known is None:
        known = any(getattr(getattr(layer, "dtype_policy", None), "compute_dtype", None) == "float16"
                    for layer in _all_layers(model))  # fmt: skip
        try:
            model._xaipipe_float16 = known
        except AttributeError:  # a model that takes no attribute: asked again next time
            pass
    return known


def _all_layers(model: Any) -> list[Any]:
    """The layers of ``model`` and of the models nested in it."""
    found = []
    for layer in getattr(model, "layers", None) or []:
        found.append(layer)
        if getattr(layer, "layers", None):
            found.extend(_all_layers(layer))
    return found


def _warn_blank_in_float16(method: str, raw: np.ndarray, ids: Sequence[str] | None) -> None:
    """Warn where maps of a model that computes in float16 are all zero: its gradients (and score differences)
    underflow where the scores move little with the input, and the maps came back blank without a word."""
    blank = ~np.any(raw.reshape(raw.shape[0] * raw.shape[1], -1), axis=1)
    if not blank.any():
        return
    first = int(np.flatnonzero(blank)[0]) // raw.shape[1]
    warnings.warn(
        f"{method}: {int(blank.sum())} of {blank.size} maps are all zero (the first of sample "
        f"{_sample_name(first, ids)}), and the model computes in float16, whose gradients vanish below about 6e-8 "
        "where the scores move little with the input; compute in bfloat16 (precision: bfloat16, float32's exponent) "
        "or float32 (for a model built under mixed_float16, rebuild it under the float32 policy)",
        stacklevel=3,
    )


def _sample_name(row: int, ids: Sequence[str] | None) -> str:
    return repr(str(ids[row])) if ids is not None else f"#{row}"


def check_inputs(inputs: Any, input_shape: tuple[int, ...], ids: Sequence[str] | None = None) -> np.ndarray:
    """``inputs`` as an array when they are a batch (B, *input_shape) of finite numbers; a ValueError otherwise,
    naming the first sample with NaN or infinite values: a model's ReLUs can turn NaN into zeros, and
    its maps would then look like any other's (TensorFlow's compiled ReLU does)."""
    inputs = np.asarray(inputs)
    if inputs.shape[1:] != tuple(input_shape):
        expected = ", ".join(str(n) for n in input_shape)
        hint = "; one sample without its batch axis: pass inputs[None]" if inputs.shape == tuple(input_shape) else ""
        raise ValueError(
            f"inputs must be a batch (batch, {expected}) for the model's input, got shape {inputs.shape}{hint}"
        )
    if inputs.dtype == bool or not np.issubdtype(inputs.dtype, np.number):
        raise ValueError(f"inputs must be numbers, got dtype {inputs.dtype}")
    if inputs.dtype.kind in "fc" and inputs.size:
        flat = inputs.reshape(len(inputs), -1)
        with one_blas_thread():  # 0 * v is NaN for NaN and infinite v only: one pass, and no sum to overflow
            finite = np.isfinite(flat @ np.zeros(flat.shape[1], flat.dtype))
        if not finite.all():
            row = int(np.flatnonzero(~finite)[0])
            raise ValueError(
                f"sample {_sample_name(row, ids)}: its input holds NaN or infinite values; check the image file "
                "and its preprocessing"
            )
    return inputs


def check_classes(classes: Any, n_inputs: int, n_classes: int, ids: Sequence[str] | None = None) -> np.ndarray:
    """``classes`` (B, T) as int32 when each is an integer in 0 .. n_classes - 1, for ``n_inputs`` inputs;
    a ValueError naming the first sample at fault otherwise (negative indices would wrap around)."""
    classes = np.asarray(classes)
    if classes.ndim != 2 or len(classes) != n_inputs:
        hint = "; one class per input is classes[:, None]" if classes.ndim == 1 and len(classes) == n_inputs else ""
        raise ValueError(f"classes must be (batch, targets), got {classes.shape} for {n_inputs} inputs{hint}")
    if classes.dtype == bool or not np.issubdtype(classes.dtype, np.number):
        raise ValueError(f"classes must be integer class indices, got dtype {classes.dtype}")
    whole = np.isfinite(classes) & (classes == np.round(classes)) if classes.dtype.kind == "f" else classes == classes
    bad = ~whole | (classes < 0) | (classes >= n_classes)
    if bad.any():
        row, column = np.argwhere(bad)[0]
        raise ValueError(
            f"sample {_sample_name(int(row), ids)}: class {classes[row, column].item()!r} is not one of the model's "
            f"{n_classes} classes (integers 0..{n_classes - 1})"
        )
    return classes.astype(np.int32)


def upsample_to_input(maps: np.ndarray, spatial_shape: tuple[int, ...]) -> np.ndarray:
    """Resize (B, T, *s) maps to (B, T, *spatial_shape)."""
    batch, targets = maps.shape[:2]
    resized = resize_linear(maps.reshape(batch * targets, *maps.shape[2:]), spatial_shape)
    return resized.reshape(batch, targets, *spatial_shape)


def repeat_classes(classes: np.ndarray, repeats: int) -> np.ndarray:
    """Classes (B, T) -> (B * repeats, T): each image's targets for each of its perturbations."""
    return np.repeat(np.asarray(classes, np.int32), repeats, axis=0)


def pick_scores(scores: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """The scores (N, T) of classes (N, T) from all scores (N, K)."""
    return np.take_along_axis(scores, np.asarray(classes, np.intp), axis=1)


def target_classes(
    scores: np.ndarray, mode: str, labels: np.ndarray | None = None, ids: Sequence[str] | None = None
) -> np.ndarray:
    """The classes (N, T) to explain: ``argmax`` of the scores (T=1), ``all`` classes (T=K),
    or each sample's ``label`` (T=1; -1 marks a missing label, an error naming the sample)."""
    n, k = scores.shape
    finite = np.isfinite(scores).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise ValueError(
            f"sample {_sample_name(row, ids)}: its predictions are not finite ({scores[row].tolist()}); "
            "check its input (NaN or inf values) and the model"
        )
    if mode == "argmax":
        return scores.argmax(axis=1).astype(np.int32)[:, None]
    if mode == "all":
        return np.tile(np.arange(k, dtype=np.int32), (n, 1))
    if mode == "label":
        if labels is None:
            raise ValueError("targets 'label' needs labels")
        labels = np.asarray(labels, np.int32)
        bad = np.flatnonzero((labels < 0) | (labels >= k))
        if len(bad):
            name = ids[bad[0]] if ids is not None else f"#{bad[0]}"
            raise ValueError(f"sample {name!r} has no label among the model's {k} classes (label {labels[bad[0]]})")
        return labels[:, None]
    raise ValueError(f"targets must be 'argmax', 'all' or 'label', got {mode!r}")
