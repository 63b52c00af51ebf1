"""Per-image cost of every xaipipe method next to the hardware limit and the peers, in one process.

    python -m benchmarks.run [--models resnet50,demo,cnn3d] [--repeats 3] [--csv benchmarks/results.csv]
    python -m benchmarks.run --models demo --methods deletion+insertion,road --no-peers  # the faithfulness rows only

For each model, on the same inputs and batch size: the limit (a compiled forward
pass, and a forward plus full backward pass, per image), every xaipipe method for
one target class and for all classes, and the peers where installed (AUCMEDI 0.11,
called per image as its decoder does; Xplique 2.x, batched). Times are medians of
``--repeats`` runs after a warm-up; the ratios are what counts on a noisy machine. Beside each fast
method's row, what a heatmaps job computes of the same batch (``job_ms``: the raw maps and their
normalization's two numbers, no full-size normalized maps; :func:`as_job`).

Two rows measure the faithfulness metrics (xaipipe.faithfulness) rather than a map:
``deletion+insertion`` (both curves, ``steps`` = 20, on the case's batch) against the
forward passes over its B * 2 * (steps + 1) copies in chunks of the same size, and
``road`` (ROAD MoRF and LeRF, the demo case only, on ``slow_images`` images) against the
same count of forward passes; ROAD builds its copies by a linear solve each on the CPU,
so its ratio is above 1. Their maps are smooth (blurred noise), as heatmaps are.

One row measures the drop-in decoder rather than a method: ``decoder-repeat`` (Grad-CAM through
:func:`xaipipe.xai_decoder` on the case's batch, as a notebook calls it batch by batch), its time
per image on a call after the first (the method compiled once and reused) against the forward pass,
and beside it a first call's (the model's cached methods forgotten before each: what every call cost
before the decoder reused its methods).

One row measures several methods from one pass: ``cam-family`` (Grad-CAM, Grad-CAM++, HiResCAM,
XGradCAM and LayerCAM through :class:`xaipipe.methods.camfamily.CAMFamily`, one target class, on the
case's batch) against Grad-CAM alone (its limit column; target ratio <= 1.2), and beside it the five
methods run one after another, as five separate jobs compute them.

The newer methods, each against the passes it needs (:func:`limit_of`): HiResCAM, XGradCAM
and LayerCAM against one forward + backward pass, Eigen-CAM against one forward pass,
Score-CAM against K + 1 forward passes (K the target layer's channels), Input x Gradient
against one forward + backward pass, SmoothGrad and VarGrad against ``noise.samples``
forward + backward passes, RISE against ``num_masks`` forward passes, and ``limepro-slic``
(LimePro with ``segmentation: slic``) against ``num_samples`` forward passes, its SLIC
time per image reported beside (``segmentation_ms``). Where a default would take minutes
on a CPU, a case sets fewer samples, masks or channels (a smaller target layer), and the
row's name says so (``rise (num_masks=256)``): the ratio is what counts. Their peers:
Xplique's SmoothGrad, VarGrad, Rise and GradientInput (batched like xaipipe), and, on a
PyTorch twin of the model in a process of its own (:mod:`benchmarks.torch_peers`),
pytorch-grad-cam's CAM variants and Captum's InputXGradient and NoiseTunnel; a PyTorch peer
is related to xaipipe through its own framework's limit pass (its time over the same passes
of the twin, against xaipipe's over the Keras model's).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


@dataclass
class Case:
    """One model to benchmark: how to build it, its batch and how many images the slow methods get."""

    name: str
    build: Callable
    input_shape: tuple[int, ...]
    batch: int
    slow_images: int
    params: dict[str, dict] = field(default_factory=dict)


def resnet50():
    import keras

    return keras.applications.ResNet50(weights=None, input_shape=(224, 224, 3), classes=3)


def demo_cnn():
    from xaipipe.demo import build_demo_model

    return build_demo_model((64, 64, 1), 3)


def cnn3d():
    import keras

    inputs = keras.Input((64, 64, 64, 1))
    x = inputs
    for filters in (8, 16, 32):
        x = keras.layers.Conv3D(filters, 3, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling3D()(x)
    x = keras.layers.Conv3D(32, 3, padding="same", activation="relu", name="last_conv")(x)
    x = keras.layers.GlobalAveragePooling3D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x), name="cnn3d")


BENCH_PARAMS = {
    "integratedgradients": {"steps": 50},
    "occlusion": {"patch_size": 16, "stride": 16},
    "limepro": {"num_samples": 1000},
    "limecon": {"num_samples": 1000},
}
CASES = {
    "resnet50": Case("resnet50", resnet50, (224, 224, 3), batch=16, slow_images=2),
    "demo": Case("demo", demo_cnn, (64, 64, 1), batch=64, slow_images=16),
    "cnn3d": Case("cnn3d", cnn3d, (64, 64, 64, 1), batch=8, slow_images=2,
                  params={"occlusion": {"patch_size": 16, "stride": 16}, "limepro": {"num_samples": 200},
                          "limecon": {"num_samples": 200}}),  # fmt: skip
}
SLOW = ("integratedgradients", "occlusion", "limepro", "limecon", "scorecam", "smoothgrad", "vargrad", "rise",
        "limepro-slic")  # fmt: skip
#: Rows that run a method with other settings: row name -> (method key, its parameters).
VARIANTS = {"limepro-slic": ("limepro", {"segmentation": "slic"})}
#: The cases' settings of the newer methods where the defaults would take minutes on 2 CPU cores (the ratio is what
#: counts); ``images``: how many images the row explains (else the case's ``slow_images``).
NEW_PARAMS = {
    "resnet50": {
        "scorecam": {"layer": "conv2_block3_out", "images": 1},  # K = 256 channels (the default layer has 2,048)
        "smoothgrad": {"noise": {"samples": 16}}, "vargrad": {"noise": {"samples": 16}},
        "rise": {"num_masks": 256, "images": 1},
        # the inputs are noise, which SLIC leaves in 1 superpixel at its default compactness (10 in Lab)
        "limepro-slic": {"num_samples": 200, "compactness": 100.0, "images": 1},
    },
    "demo": {"rise": {"num_masks": 1000, "images": 8}},
    "cnn3d": {"rise": {"num_masks": 500}, "limepro-slic": {"num_samples": 200}},
}  # fmt: skip
for _name, _params in NEW_PARAMS.items():
    CASES[_name].params.update(_params)
#: Parameters a row's name shows when a case sets them.
SHOWN = ("layer", "samples", "num_masks", "num_samples", "compactness")
#: Rows that time a faithfulness metric of maps, not a method: see :func:`faithfulness_row`.
FAITHFULNESS = ("deletion+insertion", "road")
#: Rows that time xai_decoder's calls (see :func:`decoder_row`).
DECODER = ("decoder-repeat",)
#: Rows that time the CAM family against Grad-CAM alone (see :func:`cam_family_row`).
CAM_FAMILY = ("cam-family",)
FAITHFULNESS_STEPS = 20
FAITHFULNESS_CHUNK = 256  # DeletionInsertion's and road_curves' default chunk_size
ROAD_CASES = ("demo",)  # ROAD's imputation is CPU work per copy: timed on the small case only
#: The PyTorch peers of the newer methods (run on a PyTorch twin of the model, benchmarks.torch_peers): row -> (peer,
#: its class).
TORCH_PEERS = {
    "hirescam": ("torch", "pytorch_grad_cam.HiResCAM"), "xgradcam": ("torch", "pytorch_grad_cam.XGradCAM"),
    "layercam": ("torch", "pytorch_grad_cam.LayerCAM"), "scorecam": ("torch", "pytorch_grad_cam.ScoreCAM"),
    "eigencam": ("torch", "pytorch_grad_cam.EigenCAM"), "inputxgradient": ("torch", "captum.attr.InputXGradient"),
    "smoothgrad": ("torch", "captum.attr.NoiseTunnel(Saliency)"),
    "vargrad": ("torch", "captum.attr.NoiseTunnel(Saliency)"),
}  # fmt: skip
AUCMEDI_KEYS = {
    "gradcam": "gradcam", "gradcam++": "gradcam++", "guidedgradcam": "GuidedGradCAM", "saliency": "saliency",
    "guidedbackprop": "guidedbackprop", "integratedgradients": "IntegratedGradients",
    "occlusion": "OcclusionSensitivity", "limepro": "LimePro", "limecon": "LimeCon",
}  # fmt: skip


def interleaved_medians(fns: list[Callable[[], object]], repeats: int) -> list[float]:
    """Median wall time of each of ``fns``, run in turn (a, b, a, b, ...) after a warm-up of each.

    Interleaving exposes every function to the same load, so their ratio holds on a
    shared, noisy machine even where the absolute times drift.
    """
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


class Limits:
    """The hardware limit on one batch: a compiled forward pass, and a forward plus full backward pass.

    TensorFlow: the model under ``tf.function`` with a ``GradientTape``. Other Keras 3
    backends: the model's forward pass compiled (``jax.jit``; PyTorch runs eagerly
    under ``no_grad``), and the input gradient of one class score. Every limit starts
    from the numpy batch, as the methods do: the input's copy to the device is part of it
    (on the 64^3 3D CNN 4-5% of a forward pass; it was left out of TensorFlow's limits
    before 2026-11-28, which made the CAM methods' ratios there that much higher).
    """

    def __init__(self, model, x: np.ndarray):
        import keras

        self.n = len(x)
        self.input_shape = tuple(x.shape[1:])
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            forward = tf.function(lambda batch: model(batch, training=False))

            @tf.function
            def forward_backward(batch):
                with tf.GradientTape() as tape:
                    tape.watch(batch)
                    score = tf.reduce_sum(model(batch, training=False)[:, 0])
                return tape.gradient(score, batch)

            # from the numpy batch, as every method is called and as the other backends' limits and
            # forward_over run: the input's copy to the device is part of any pass over it
            self.forward = lambda: forward(tf.constant(x)).numpy()
            self.forward_backward = lambda: forward_backward(tf.constant(x)).numpy()
            self._forward_over = lambda chunks: [forward(chunk).numpy() for chunk in [tf.constant(c) for c in chunks]]
        else:
            from xaipipe.autodiff import ScoreGradients, Scores

            forward = Scores(model, "probabilities")
            gradients = ScoreGradients(model, None, "probabilities", reduce=lambda inputs, grads: grads)
            first_class = np.zeros((len(x), 1), np.int32)
            self.forward = lambda: forward(x, len(x))
            self.forward_backward = lambda: gradients(x, first_class)
            self._forward_over = lambda chunks: [forward(chunk, len(chunk)) for chunk in chunks]

    def forward_over(self, n: int, batch_size: int, seed: int = 1) -> Callable[[], None]:
        """The same compiled forward pass over ``n`` random inputs, ``batch_size`` per call: the limit of n copies."""
        shape = self.input_shape
        rng = np.random.default_rng(seed)
        sizes = [min(batch_size, n - first) for first in range(0, n, batch_size)]
        chunks = [rng.normal(size=(size, *shape)).astype(np.float32) for size in sizes]
        return lambda: self._forward_over(chunks)


def limit_of(method: str, explainer, limits: Limits) -> tuple[Callable[[], None], float]:
    """The passes a method cannot do without, as (the batched pass to time, how many per image)."""
    if method in ("gradcam", "gradcam++", "hirescam", "xgradcam", "layercam", "eigencam"):
        # the layer's gradients cost a backward pass through the head only: a forward pass is the limit
        return limits.forward, 1.0
    if method in ("saliency", "guidedbackprop", "guidedgradcam"):
        return limits.forward_backward, 1.0
    if method == "integratedgradients":
        return limits.forward_backward, float(explainer.steps)
    if method == "occlusion":
        return limits.forward, float(len(explainer.patches) + 1)
    if method == "inputxgradient":
        return limits.forward_backward, 1.0
    if method == "scorecam":  # K masked copies and the pass that reads the activations
        return limits.forward, float(int(explainer.layer.output.shape[-1]) + 1)
    if method in ("smoothgrad", "vargrad"):
        return limits.forward_backward, float(explainer.noise["samples"])
    if method == "rise":
        return limits.forward, float(explainer.num_masks)
    return limits.forward, float(explainer.num_samples)  # LIME


def smooth_maps(x: np.ndarray, seed: int = 2) -> np.ndarray:
    """Heatmap-like maps (B, *spatial) for x (B, *spatial, C): noise blurred by a tenth of each axis."""
    from xaipipe.faithfulness import gaussian_blur

    noise = np.random.default_rng(seed).normal(size=(*x.shape[:-1], 1))
    return np.stack([gaussian_blur(m, [n / 10 for n in m.shape[:-1]])[..., 0] for m in noise])


def faithfulness_row(case: Case, method: str, model, x: np.ndarray, limits: Limits, repeats: int) -> dict | None:
    """A faithfulness metric's time per image next to the forward passes over its copies (None: not on this case)."""
    from xaipipe.autodiff import Scores
    from xaipipe.faithfulness import DeletionInsertion, road_curves

    steps, chunk = FAITHFULNESS_STEPS, FAITHFULNESS_CHUNK
    if method == "road" and case.name not in ROAD_CASES:
        print(f"  {method:<20} skipped: timed on {', '.join(ROAD_CASES)} only", flush=True)
        return None
    images = x if method == "deletion+insertion" else x[: case.slow_images]
    maps, classes = smooth_maps(images), np.zeros(len(images), np.int32)
    copies = len(images) * 2 * (steps + 1)  # two curves of steps + 1 copies each
    if method == "deletion+insertion":
        metric = DeletionInsertion(model, steps=steps, chunk_size=chunk)
        run, reps = (lambda: metric(images, maps, classes)), repeats
    else:
        scores = Scores(model, "probabilities")  # built once, as the evaluation stage reuses it
        run, reps = (lambda: road_curves(model, images, maps, classes, steps=steps, chunk_size=chunk, scores=scores)), 1
    t_limit, t_metric = interleaved_medians([limits.forward_over(copies, chunk), run], reps)
    return {
        "model": case.name, "method": method, "images": len(images), "batch": len(images),
        "xaipipe_ms": t_metric / len(images) * 1e3, "xaipipe_all_classes_ms": "",
        "limit_ms": t_limit / len(images) * 1e3,
        "xaipipe_over_limit": t_metric / t_limit, "all_over_one": "",
    }  # fmt: skip


class _ArrayGenerator:
    """The batch as a data generator of the seed's interface, its images already at the model's size."""

    def __init__(self, x: np.ndarray):
        self.x, self.samples, self.image_format, self.batch_size = x, [f"s{i}" for i in range(len(x))], None, len(x)

    def preprocess_image(self, index: int, run_resize=True, run_aug=True, run_standardize=True) -> np.ndarray:
        return self.x[index]


def decoder_row(case: Case, method: str, model, x: np.ndarray, limits: Limits, repeats: int) -> dict:
    """Grad-CAM through xai_decoder on the batch: a call after the first, and a first call (the model's cached
    methods forgotten), per image, against the forward pass."""
    from xaipipe.decoder import forget_methods, xai_decoder

    generator, preds = _ArrayGenerator(x), np.eye(int(model.outputs[0].shape[-1]))[np.zeros(len(x), int)]

    def first() -> None:
        forget_methods(model)
        xai_decoder(generator, model, preds, method="gradcam")

    t_limit, t_repeat, t_first = interleaved_medians(
        [limits.forward, lambda: xai_decoder(generator, model, preds, method="gradcam"), first], repeats
    )
    return {
        "model": case.name, "method": method, "images": len(x), "batch": len(x),
        "xaipipe_ms": t_repeat / len(x) * 1e3, "xaipipe_all_classes_ms": "", "limit_ms": t_limit / len(x) * 1e3,
        "xaipipe_over_limit": t_repeat / t_limit, "all_over_one": "",
        "first_call_ms": t_first / len(x) * 1e3, "first_call_over_limit": t_first / t_limit,
    }  # fmt: skip


def aucmedi_call(model, method: str, x: np.ndarray, classes: np.ndarray) -> Callable[[], None] | str:
    """AUCMEDI 0.11's method, one image and one class per call, as its decoder calls it (or why not)."""
    try:
        from aucmedi.xai.methods import xai_dict
    except ImportError:
        return "not installed"
    try:
        explainer = xai_dict[AUCMEDI_KEYS[method]](model)
    except Exception as error:  # a peer that fails is reported, not fatal
        return f"fails: {type(error).__name__}: {str(error)[:120]}"

    def run() -> None:
        with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):  # its model.predict prints
            for i, c in enumerate(classes):
                explainer.compute_heatmap(image=x[i : i + 1], class_index=int(c))

    return run


