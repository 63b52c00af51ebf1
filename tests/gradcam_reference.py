"""pytorch-grad-cam's maps for a PyTorch twin of a small Keras network, in a process without TensorFlow.

    python tests/gradcam_reference.py NETWORK.npz OUT.npz

Used by tests/test_cam_variants.py. Importing torchvision (which pytorch-grad-cam
imports) loads ``torch._dynamo``, which crashes (a segmentation fault) in a process
that has loaded TensorFlow first, as pytest's has; so the reference runs here, in a
process of its own. NETWORK.npz holds the Keras weights of conv1, conv2, conv3
(kernels (kh, kw, in, out)) and out (a dense kernel (in, out)), each with its bias,
the inputs ``x`` (B, H, W, C) and the ``classes`` (B, T). OUT.npz gets, for each case
``{key}_{layer}`` of :data:`CASES`, pytorch-grad-cam's maps (B, T, H, W), and for
Eigen-CAM the sign of its projection (``eigencam_agree``, see :func:`eigencam`).
Exit status 3: pytorch-grad-cam (or torch) cannot be imported.
"""

from __future__ import annotations

import sys

import numpy as np

#: (method key, Keras layer) of every comparison.
CASES = [
    ("hirescam", "conv2"),
    ("xgradcam", "conv2"),
    ("layercam", "conv2"),
    ("layercam", "conv1"),
    ("scorecam", "conv2"),
    ("eigencam", "conv2"),
]
#: The index of the torch ReLU module after each Keras conv layer (a Keras conv with activation="relu").
TORCH_TARGET = {"conv1": 1, "conv2": 3}


def twin(network: dict[str, np.ndarray]):
    """conv1 (3x3, stride 2, no padding), conv2 and conv3 (3x3, padding 1 = Keras 'same'), each + ReLU, global
    average pooling, a linear layer (the logits: the Keras model's softmax is not copied)."""
    import torch

    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, stride=2), torch.nn.ReLU(),
        torch.nn.Conv2d(4, 6, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(6, 5, 3, padding=1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(5, 3),
    )  # fmt: skip
    with torch.no_grad():
        for name, module in zip(
            ("conv1", "conv2", "conv3", "out"), (model[0], model[2], model[4], model[8]), strict=True
        ):
            kernel = network[f"{name}_kernel"]
            # Keras (kh, kw, in, out) -> torch (out, in, kh, kw); Keras Dense (in, out) -> torch Linear (out, in)
            module.weight.copy_(torch.from_numpy(kernel.transpose(3, 2, 0, 1) if kernel.ndim == 4 else kernel.T))
            module.bias.copy_(torch.from_numpy(network[f"{name}_bias"]))
    return model.eval()


def maps(cam, x, classes: np.ndarray) -> np.ndarray:
    """(B, T, H, W): one call of ``cam`` per target column (pytorch-grad-cam takes one target per sample)."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    columns = [
        cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in classes[:, t]])
        for t in range(classes.shape[1])
    ]
    return np.stack(columns, axis=1)


def eigencam(model, target: int, x, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(maps, agree): pytorch-grad-cam's EigenCAM maps, except for a sample whose projection (its
    ``get_2d_projection``) correlates negatively with the channel sum of the activations (``agree`` False):
    there its own pipeline (ReLU, ``scale_cam_image`` to the input size, then again) on the negated projection."""
    import torch
    from pytorch_grad_cam import EigenCAM
    from pytorch_grad_cam.utils.image import scale_cam_image
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

    result = maps(EigenCAM(model=model, target_layers=[model[target]]), x, classes)
    with torch.no_grad():
        activations = model[: target + 1](x).numpy()
    projection = get_2d_projection(activations)
    total = activations.sum(axis=1)
    agree = np.array([np.corrcoef(p.ravel(), s.ravel())[0, 1] > 0 for p, s in zip(projection, total, strict=True)])
    size = (x.shape[-1], x.shape[-2])  # (width, height), as pytorch-grad-cam passes it to cv2.resize
    flipped = scale_cam_image(scale_cam_image(np.maximum(-projection, 0.0), size))
    result[~agree] = flipped[~agree][:, None]
    return result, agree


def main(network_path: str, out_path: str) -> None:
    try:
        import pytorch_grad_cam
        import torch
    except ImportError as error:
        print(f"cannot import pytorch-grad-cam: {error}", file=sys.stderr)
        sys.exit(3)
    network = dict(np.load(network_path))
    model = twin(network)
    x = torch.from_numpy(network["x"].transpose(0, 3, 1, 2).copy())
    classes = network["classes"]
    upsampling = torch.nn.UpsamplingBilinear2d
    out: dict[str, np.ndarray] = {}
    for key, layer in CASES:
        target = TORCH_TARGET[layer]
        if key == "eigencam":
            out[f"{key}_{layer}"], out["eigencam_agree"] = eigencam(model, target, x, classes)
            continue
        cls = {
            "hirescam": pytorch_grad_cam.HiResCAM, "xgradcam": pytorch_grad_cam.XGradCAM,
            "layercam": pytorch_grad_cam.LayerCAM, "scorecam": pytorch_grad_cam.ScoreCAM,
        }[key]  # fmt: skip
        # Score-CAM's masks: torch's half-pixel bilinear upsampling instead of UpsamplingBilinear2d's aligned corners
        torch.nn.UpsamplingBilinear2d = (
            (lambda size: torch.nn.Upsample(size=size, mode="bilinear")) if key == "scorecam" else upsampling
        )
        cam = cls(model=model, target_layers=[model[target]])
        cam.batch_size = 64  # Score-CAM's masked copies per model call
        out[f"{key}_{layer}"] = maps(cam, x, classes)
    torch.nn.UpsamplingBilinear2d = upsampling
    np.savez(out_path, **out)


if __name__ == "__main__":
    main(*sys.argv[1:])
