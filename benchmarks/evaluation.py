"""What each evaluation metric costs per 1,000 maps, on the demo CNN (64x64x1) and a 64^3 3D CNN, in one process.

    python -m benchmarks.evaluation [--models demo,cnn3d] [--maps 32] [--repeats 3]

The per-map metrics exactly as the evaluation stage computes them (``xaipipe.evaluate``:
``evaluate_shard``'s functions on a batch of smooth random maps, blurred noise as heatmaps
are, and a mask of a quarter of the image): deletion and insertion together (one call, 20
steps, blur), ROAD MoRF and LeRF together, the four localization metrics, the two complexity
metrics; and the randomization test's cost per sample and stage for Grad-CAM (the maps of one
stage: rebuilding the method on the partly randomized model and explaining). Medians of
``--repeats`` runs after a warm-up, scaled to 1,000 maps; the forward passes that deletion and
insertion need (B * 2 * 21 images, the same chunks) are timed beside them as their limit.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from benchmarks.run import CASES  # noqa: E402


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: tracing, caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def smooth_maps(n: int, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    from xaipipe.faithfulness import gaussian_blur

    noise = np.random.default_rng(seed).random((n, *shape, 1))
    maps = np.stack([gaussian_blur(m)[..., 0] for m in noise])
    maps -= maps.min(axis=tuple(range(1, maps.ndim)), keepdims=True)
    return maps / maps.max(axis=tuple(range(1, maps.ndim)), keepdims=True)


def rows_for(name: str, n_maps: int, repeats: int) -> list[tuple[str, str, float, str]]:
    import keras

    from xaipipe import methods, metrics
    from xaipipe.autodiff import Scores
    from xaipipe.evaluate import COPIES_PER_CALL, CURVE_SCORE, ROAD_NOISE
    from xaipipe.faithfulness import DeletionInsertion, road_curves

    case = CASES[name]
    keras.utils.set_random_seed(0)
    model = case.build()
    spatial = case.input_shape[:-1]
    x = np.random.default_rng(1).standard_normal((n_maps, *case.input_shape)).astype(np.float32)
    maps = smooth_maps(n_maps, spatial)
    classes = Scores(model, CURVE_SCORE)(x).argmax(axis=1)
    mask = np.zeros(spatial, bool)
    mask[tuple(slice(0, s // 2) for s in spatial)] = True
    per_1000 = 1000 / n_maps
    rows = []

    curves = DeletionInsertion(model, CURVE_SCORE, 20, "blur", COPIES_PER_CALL)
    copies = np.repeat(x, 2 * 21, axis=0)
    scores = Scores(model, CURVE_SCORE)
    passes = median_seconds(lambda: scores(copies, batch_size=COPIES_PER_CALL), repeats)
    seconds = median_seconds(lambda: curves.curves(x, maps, classes), repeats)
    rows.append((name, "deletion + insertion", seconds * per_1000, f"{seconds / passes:.2f}x its {len(copies)} forward passes"))
    road_n = min(n_maps, 4 if len(spatial) == 3 else 16)
    road = median_seconds(
        lambda: road_curves(model, x[:road_n], maps[:road_n], classes[:road_n], CURVE_SCORE, 20, ROAD_NOISE,
                            orders=("morf", "lerf"), scores=scores),
        max(1, repeats // 2),
    )  # fmt: skip
    rows.append((name, "road_morf + road_lerf", road * 1000 / road_n, f"on {road_n} maps"))

    def localization():
        for m in maps:
            metrics.pointing_game(m, mask)
            metrics.relevance_mass(m, mask)
            metrics.relevance_rank(m, mask)
            metrics.roc_auc(m, mask)

    def complexity():
        for m in maps:
            metrics.sparseness(m)
            metrics.complexity(m)

    rows.append((name, "4 localization metrics", median_seconds(localization, repeats) * per_1000, ""))
    rows.append((name, "sparseness + complexity", median_seconds(complexity, repeats) * per_1000, ""))
    target = classes[:, None]
    stage = median_seconds(lambda: methods.create("gradcam", model).explain(x, target), repeats)
    rows.append((name, "randomization (Grad-CAM), per stage", stage * per_1000, "per 1,000 samples and cascade stage"))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="demo,cnn3d")
    parser.add_argument("--maps", type=int, default=32, help="maps per timed batch (3D: a quarter)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"{'model':8} {'metric':38} {'s per 1,000 maps':>17}  note")
    for name in args.models.split(","):
        n = args.maps if len(CASES[name].input_shape) == 3 else max(1, args.maps // 4)
        for model, metric, seconds, note in rows_for(name, n, args.repeats):
            print(f"{model:8} {metric:38} {seconds:17.1f}  {note}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