def xplique_call(
    model, method: str, x: np.ndarray, classes: np.ndarray, n_classes: int, explainer=None
) -> Callable[[], None] | str:
    """Xplique 2.x's implementation of the same method, batched like xaipipe's (or why not); ``explainer``: the
    row's xaipipe method, whose sample and mask counts and chunk sizes the peer gets too."""
    try:
        import xplique.attributions as xa
    except ImportError:
        return "not installed"
    factories = {
        "gradcam": lambda: xa.GradCAM(model, batch_size=len(x)),
        "gradcam++": lambda: xa.GradCAMPP(model, batch_size=len(x)),
        "saliency": lambda: xa.Saliency(model, batch_size=len(x)),
        "guidedbackprop": lambda: xa.GuidedBackprop(model, batch_size=len(x)),
        "integratedgradients": lambda: xa.IntegratedGradients(model, batch_size=64, steps=50),
        "occlusion": lambda: xa.Occlusion(model, batch_size=256, patch_size=16, patch_stride=16),
        "limepro": lambda: xa.Lime(model, batch_size=256, nb_samples=BENCH_PARAMS["limepro"]["num_samples"]),
        "inputxgradient": lambda: xa.GradientInput(model, batch_size=len(x)),
        "smoothgrad": lambda: xa.SmoothGrad(model, batch_size=explainer.chunk_size,
                                            nb_samples=explainer.noise["samples"]),
        "vargrad": lambda: xa.VarGrad(model, batch_size=explainer.chunk_size, nb_samples=explainer.noise["samples"]),
        "rise": lambda: xa.Rise(model, batch_size=explainer.chunk_size, nb_samples=explainer.num_masks,
                                grid_size=explainer.cells, preservation_probability=explainer.p),
    }
    if method not in factories:
        return "no such method"
    try:
        explainer = factories[method]()
    except Exception as error:
        return f"fails: {type(error).__name__}: {str(error)[:120]}"
    targets = np.eye(n_classes, dtype=np.float32)[classes]
    return lambda: explainer.explain(x, targets)


