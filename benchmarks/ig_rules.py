"""Completeness error of integrated gradients against the number of steps, for each quadrature rule.

    PYTHONPATH=. python -m benchmarks.ig_rules [--models demo,resnet50] [--steps 4,8,16,32,50,64]
                                               [--images demo=32,resnet50=3]

By completeness the attributions of an input x sum to S(x) - S(x'); what a quadrature rule
misses shows as the completeness error

    |sum_i IG_i - (S(x) - S(x'))| / |S(x) - S(x')|

reported per rule (:data:`xaipipe.methods.IG_RULES`) and ``steps`` as its median and 90th
percentile over the images, with the gradient passes per image and target it costs (``steps``,
``steps`` + 1 for the trapezoid rule: the registry's count). S is the method's default score, the
logit of the class the model predicts (``score: logits``, ``targets: argmax``).

The attributions are the method's own: ``(x - x') * PathGradients.integral(...)`` at the points
and weights of :func:`xaipipe.methods.integratedgradients.quadrature`, as
``IntegratedGradients`` computes them, with one compiled function per model for every rule and
step count (a method object per setting would trace the model again each time).

The models:

- ``demo``: the demo CNN (:func:`xaipipe.demo.build_demo_model`, 64x64x1, the demo config's
  preprocessing) trained here briefly from a fixed seed on the demo's image generator (an
  untrained network is nearly linear in its input, too easy a test), explained on fresh demo
  images from the baseline of the demo config, -1.0 (black after the ``tf`` standardization);
- ``resnet50``: ``keras.applications.ResNet50(weights=None)`` at 224x224x3 with 3 classes
  (seeded), on uniform-noise images through ResNet's ``preprocess_input``, from the baseline
  ``black`` (each image's per-channel minimum, near ResNet's preprocessed black). Not from zeros:
  the untrained ResNet50 has zero biases and identity batch normalization, so it is positively
  homogeneous, S(a x) = a S(x), its gradient is constant along every path from 0 and every rule
  is exact there with one step (measured: error 0.0000 at 4 steps).

Both are ReLU networks: S is piecewise linear along the path and its derivative piecewise
constant, so no rule's polynomial order helps beyond the kinks.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import tempfile
import time
from collections.abc import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

DEMO_PREPROCESSING = {"size": [64, 64], "channels": 1, "standardize": "tf"}  # config/config.yaml's
DEMO_BASELINE = -1.0  # config/config.yaml's integrated gradients baseline
DEMO_IMAGE_SIZE, DEMO_SEED = 192, 42  # config/config.yaml's demo


def demo_case(n_images: int) -> tuple[object, np.ndarray, float | str, str]:
    """The demo CNN trained briefly (300 images per class, 12 epochs, seed 42), fresh demo images, baseline -1."""
    import keras

    from xaipipe.demo import CLASS_NAMES, synthesize, train_demo_model
    from xaipipe.preprocess import Preprocessing

    preprocessing = Preprocessing.from_config(DEMO_PREPROCESSING)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.keras")
        metrics = train_demo_model(
            path, preprocessing, DEMO_IMAGE_SIZE, DEMO_SEED, n_train_per_class=300, n_val_per_class=50, epochs=12
        )
        model = keras.models.load_model(path)
    rng = np.random.default_rng(DEMO_SEED + 100)  # other images than the training and validation sets
    kinds = [CLASS_NAMES[k % len(CLASS_NAMES)] for k in range(n_images)]
    x = np.stack([preprocessing.model_input(synthesize(kind, DEMO_IMAGE_SIZE, rng)[0]) for kind in kinds])
    note = f"demo CNN trained 12 epochs on 900 images (val accuracy {metrics['val_accuracy']:.2f}), baseline -1.0"
    return model, x, DEMO_BASELINE, note


def resnet50_case(n_images: int) -> tuple[object, np.ndarray, float | str, str]:
    """Untrained ResNet50 (seed 0), uniform-noise images after ResNet's preprocessing, baseline black."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.applications.ResNet50(weights=None, input_shape=(224, 224, 3), classes=3)
    pixels = np.random.default_rng(1).uniform(0, 255, (n_images, 224, 224, 3)).astype(np.float32)
    x = keras.applications.resnet50.preprocess_input(pixels)
    return model, x, "black", "ResNet50(weights=None), 3 classes, noise images, baseline black"


