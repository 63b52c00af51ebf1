"""The PyTorch peers of xaipipe's newer methods, timed on a PyTorch twin of a benchmark model, in a process of its own.

    python -m benchmarks.torch_peers '{"method": "hirescam", "model": "resnet50", "batch": 16, "images": 16,
                                       "repeats": 3, "layer": "conv5_block3_out", "samples": null, "chunk_size": 64}'

Called by :mod:`benchmarks.run` for each row with a PyTorch peer: pytorch-grad-cam 1.5's
HiResCAM, XGradCAM, LayerCAM, ScoreCAM and EigenCAM, and Captum's InputXGradient and
NoiseTunnel (SmoothGrad, VarGrad) around Saliency. pytorch-grad-cam imports torchvision,
which crashes in a process that has loaded TensorFlow (tests/gradcam_reference.py), hence
the process of its own. The twins have the Keras models' architecture (torchvision's ResNet50
with 3 classes; the demo CNN and the 3D CNN layer by layer, NCHW/NCDHW) and random weights:
the time does not depend on the weights. The peer is timed interleaved with the twin's own
limit pass (a forward pass under ``no_grad``, or a forward and backward pass to the input) at
the benchmark's batch, after a warm-up; printed as one JSON line: the peer's ms per image
and its time over the passes it needs (the same count as xaipipe's row).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections import OrderedDict

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402

from benchmarks.run import interleaved_medians  # noqa: E402  (imports neither TensorFlow nor Keras)

#: Keras layer -> the twin's module whose output it is (a block's output, or the ReLU after a convolution).
RESNET50_LAYERS = {"conv2_block3_out": ("layer1", -1), "conv3_block4_out": ("layer2", -1),
                   "conv4_block6_out": ("layer3", -1), "conv5_block3_out": ("layer4", -1)}  # fmt: skip


def twin(model: str):
    """(the PyTorch twin of the benchmark case ``model``, its input shape (C, *spatial))."""
    from torch import nn

    if model == "resnet50":
        import torchvision

        return torchvision.models.resnet50(weights=None, num_classes=3), (3, 224, 224)
    if model == "demo":
        layers = OrderedDict()
        for name, (cin, cout, pool) in {"conv1": (1, 16, True), "conv2": (16, 32, True), "conv3": (32, 48, False),
                                        "conv4": (48, 48, False)}.items():  # fmt: skip
            layers[name] = nn.Conv2d(cin, cout, 3, padding=1)
            layers[f"{name}_relu"] = nn.ReLU()
            if pool:
                layers[f"{name}_pool"] = nn.MaxPool2d(2)
        layers.update(gap=nn.AdaptiveAvgPool2d(1), flat=nn.Flatten(), classes=nn.Linear(48, 3))
        return nn.Sequential(layers), (1, 64, 64)
    if model == "cnn3d":
        layers = OrderedDict()
        for name, (cin, cout) in {"conv1": (1, 8), "conv2": (8, 16), "conv3": (16, 32)}.items():
            layers.update({name: nn.Conv3d(cin, cout, 3, padding=1), f"{name}_relu": nn.ReLU(),
                           f"{name}_pool": nn.MaxPool3d(2)})  # fmt: skip
        layers.update(last_conv=nn.Conv3d(32, 32, 3, padding=1), last_conv_relu=nn.ReLU(),
                      gap=nn.AdaptiveAvgPool3d(1), flat=nn.Flatten(), classes=nn.Linear(32, 3))  # fmt: skip
        return nn.Sequential(layers), (1, 64, 64, 64)
    raise ValueError(f"no PyTorch twin of {model!r}")


def target_module(net, model: str, layer: str):
    """The twin's module that stands for the Keras target layer ``layer``."""
    if model == "resnet50":
        block, index = RESNET50_LAYERS[layer]
        return getattr(net, block)[index]
    return getattr(net, f"{layer}_relu")


def peer_call(settings: dict, net, layer, x):
    """(the peer's call on ``x``, the passes it needs per image, whether they are forward + backward passes)."""
    import torch

    method = settings["method"]
    target = torch.zeros(len(x), dtype=torch.long)
    if method in ("hirescam", "xgradcam", "layercam", "scorecam", "eigencam"):
        import pytorch_grad_cam
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        cls = {"hirescam": pytorch_grad_cam.HiResCAM, "xgradcam": pytorch_grad_cam.XGradCAM,
               "layercam": pytorch_grad_cam.LayerCAM, "scorecam": pytorch_grad_cam.ScoreCAM,
               "eigencam": pytorch_grad_cam.EigenCAM}[method]  # fmt: skip
        cam = cls(model=net, target_layers=[layer])
        targets = [ClassifierOutputTarget(0) for _ in range(len(x))]
        if method == "scorecam":
            cam.batch_size = settings["chunk_size"]  # masked copies per forward pass, as xaipipe's chunk_size
            with torch.no_grad():
                channels = int(_activations(net, layer, x[:1]).shape[1])
            return (lambda: cam(input_tensor=x, targets=targets)), channels + 1, False
        return (lambda: cam(input_tensor=x, targets=targets)), 1, method != "eigencam"
    from captum.attr import InputXGradient, NoiseTunnel, Saliency

    if method == "inputxgradient":
        explainer = InputXGradient(net)
        return (lambda: explainer.attribute(x.clone().requires_grad_(True), target=target)), 1, True
    tunnel, samples = NoiseTunnel(Saliency(net)), settings["samples"]
    return (
        lambda: tunnel.attribute(x.clone().requires_grad_(True), nt_type=method, nt_samples=samples,
                                 nt_samples_batch_size=settings["chunk_size"], stdevs=0.15, target=target, abs=False)
    ), samples, True  # fmt: skip


def _activations(net, layer, x):
    """The output of ``layer`` for ``x``."""
    seen = []
    handle = layer.register_forward_hook(lambda module, inputs, output: seen.append(output))
    try:
        net(x)
    finally:
        handle.remove()
    return seen[0]


def measure(settings: dict) -> dict:
    import torch

    torch.manual_seed(0)
    net, shape = twin(settings["model"])
    net.eval()
    x = torch.tensor(np.random.default_rng(0).normal(size=(settings["batch"], *shape)).astype(np.float32))

    def forward():
        with torch.no_grad():
            net(x)

    def forward_backward():  # the gradient to the input only (the weights' are not asked for)
        batch = x.clone().requires_grad_(True)
        torch.autograd.grad(net(batch)[:, 0].sum(), batch)

    layer = target_module(net, settings["model"], settings["layer"]) if settings.get("layer") else None
    run, passes, gradients = peer_call(settings, net, layer, x[: settings["images"]])
    limit_pass = forward_backward if gradients else forward
    with open(os.devnull, "w") as quiet, contextlib.redirect_stderr(quiet):  # ScoreCAM's progress bars
        t_peer, t_limit = interleaved_medians([run, limit_pass], settings["repeats"])
    limit = t_limit / len(x) * passes
    return {"peer_ms": t_peer / settings["images"] * 1e3, "limit_ms": limit * 1e3,
            "peer_over_limit": t_peer / settings["images"] / limit, "torch": torch.__version__}  # fmt: skip


def main(argv: list[str]) -> int:
    settings = json.loads(argv[0])
    try:
        result = measure(settings)
    except ImportError as error:
        result = {"error": f"not installed: {error.name}"}
    except Exception as error:  # a peer that fails is reported, not fatal
        result = {"error": f"fails: {type(error).__name__}: {str(error)[:120]}"}
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