def measure_peer(run: Callable[[], None] | str, limit_pass: Callable[[], None], repeats: int) -> tuple[float, float] | str:
    """(peer seconds, limit seconds) interleaved, or the reason the peer did not run."""
    if isinstance(run, str):
        return run
    try:
        return tuple(interleaved_medians([run, limit_pass], repeats))
    except Exception as error:
        return f"fails: {type(error).__name__}: {str(error)[:120]}"


def as_job(explainer, images: np.ndarray, classes: np.ndarray) -> None:
    """What a heatmaps job computes and keeps of a batch: the raw maps and their normalization's two numbers (it
    makes no full-size normalized maps, which :meth:`explain` returns)."""
    from xaipipe.maps import normalization_params

    raw = explainer.explain_raw(images, classes)
    normalization_params(raw.reshape(-1, *raw.shape[2:]), explainer.normalize)


def cam_family_row(case: Case, method: str, model, x: np.ndarray, limits: Limits, repeats: int) -> dict:
    """The five CAM methods from one pass (CAMFamily) per image, against Grad-CAM alone, and the five one after
    another; all for one target class on the case's batch, interleaved."""
    from xaipipe import methods
    from xaipipe.maps import normalization_params
    from xaipipe.methods.camfamily import create_family

    members, family = create_family(model, [(key, {}) for key in methods.SHARED_PASS])
    alone = [methods.create(key, model) for key in methods.SHARED_PASS]
    one = np.zeros((len(x), 1), np.int32)

    def separately() -> None:
        for explainer in alone:
            explainer.explain(x, one)

    def kept(maps: list[np.ndarray]) -> None:  # what a heatmaps job keeps: raw maps, two numbers per map (as_job)
        for member, raw in zip(members, maps):
            normalization_params(raw.reshape(-1, *raw.shape[2:]), member.normalize)

    t_gradcam, t_family, t_separate, t_gradcam_job, t_family_job = interleaved_medians(
        [lambda: alone[0].explain(x, one), lambda: family.explain(x, one), separately,
         lambda: kept([alone[0].explain_raw(x, one)]), lambda: kept(family.explain_raw(x, one))], repeats
    )  # fmt: skip
    return {
        "model": case.name, "method": f"{method} ({len(members)})", "images": len(x), "batch": len(x),
        "xaipipe_ms": t_family / len(x) * 1e3, "xaipipe_all_classes_ms": "", "limit_ms": t_gradcam / len(x) * 1e3,
        "xaipipe_over_limit": t_family / t_gradcam, "all_over_one": "",
        "separate_ms": t_separate / len(x) * 1e3, "separate_over_limit": t_separate / t_gradcam,
        "job_ms": t_family_job / len(x) * 1e3, "job_over_limit": t_family_job / t_gradcam_job,
    }  # fmt: skip