CASES: dict[str, tuple[Callable[[int], tuple[object, np.ndarray, float | str, str]], int, int]] = {
    # name -> (build, images, path points per model call)
    "demo": (demo_case, 32, 64),
    "resnet50": (resnet50_case, 3, 16),
}


def completeness_errors(model, x: np.ndarray, baseline: float | str, chunk: int, steps: list[int]) -> list[dict]:
    """One row per rule and steps: passes, median and 90th percentile of the completeness error, seconds per image."""
    from xaipipe.autodiff import PathGradients, Scores
    from xaipipe.methods import GRADIENT_PASS, IG_RULES, passes_per_sample
    from xaipipe.methods.integratedgradients import baseline_for, quadrature

    baselines = np.ascontiguousarray(np.broadcast_to(baseline_for(x, baseline), x.shape))
    scores = Scores(model, "logits")
    logits = scores(x)
    classes = logits.argmax(axis=1)[:, None]
    expected = np.take_along_axis(logits - scores(baselines), classes, axis=1)[:, 0].astype(np.float64)
    gradients = PathGradients(model, "logits")
    for n in (2, 3):  # traced for one shape, then for any (TensorFlow's reduce_retracing): not in the timings
        gradients.integral(x[:1], baselines[:1], classes[:1], *quadrature("midpoint", n), chunk)
    rows = []
    for rule in IG_RULES:
        for n in steps:
            start = time.perf_counter()
            integral = gradients.integral(x, baselines, classes, *quadrature(rule, n), chunk)
            seconds = (time.perf_counter() - start) / len(x)
            total = ((x - baselines)[:, None].astype(np.float64) * integral).reshape(len(x), -1).sum(axis=1)
            error = np.abs(total - expected) / np.abs(expected)
            passes = passes_per_sample("integratedgradients", {"steps": n, "rule": rule}, x.shape[1:-1]) / GRADIENT_PASS
            rows.append(
                {
                    "rule": rule,
                    "steps": n,
                    "passes": int(passes),
                    "median": float(np.median(error)),
                    "p90": float(np.percentile(error, 90)),
                    "seconds": seconds,
                }
            )
            print(f"  {rule:15s} {n:3d} steps: median {rows[-1]['median']:.4f}  p90 {rows[-1]['p90']:.4f}", flush=True)
    return rows


def table(name: str, note: str, n_images: int, rows: list[dict]) -> str:
    """A markdown table of the rows, and the fewest passes per rule that reach 5% and midpoint-50's median."""
    lines = [
        f"{name}: {note}; {n_images} images, completeness error |sum IG - (S(x) - S(x'))| / |S(x) - S(x')|",
        "",
        "| rule | steps | gradient passes | median error | 90th percentile | s/image |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['rule']} | {row['steps']} | {row['passes']} | {row['median']:.4f} | {row['p90']:.4f} "
            f"| {row['seconds']:.2f} |"
        )
    today = next((r for r in rows if r["rule"] == "midpoint" and r["steps"] == 50), None)
    lines.append("")
    for rule in dict.fromkeys(r["rule"] for r in rows):
        own = [r for r in rows if r["rule"] == rule]
        five = min((r["passes"] for r in own if r["median"] <= 0.05), default=None)
        text = f"{rule}: median <= 5% from {five} passes" if five else f"{rule}: median > 5% at every step count"
        if today is not None:
            same = min((r["passes"] for r in own if r["median"] <= today["median"]), default=None)
            text += f"; median <= midpoint-50's ({today['median']:.4f}) from {same} passes" if same else ""
        lines.append(f"- {text}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="demo,resnet50")
    parser.add_argument("--steps", default="4,8,16,32,50,64")
    parser.add_argument("--images", default="", help="e.g. demo=32,resnet50=3 (the defaults)")
    args = parser.parse_args(argv)
    steps = [int(s) for s in args.steps.split(",")]
    images = {k: int(v) for k, v in (item.split("=") for item in args.images.split(",") if item)}
    import keras

    print(
        f"# {datetime.datetime.now(datetime.UTC):%a %b %d %Y %H:%M} UTC, {platform.node()}, keras {keras.__version__}"
    )
    for name in args.models.split(","):
        build, default_images, chunk = CASES[name]
        n_images = images.get(name, default_images)
        model, x, baseline, note = build(n_images)
        print(f"{name}:", flush=True)
        rows = completeness_errors(model, x, baseline, chunk, steps)
        print(table(name, note, n_images, rows) + "\n", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
