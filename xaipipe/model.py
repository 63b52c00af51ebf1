"""Load Keras models and run them batch by batch."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import math
import os
import re
import sys
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


#: Within :func:`one_load_per_file`: (what was asked, the file's identity) -> the model or the sha256 made from it.
_SHARED: dict[tuple, object] | None = None


def _file_key(kind: str, path: str | os.PathLike) -> tuple:
    """``kind`` with the file's identity: its resolved path, size, modification time and inode, so that a file
    replaced or rewritten in between (even at the same path) is read again."""
    stat = os.stat(path)
    return kind, str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino


@contextlib.contextmanager
def one_load_per_file():
    """Within: :func:`load_model` and :func:`sha256_file` read each file once and return the same model or digest
    again, so that the stages of one job (predicting a shard, then explaining it) share one model load.

    The callers must not change the model they get (every stage that runs in such a job only reads it; the
    randomization test, which overwrites weights, loads its own copy outside). Afterwards nothing is kept: the
    models are released with the block, and nesting keeps the outer block's.
    """
    global _SHARED
    if _SHARED is not None:
        yield
        return
    _SHARED = {}
    try:
        yield
    finally:
        _SHARED = None


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    if _SHARED is not None:
        key = _file_key("sha256", path)
        if key not in _SHARED:
            _SHARED[key] = _sha256(path, chunk_size)
        return _SHARED[key]  # type: ignore[return-value]
    return _sha256(path, chunk_size)


def _sha256(path: str | os.PathLike, chunk_size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def set_threads(threads: int | None) -> None:
    """Limit TensorFlow's thread pools (a Snakemake job gets ``threads`` cores)."""
    if not threads:
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(min(threads, 2))
    except RuntimeError:  # already initialized in this process: keep its setting
        pass


#: Modules that TensorFlow and Keras import at their own import where they are installed, for features no job of
#: the workflow uses: scikit-learn for Keras's scikit-learn wrappers (0.8 s on this machine, with pandas), JAX for
#: TensorFlow Lite's converter (0.4 s; not where JAX is Keras's backend). Both libraries import them in a
#: ``try ... except ImportError``.
JOB_SKIPPED_IMPORTS = ("sklearn", "jax")


def start_model_job(threads: int | None, imports: Sequence[str] = ()) -> None:
    """Make a workflow job's process ready to run the model: import Keras and its backend without the optional
    modules of :data:`JOB_SKIPPED_IMPORTS` (their import fails meanwhile, as if they were not installed, which
    both libraries handle; afterwards they import as usual, for a model's own code that needs them), then
    :func:`set_threads` and :func:`import_model_modules` (config ``model.imports``). For job processes only: in a
    session of one's own, Keras's scikit-learn wrappers would stay unavailable."""
    skipped = [name for name in _skipped_imports() if name not in sys.modules]
    for name in skipped:
        sys.modules[name] = None  # type: ignore[assignment]  # what the import system reads as "not installed"
    try:
        importlib.import_module("keras")  # and its backend
    finally:
        for name in skipped:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
    set_threads(threads)
    import_model_modules(imports)


def import_model_modules(modules: Sequence[str]) -> None:
    """Import the modules that register a model's custom classes (config ``model.imports``), from the working
    directory or ``PYTHONPATH``; a ValueError naming the key and the module where one cannot be imported."""
    if modules and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as error:
            raise ValueError(
                f"config key model.imports: module {name!r} could not be imported ({type(error).__name__}: {error}); "
                f"put {name.replace('.', '/')}.py in the working directory {os.getcwd()} or on PYTHONPATH"
            ) from error


def _skipped_imports() -> tuple[str, ...]:
    """:data:`JOB_SKIPPED_IMPORTS` but the backend Keras is configured to use (``KERAS_BACKEND``, else the
    ``backend`` of keras.json in ``KERAS_HOME``, ``~/.keras`` or ``/tmp/.keras``, the places Keras reads)."""
    backends = {os.environ.get("KERAS_BACKEND", "")}
    homes = [os.environ.get("KERAS_HOME", ""), os.path.join(os.path.expanduser("~"), ".keras"), "/tmp/.keras"]
    for home in filter(None, homes):
        try:
            with open(os.path.join(home, "keras.json")) as f:
                backends.add(str(json.load(f).get("backend", "")))
        except (OSError, ValueError, AttributeError):
            continue
    return tuple(name for name in JOB_SKIPPED_IMPORTS if name not in backends)