def bench_case(case: Case, repeats: int, peers: bool, methods_to_run: list[str]) -> Iterator[dict]:
    import keras

    from xaipipe import methods

    keras.utils.set_random_seed(0)
    model = case.build()
    n_classes = int(model.outputs[0].shape[-1])
    x = np.random.default_rng(0).normal(size=(case.batch, *case.input_shape)).astype(np.float32)
    limits = Limits(model, x)
    forward, forward_backward = (t / len(x) for t in interleaved_medians([limits.forward, limits.forward_backward], repeats))
    print(f"\n{case.name}: batch {case.batch}, forward {forward * 1e3:.2f} ms/img, "
          f"forward+backward {forward_backward * 1e3:.2f} ms/img", flush=True)  # fmt: skip
    for method in methods_to_run:
        if method in FAITHFULNESS or method in DECODER or method in CAM_FAMILY:
            special = faithfulness_row if method in FAITHFULNESS else decoder_row if method in DECODER else cam_family_row
            row = special(case, method, model, x, limits, repeats)
            if row is not None:
                row.update({"forward_ms": forward * 1e3, "forward_backward_ms": forward_backward * 1e3})
                print(format_row(row), flush=True)
                yield row
            continue
        key, variant = VARIANTS.get(method, (method, {}))
        params = {**BENCH_PARAMS.get(key, {}), **variant, **case.params.get(method, {})}
        n_images = params.pop("images", case.slow_images if method in SLOW else len(x))
        if "noise" in params:  # a case's noise settings complete the method's own
            params["noise"] = {**methods.defaults(key)["noise"], **params["noise"]}
        explainer = methods.create(key, model, **params)
        images = x[:n_images]
        reps = 1 if method in SLOW else repeats
        one = np.zeros((len(images), 1), np.int32)
        everything = np.tile(np.arange(n_classes, dtype=np.int32), (len(images), 1))
        limit_pass, passes = limit_of(key, explainer, limits)
        timed = [limit_pass, lambda: explainer.explain(images, one), lambda: explainer.explain(images, everything)]
        if method not in SLOW:  # what a heatmaps job keeps: the raw maps and their normalization's two numbers
            timed.append(lambda: as_job(explainer, images, one))
        t_limit, t_one, t_all, *t_job = interleaved_medians(timed, reps)
        limit = t_limit / len(x) * passes
        t_one, t_all = t_one / len(images), t_all / len(images)
        row = {
            "model": case.name, "method": row_name(method, case.params.get(method, {})),
            "images": len(images), "batch": len(images),
            "xaipipe_ms": t_one * 1e3, "xaipipe_all_classes_ms": t_all * 1e3, "limit_ms": limit * 1e3,
            "xaipipe_over_limit": t_one / limit, "all_over_one": t_all / t_one,
            "forward_ms": forward * 1e3, "forward_backward_ms": forward_backward * 1e3,
        }  # fmt: skip
        if t_job:
            row.update({"job_ms": t_job[0] / len(images) * 1e3, "job_over_limit": t_job[0] / len(images) / limit})
        if getattr(explainer, "segmentation", None) == "slic":  # SLIC's share of the method's time
            start = time.perf_counter()
            explainer.segment_labels(images)
            row["segmentation_ms"] = (time.perf_counter() - start) / len(images) * 1e3
        if peers:
            peer_calls = {
                "aucmedi": aucmedi_call(model, key, images, one[:, 0]) if method == key else "no such method",
                "xplique": xplique_call(model, method, images, one[:, 0], n_classes, explainer),
            }
            for peer, run in peer_calls.items():
                measured = measure_peer(run, limit_pass, reps)
                if isinstance(measured, str):
                    row[f"{peer}_ms"], row[f"{peer}_over_xaipipe"] = measured, ""
                    continue
                # the peer against the same limit pass, timed beside it: its time relative to xaipipe's
                peer_seconds, limit_seconds = measured
                peer_over_limit = peer_seconds / len(images) / (limit_seconds / len(x) * passes)
                row[f"{peer}_ms"] = peer_seconds / len(images) * 1e3
                row[f"{peer}_over_xaipipe"] = peer_over_limit / (t_one / limit)
            if method in TORCH_PEERS:
                torch_peer(row, case, method, params, explainer, len(images), reps, t_one / limit)
        print(format_row(row), flush=True)
        yield row