#: Keras's dtype policy of each reduced ``precision``: variables stay float32, layers compute in the reduced type.
_POLICIES = {"bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


def in_precision(model, precision: str, float32_parts: tuple[str, ...] = ()):
    """A copy of ``model`` (same weights) whose matrix products compute in ``precision`` (``bfloat16``
    or ``float16``, Keras's mixed policies), for methods that run faster where the hardware has
    the type (bfloat16 on CPUs with AVX512_BF16 or AMX, both on GPUs); ``float32``: the model itself.

    Every layer is rebuilt from its config, nested models included, and the weights are copied;
    a layer that cannot be rebuilt so (a custom layer without ``get_config``/``from_config``) is a
    ValueError naming it. The rule: the layers with a kernel (convolutions, dense layers, layers
    made of them) compute in ``precision``; every other layer keeps its dtype, float32 for a float32
    model (normalization, activations, merges, pooling, padding), and so do the layers of the
    classifier head (from the output back to the last convolution or merge: pooling, dense,
    activations):

    - the products are where the hardware gains (the other layers in bfloat16 were no faster on
      ResNet50 on this CPU: 0.64x float32's time for saliency with every layer but the head in
      bfloat16, 0.61x with the products alone);
    - the other layers' rounding adds up along the network: a ResNet's merges round the sum of
      its stream and a small branch to 8 bits of mantissa block after block. With the products
      alone in bfloat16, ResNet50's occlusion maps correlate with float32's at r 0.992 (0.985
      with every layer but the head in bfloat16), SmoothGrad's (16 samples) at 0.990 (0.989);
    - the head keeps the class scores at float32's resolution, as Keras's mixed-precision guide
      advises for the output, which the perturbation methods need, as they explain by
      differences of scores (occlusion: r 0.915 with the dense layer alone in float32).

    The maps of one input gradient stay below r 0.99 (ResNet50's saliency 0.974, Input x Gradient
    0.982): they move with the rounding of the convolutions' weights themselves (saliency at r 0.984
    with the weights alone rounded to bfloat16, in a float32 computation). ``float32_parts`` keeps
    more of the network in float32, by where a layer computes, for measuring that trade-off
    (``python -m benchmarks.precision --float32-parts``; README.md, "Reduced precision"): ``late``,
    the layers at the network's smallest spatial size (a ResNet's last stage); ``early/N``, the
    layers whose output keeps at least 1/N of the input's size along every spatial axis
    (``early/4``: a ResNet's stem and first stage). The methods use none.
    """
    import keras

    _check_parts(float32_parts)
    if precision == "float32":
        return model
    if precision not in _POLICIES:
        raise ValueError(f"precision must be one of float32, {', '.join(_POLICIES)}; got {precision!r}")
    policy = _POLICIES[precision]
    kept = _output_layers(model) | _part_layers(model, float32_parts)

    def rebuilt(layer):
        try:
            config = layer.get_config()
            if _multiplies(layer) and id(layer) not in kept:
                config["dtype"] = policy
            return layer.__class__.from_config(config)
        except Exception as error:
            reason = " ".join(str(error).split())[:200] or type(error).__name__
            raise ValueError(
                f"precision {precision!r}: layer {layer.name!r} ({type(layer).__name__}) cannot be rebuilt from its "
                f"config in that precision ({reason}); use precision float32 for this model"
            ) from None

    try:
        copy = keras.models.clone_model(model, clone_function=rebuilt, recursive=True)
    except ValueError:
        raise
    except Exception as error:
        reason = " ".join(str(error).split())[:200] or type(error).__name__
        raise ValueError(
            f"precision {precision!r}: the model {model.name!r} cannot be copied in that precision ({reason}); "
            "use precision float32 for this model"
        ) from None
    copy.set_weights(model.get_weights())
    for layer in _layers(copy):  # a preprocessing layer's adapted state (Normalization's mean and variance)
        if hasattr(layer, "finalize_state") and getattr(layer, "built", False):  # lives in weights set_weights fills
            layer.finalize_state()  # and in tensors derived from them, which only this recomputes
    _check_copy(model, copy, precision)
    return copy


#: How far a reduced-precision copy's scores may lie from the model's on a probe input (probabilities: bfloat16's
#: rounding moved ResNet50's by <= 2e-4); beyond it the copy computes another function.
COPY_TOLERANCE = 0.05


def _check_copy(model, copy, precision: str) -> None:
    """ValueError where the copy's scores on a probe input (fixed noise of the model's input shape) differ from the
    model's by more than :data:`COPY_TOLERANCE` relative to the scores' range: a layer's state that the copy lost."""
    shape = tuple(int(n) if n is not None else 8 for n in model.inputs[0].shape[1:])
    probe = np.random.default_rng(0).normal(0.5, 0.25, (2, *shape)).astype(np.float32)
    original = np.asarray(model.predict_on_batch(probe), np.float32)
    copied = np.asarray(copy.predict_on_batch(probe), np.float32)
    scale = max(float(np.abs(original).max()), 1.0)
    gap = float(np.abs(original - copied).max()) / scale
    if not np.isfinite(gap) or gap > COPY_TOLERANCE:
        raise ValueError(
            f"precision {precision!r}: the copy of model {model.name!r} in that precision gives other scores than "
            f"the model (by {gap:.3g} of their range on a probe input, beyond {COPY_TOLERANCE}): a layer keeps state "
            "that the copy does not reproduce; use precision float32 for this model"
        )


#: The parts of a network that ``in_precision(..., float32_parts)`` can keep in float32 besides its head: ``late``,
#: the layers at the network's smallest spatial size; ``early/N``, those at >= 1/N of the input's size.
LATE, EARLY = "late", "early/"


def _multiplies(layer) -> bool:
    """Whether ``layer`` computes matrix products (convolutions, dense layers, and layers made of them such as
    attention): it has a kernel, its own or a sublayer's (``kernel``, ``depthwise_kernel``, ...)."""
    return any(weight.name.endswith("kernel") for weight in layer.weights)


def _check_parts(parts: tuple[str, ...]) -> None:
    for part in parts:
        factor = part[len(EARLY) :] if part.startswith(EARLY) else ""
        if part != LATE and not (factor.isdigit() and int(factor) >= 1):
            raise ValueError(f"float32 part must be {LATE!r} or {EARLY}N (N a whole number >= 1); got {part!r}")


def _part_layers(model, parts: tuple[str, ...]) -> set[int]:
    """The ids of the layers of ``model`` (nested models' included, not the nested models themselves) in the
    float32 ``parts`` (:data:`LATE`, :data:`EARLY`); a layer's size is that of its output, at its first call
    where it is called several times; layers whose output is not a map of the input's rank (dense, global
    pooling) are in no part."""
    if not parts:
        return set()
    import keras

    from xaipipe.layers import submodel_graph

    size = tuple(model.inputs[0].shape[1:-1])
    sizes = {}
    for layer in _layers(model):
        if isinstance(layer, keras.layers.InputLayer) or submodel_graph(layer) is not None or not layer._inbound_nodes:
            continue
        shape = tuple(layer._inbound_nodes[0].output_tensors[0].shape[1:-1])
        if len(shape) == len(size) and all(isinstance(n, int) for n in shape):
            sizes[id(layer)] = shape
    found: set[int] = set()
    for part in parts:
        if part == LATE and sizes:
            smallest = min(sizes.values(), key=math.prod)
            found |= {key for key, shape in sizes.items() if shape == smallest}
        elif part.startswith(EARLY):
            factor = int(part[len(EARLY) :])
            found |= {key for key, shape in sizes.items() if all(n * factor >= m for n, m in zip(shape, size))}
    return found


def _output_layers(model) -> set[int]:
    """The ids of the layers of ``model``'s classifier head: from each output back to the last convolution or
    merge (pooling, flatten, dropout, activations and dense layers on one input), through nested models."""
    import keras

    found: set[int] = set()
    pending = [model]
    while pending:
        current = pending.pop()
        for output in getattr(current, "outputs", None) or []:
            tensor = output
            while True:
                history = getattr(tensor, "_keras_history", None)
                layer = history[0] if history else None
                if layer is None or id(layer) in found or layer is current:
                    break
                if hasattr(layer, "outputs"):  # a nested model: its own head
                    found.add(id(layer))
                    pending.append(layer)
                    break
                if "Conv" in type(layer).__name__ or not layer._inbound_nodes:  # a convolution ends the head
                    break
                inputs = layer._inbound_nodes[0].input_tensors
                if len(inputs) != 1 or isinstance(layer, keras.layers.InputLayer):  # so does a merge (Add, ...)
                    break
                found.add(id(layer))
                tensor = inputs[0]
    return found


def load_model(path: str | os.PathLike):
    """Load a Keras model file (``.keras`` or ``.h5``) for inference."""
    import keras

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    key = _file_key("model", path) if _SHARED is not None else None
    if key is not None and key in _SHARED:  # type: ignore[operator]
        return _SHARED[key]  # type: ignore[index]
    check_model_file(path)
    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as error:
        custom = re.search(r"Could not locate class '([^']+)'", str(error))
        if custom:  # Keras's own message leads with "could not be deserialized properly" and a config dump
            raise ValueError(
                f"could not load Keras model {path}: it uses the class {custom.group(1)!r}, which is not Keras's own "
                "and not registered in this process: list the module that registers it "
                "(keras.saving.register_keras_serializable) under config key model.imports (in Python: import it "
                f"first); Keras says: {str(error)[:600]}"
            ) from error
        raise ValueError(f"could not load Keras model {path}: {error}") from error
    if key is not None:
        _SHARED[key] = model  # type: ignore[index]
    return model


def check_model_file(path: Path) -> None:
    """ValueError unless ``path`` looks like a Keras model file: a ``.keras`` zip archive or an HDF5 ``.h5``.

    Keras's own messages for other files mislead (a text file named ``.keras`` gives "File not found").
    """
    import zipfile

    import h5py

    name = path.name.lower()
    if name.endswith(".keras"):
        if not zipfile.is_zipfile(path):
            raise ValueError(
                f"{path} is not a Keras model: a .keras file is a zip archive, this one is not "
                "(damaged, or another kind of file); save the model with model.save('model.keras')"
            )
    elif name.endswith((".h5", ".hdf5")):
        if not h5py.is_hdf5(path):
            raise ValueError(
                f"{path} is not a Keras model: a .h5 model is an HDF5 file, this one is not "
                "(damaged, or another kind of file); save the model with model.save('model.keras')"
            )
    else:
        raise ValueError(
            f"{path} is not a Keras model file: model.path must end in .keras (Keras 3) or .h5 (legacy HDF5); "
            "a TensorFlow SavedModel folder cannot be loaded by Keras 3: load it in Keras and save it as .keras"
        )


def predict_batch(model, inputs: np.ndarray) -> np.ndarray:
    """Class scores (B, K) of one batch; a one-unit sigmoid model's are [1 - p, p] (two classes), a model ending in
    a log_softmax gives its probabilities exp(log p)."""
    scores = np.asarray(model.predict_on_batch(inputs), dtype=np.float32)
    if _ends_in_log_softmax(model):
        return np.exp(scores)
    if scores.ndim == 2 and scores.shape[1] == 1:
        from xaipipe.autodiff import one_unit_sigmoid, two_class_probabilities

        if one_unit_sigmoid(model):
            return two_class_probabilities(scores)
    return scores


_LOG_SOFTMAX: "weakref.WeakKeyDictionary[Any, bool]" = weakref.WeakKeyDictionary()


def _ends_in_log_softmax(model) -> bool:
    """:func:`xaipipe.autodiff.log_probabilities`, found once per model (predict_batch runs on every batch)."""
    try:
        return _LOG_SOFTMAX[model]
    except (KeyError, TypeError):
        from xaipipe.autodiff import log_probabilities

        found = log_probabilities(model)
        try:
            _LOG_SOFTMAX[model] = found
        except TypeError:
            pass
        return found


#: What xaipipe explains, said in every refusal of a model it does not.
SUPPORTED = (
    "xaipipe explains classifiers with one image input of fixed size, channels last "
    "((H, W, C) or (D, H, W, C)), and one output of class scores (batch, classes)"
)


def _layers(model) -> list:
    """Every layer of ``model``, those of nested sub-models included."""
    from xaipipe.layers import sublayers

    found, stack = [], list(model.layers)
    while stack:
        layer = stack.pop()
        found.append(layer)
        stack.extend(sublayers(layer))
    return found


def check_model_input(model, model_path: str | os.PathLike, input_shape: tuple[int, ...]) -> None:
    """ValueError naming both shapes unless ``model`` takes inputs of ``input_shape`` (what preprocessing gives;
    checked before any job where the model file tells its input shape: :func:`xaipipe.config.check_model_files`)."""
    from xaipipe.modelfile import input_problem

    problem = input_problem(model_path, tuple(model.inputs[0].shape[1:]), input_shape)
    if problem is not None:
        raise ValueError(problem)


def _is_sequential(model) -> bool:
    import keras

    return isinstance(model, keras.Sequential)


def check_supported(model) -> None:
    """ValueError saying what is supported unless ``model`` is: one input of fixed spatial size, channels last,
    one output of shape (batch, classes). The predictions and heatmaps stages and every method check it."""
    name = getattr(model, "name", "model")
    if getattr(model, "inputs", None) is None and _is_sequential(model):  # no keras.Input, never built or called
        raise ValueError(
            f"model {name!r} is a keras.Sequential model that is not built yet: it has no input shape, so no graph of "
            "layers to explain; build it with model.build((None, H, W, C)) (or begin it with keras.Input((H, W, C))), "
            "then pass or save it again"
        )
    if getattr(model, "inputs", None) is None:  # a subclassed keras.Model: no graph of layers to read
        raise ValueError(
            f"model {name!r} ({type(model).__name__}) is a subclassed keras.Model, which has no graph of layers "
            f"to explain; {SUPPORTED}. Build it as a functional model, keras.Model(inputs, outputs), which the CAM "
            "methods need (they read a layer inside); wrapped as inputs = keras.Input((H, W, C)); "
            "keras.Model(inputs, subclassed(inputs)) it serves the gradient and perturbation methods"
        )
    inputs, outputs = list(model.inputs), list(model.outputs)
    if len(inputs) != 1:
        names = [getattr(t, "name", "?") for t in inputs]
        raise ValueError(f"model {name!r} has {len(inputs)} inputs {names}; {SUPPORTED}")
    if len(outputs) != 1:
        names = [getattr(t, "name", "?") for t in outputs]
        raise ValueError(f"model {name!r} has {len(outputs)} outputs {names}; {SUPPORTED}")
    shape = tuple(inputs[0].shape[1:])
    if len(shape) not in (3, 4):
        raise ValueError(f"model {name!r} takes inputs of shape {shape}; {SUPPORTED}")
    if any(n is None for n in shape):
        raise ValueError(
            f"model {name!r} takes inputs of unknown size {shape}; {SUPPORTED}: give its keras.Input the size of "
            "preprocessing.size (e.g. rebuild it on keras.Input((H, W, C)) and load the weights)"
        )
    first = [layer.name for layer in _layers(model) if getattr(layer, "data_format", None) == "channels_first"]
    if first:
        raise ValueError(
            f"model {name!r} has channels-first layers {sorted(first)}; {SUPPORTED} (data_format='channels_last')"
        )
    if shape[0] in (1, 3) and shape[-1] not in (1, 3, 4) and shape[-1] > 4:
        raise ValueError(
            f"model {name!r} takes inputs of shape {shape}, which look channels-first (channels {shape[0]} "
            f"first, {shape[-1]} last); {SUPPORTED}"
        )
    if len(outputs[0].shape) != 2:
        raise ValueError(f"model {name!r} outputs shape {tuple(outputs[0].shape)}; {SUPPORTED}")