def row_name(method: str, params: dict) -> str:
    """The row's method, with the settings a case chose for it: ``rise (num_masks=256)``."""
    noise = params.get("noise") or {}
    shown = {**{k: v for k, v in params.items() if k in SHOWN}, **{k: v for k, v in noise.items() if k in SHOWN}}
    return f"{method} ({', '.join(f'{k}={v}' for k, v in shown.items())})" if shown else method


def torch_peer(row: dict, case: Case, method: str, params: dict, explainer, images: int, reps: int,
               xaipipe_over_limit: float) -> None:
    """The PyTorch peer of ``method`` on the case's PyTorch twin, in a process of its own (benchmarks.torch_peers):
    its time per image, and its time over the twin's passes relative to xaipipe's over the Keras model's."""
    import json
    import subprocess

    peer, _ = TORCH_PEERS[method]
    settings = {"method": method, "model": case.name, "batch": case.batch, "images": images, "repeats": reps,
                "layer": getattr(explainer, "target_layer", None),
                "samples": (getattr(explainer, "noise", None) or {}).get("samples"),
                "chunk_size": getattr(explainer, "chunk_size", None)}  # fmt: skip
    command = [sys.executable, "-m", "benchmarks.torch_peers", json.dumps(settings)]
    environment = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(command, capture_output=True, text=True, check=False, env=environment)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        row[f"{peer}_ms"], row[f"{peer}_over_xaipipe"] = f"fails: {result.stderr.strip()[-120:]}", ""
        return
    measured = json.loads(lines[-1])
    if "error" in measured:
        row[f"{peer}_ms"], row[f"{peer}_over_xaipipe"] = measured["error"], ""
        return
    row[f"{peer}_ms"] = measured["peer_ms"]
    row[f"{peer}_over_limit"] = measured["peer_over_limit"]
    row[f"{peer}_over_xaipipe"] = measured["peer_over_limit"] / xaipipe_over_limit


def format_row(row: dict) -> str:
    def cell(value):
        return f"{value:10.2f}" if isinstance(value, float) else f"{str(value)[:24]:>10}"

    peers = "".join(
        f" | {peer} {cell(row.get(f'{peer}_ms', ''))} ms ({cell(row.get(f'{peer}_over_xaipipe', ''))}x)"
        for peer in ("aucmedi", "xplique", "torch")
        if f"{peer}_ms" in row
    )
    all_over_one = f"{row['all_over_one']:5.2f}" if isinstance(row["all_over_one"], float) else "    -"
    segmentation = f"  (slic {row['segmentation_ms']:.1f} ms/img)" if "segmentation_ms" in row else ""
    if "first_call_ms" in row:
        segmentation += f"  (first call {row['first_call_ms']:.2f} ms/img, ratio {row['first_call_over_limit']:.2f})"
    if "job_ms" in row and "separate_ms" not in row:
        segmentation += f"  (as a job keeps them: {row['job_ms']:.2f} ms/img, ratio {row['job_over_limit']:.2f})"
    if "separate_ms" in row:  # cam-family: the limit column is Grad-CAM alone
        segmentation += (
            f"  (limit: gradcam alone; the five separately {row['separate_ms']:.2f} ms/img,"
            f" ratio {row['separate_over_limit']:.2f}; as a heatmaps job keeps them, raw maps and their"
            f" normalization's numbers: {row['job_ms']:.2f} ms/img, ratio {row['job_over_limit']:.2f})"
        )
    return (
        f"  {row['method']:<20} {cell(row['xaipipe_ms'])} ms/img  limit {cell(row['limit_ms'])} ms"
        f"  ratio {row['xaipipe_over_limit']:5.2f}  all/one {all_over_one}{segmentation}{peers}"
    )


COLUMNS = [
    "model", "method", "images", "batch", "xaipipe_ms", "xaipipe_all_classes_ms", "limit_ms",
    "xaipipe_over_limit", "all_over_one", "aucmedi_ms", "aucmedi_over_xaipipe", "xplique_ms", "xplique_over_xaipipe",
    "forward_ms", "forward_backward_ms", "backend", "device", "segmentation_ms", "torch_ms", "torch_over_limit",
    "torch_over_xaipipe", "first_call_ms", "first_call_over_limit", "separate_ms", "separate_over_limit", "job_ms",
    "job_over_limit",
]  # fmt: skip


def write_csv(path: str, rows: list[dict]) -> None:
    from xaipipe.atomic import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, restval="")
        writer.writeheader()
        writer.writerows(rows)


def device_name() -> str:
    """The accelerator the backend computes on, or "CPU"."""
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax

            return str(jax.devices()[0].device_kind)
        if backend == "torch":
            import torch

            return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        return gpus[0].name if gpus else "CPU"
    except Exception:  # the name is information only
        return "unknown device"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="resnet50,demo,cnn3d", help="comma-separated: " + ",".join(CASES))
    parser.add_argument("--methods", default="gradcam,gradcam++,guidedgradcam,saliency,guidedbackprop,"
                        "integratedgradients,occlusion,limepro,limecon,deletion+insertion,road",
                        help="comma-separated methods, faithfulness rows (deletion+insertion, road) and "
                        "decoder-repeat (xai_decoder's repeated calls), cam-family (five CAM methods from one pass)")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=0, help="images per batch for every model (default: per model)")
    parser.add_argument("--no-peers", action="store_true", help="skip AUCMEDI and Xplique")
    parser.add_argument("--csv", default="benchmarks/results.csv")
    args = parser.parse_args(argv)
    import keras

    device = device_name()
    print(f"xaipipe benchmark: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Keras {keras.__version__} on {keras.backend.backend()} ({device}), "
          f"Python {sys.version.split()[0]}")  # fmt: skip
    rows: list[dict] = []
    for name in args.models.split(","):
        case = CASES[name]
        if args.batch:
            case = Case(case.name, case.build, case.input_shape, args.batch, min(args.batch, case.slow_images * 4),
                        case.params)  # fmt: skip
        for row in bench_case(case, args.repeats, not args.no_peers, args.methods.split(",")):
            rows.append({**row, "backend": keras.backend.backend(), "device": device})
            write_csv(args.csv, rows)  # after every row: a long run stopped early keeps what it measured
    print(f"\nwritten: {args.csv}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
