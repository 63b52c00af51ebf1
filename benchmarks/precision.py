"""Every method in bfloat16 (or float16) next to the same method in float32, in one process.

    python -m benchmarks.precision [--models resnet50] [--methods gradcam,saliency,...] [--precision bfloat16]
                                   [--repeats 3] [--slow-repeats 1] [--float32-parts early/4,late]
    python -m benchmarks.precision --demo-localization [--methods ...]

For each method: its time per image in float32 and with ``precision`` (the method run on a
mixed-precision copy of the model, :func:`xaipipe.model.in_precision`), interleaved on the
same inputs, their ratio against the issue's limit (0.75) and the ratio of their CPU times
(the process's, which other processes on a shared machine disturb less than the wall time),
and how close the maps are: Pearson r of the raw maps of every image together and of the
worst image, against the limit 0.99. The first line compares the model's class
probabilities (largest difference). The methods' settings are the speed benchmark's
(:mod:`benchmarks.run`: fewer samples, masks or channels where a default would take minutes
on a CPU), timed ``--repeats`` times, the slow ones (``benchmarks.run.SLOW``) ``--slow-repeats``
times; ratios are what count on a shared machine. Each row also says how many of the model's
layers compute in float32; ``--float32-parts`` keeps those parts of the network in float32
too (``late``, ``early/N``: :func:`xaipipe.model.in_precision`), for the trade-off between time
and r.

``--demo-localization``: the shipped config's demo instead (its images, preprocessing and
method settings, the demo CNN trained as the workflow trains it): each method's pointing-game
hits in float32 and in ``precision`` on the samples with a lesion, and the images whose hit
differs."""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np

from benchmarks.run import BENCH_PARAMS, CASES, SLOW, device_name

#: The issue's limits: reduced-precision time over float32 time, and Pearson r of the maps.
TIME_LIMIT, R_LIMIT = 0.75, 0.99
DEFAULT_METHODS = (
    "gradcam,gradcam++,hirescam,xgradcam,layercam,eigencam,scorecam,guidedgradcam,saliency,guidedbackprop,"
    "inputxgradient,smoothgrad,integratedgradients,occlusion,rise,limepro"
)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    if a.std() == 0 or b.std() == 0:  # a constant map (a CAM of a silent layer): r is 1 where both are the same
        return 1.0 if np.allclose(a, b, rtol=0, atol=1e-6 * max(1.0, np.abs(a).max())) else float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def interleaved_wall_and_cpu(fns: list[Callable[[], object]], repeats: int) -> tuple[list[float], list[float]]:
    """Median wall and CPU (process) time of each of ``fns``, run in turn after a warm-up of each, as
    :func:`benchmarks.run.interleaved_medians` runs them."""
    for fn in fns:
        fn()
    wall: list[list[float]] = [[] for _ in fns]
    cpu: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            wall[k].append(time.perf_counter() - start)
            cpu[k].append(time.process_time() - start_cpu)
    return [statistics.median(t) for t in wall], [statistics.median(t) for t in cpu]


def float32_layers(model) -> tuple[int, int]:
    """How many of ``model``'s layers (nested models' included, input layers not) compute in float32, of all."""
    import keras

    from xaipipe.model import _layers

    layers = [layer for layer in _layers(model) if not isinstance(layer, keras.layers.InputLayer)]
    return sum(layer.compute_dtype == "float32" for layer in layers), len(layers)


def bench(
    case_name: str, method_keys: list[str], precision: str, repeats: int, slow_repeats: int, parts: tuple[str, ...]
) -> None:
    import keras

    from xaipipe import methods
    from xaipipe.model import in_precision

    case = CASES[case_name]
    keras.utils.set_random_seed(0)
    model = case.build()
    x = np.random.default_rng(0).normal(size=(case.batch, *case.input_shape)).astype(np.float32)
    reduced = methods.create("gradcam", model, precision=precision).model  # the copy every method below makes
    difference = np.abs(reduced.predict(x, verbose=0) - model.predict(x, verbose=0)).max()
    print(f"\n{case_name}: batch {case.batch}, {precision} vs float32; class probabilities differ by <= {difference:.4f}")
    for key in method_keys:
        params = {**BENCH_PARAMS.get(key, {}), **case.params.get(key, {})}
        n_images = params.pop("images", case.slow_images if key in SLOW else len(x))
        if "noise" in params:
            params["noise"] = {**methods.defaults(key)["noise"], **params["noise"]}
        images = x[:n_images]
        classes = np.zeros((len(images), 1), np.int32)
        full = methods.create(key, model, **params)
        if not parts:
            low = methods.create(key, model, precision=precision, **params)
        else:  # made on a copy with the parts, as the constructor makes it on a copy without
            low = methods.create(key, in_precision(model, precision, parts), **params)
            low.precision = precision
        kept, n_layers = float32_layers(low.model)
        (t_full, t_low), (cpu_full, cpu_low) = interleaved_wall_and_cpu(
            [lambda: full.explain(images, classes), lambda: low.explain(images, classes)],
            slow_repeats if key in SLOW else repeats,
        )
        raw_full, _ = full.explain(images, classes)
        raw_low, _ = low.explain(images, classes)
        r_all = pearson(raw_full, raw_low)
        r_worst = min(pearson(a, b) for a, b in zip(raw_full, raw_low))
        ratio = t_low / t_full
        verdict = "ok" if ratio <= TIME_LIMIT and r_worst >= R_LIMIT else "over"
        shown = ", ".join(f"{k}={v}" for k, v in params.items() if k in ("layer", "num_masks", "num_samples", "steps"))
        name = f"{key} ({shown})" if shown else key
        print(
            f"  {name:44s} float32 {t_full / len(images) * 1e3:9.2f} ms/img"
            f"  {precision} {t_low / len(images) * 1e3:9.2f} ms/img  ratio {ratio:5.2f} (limit {TIME_LIMIT};"
            f" cpu {cpu_low / cpu_full:.2f})  r {r_all:.4f}, worst image {r_worst:.4f}"
            f" (limit {R_LIMIT})  {verdict}  float32 layers {kept}/{n_layers}",
            flush=True,
        )


def demo_localization(method_keys: list[str], precision: str) -> None:
    """The shipped config's demo (config/config.yaml: its images, preprocessing and method settings; the demo CNN
    trained as the workflow trains it) in float32 and ``precision``: pointing-game hits of each method's normalized
    maps on the samples with a lesion, the targets the predicted classes, and the images whose hit differs."""
    import tempfile
    from pathlib import Path

    import keras
    import yaml

    from xaipipe import methods, metrics
    from xaipipe.demo import sample_ids, synthesize, train_demo_model
    from xaipipe.preprocess import Preprocessing

    config = yaml.safe_load((Path(__file__).resolve().parent.parent / "config" / "config.yaml").read_text())
    settings = {}
    for entry in config["methods"]:
        entry = {"name": entry} if isinstance(entry, str) else dict(entry)
        entry.pop("label", None)
        settings[methods.canonical_name(entry.pop("name"))] = entry
    demo = config["demo"]
    preprocessing = Preprocessing.from_config(config["preprocessing"])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.keras"
        trained = train_demo_model(path, preprocessing, demo["image_size"], demo["seed"])
        model = keras.saving.load_model(path, compile=False)
    rng = np.random.default_rng(demo["seed"])  # as the workflow writes the demo's images (xaipipe.demo.write_demo_data)
    pairs = [synthesize(sample.split("/")[0], demo["image_size"], rng) for sample in sample_ids(demo["n_per_class"])]
    x = np.stack([preprocessing.model_input(image) for image, _ in pairs]).astype(np.float32)
    size = tuple(preprocessing.size)
    masks = [metrics.resize_mask(mask > 0, size) for _, mask in pairs]
    lesion = [i for i, mask in enumerate(masks) if mask.any()]
    classes = model.predict(x, verbose=0).argmax(axis=1)[:, None].astype(np.int32)
    print(
        f"\ndemo: {len(x)} images, {len(lesion)} with a lesion; the demo CNN (validation accuracy "
        f"{trained['val_accuracy']:.3f}); pointing game (tolerance 0) of the predicted class's map, "
        f"float32 vs {precision}"
    )
    for key in method_keys:
        params = settings.get(key, {})
        hits = {}
        maps = {}
        for chosen in ("float32", precision):
            raw, normalized = methods.create(key, model, precision=chosen, **params).explain(x, classes)
            maps[chosen] = raw[:, 0]
            hits[chosen] = [metrics.pointing_game(normalized[i, 0], masks[i]) for i in lesion]
        differ = sum(a != b for a, b in zip(hits["float32"], hits[precision]))
        r_worst = min(pearson(a, b) for a, b in zip(maps["float32"], maps[precision]))
        shown = ", ".join(f"{k}={v}" for k, v in params.items())
        name = f"{key} ({shown})" if shown else key
        print(
            f"  {name:44s} hits float32 {sum(hits['float32']):3d}/{len(lesion)}  {precision} "
            f"{sum(hits[precision]):3d}/{len(lesion)}  images whose hit differs {differ}  worst image r {r_worst:.4f}",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="resnet50", help="comma-separated: " + ",".join(CASES))
    parser.add_argument("--methods", default=DEFAULT_METHODS)
    parser.add_argument("--precision", default="bfloat16", choices=("bfloat16", "float16"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--slow-repeats", type=int, default=1, help="repeats of the slow methods (benchmarks.run.SLOW)")
    parser.add_argument(
        "--float32-parts", default="", help="comma-separated parts of the network kept in float32 too: late, early/N "
        "(xaipipe.model.in_precision)"
    )  # fmt: skip
    parser.add_argument("--demo-localization", action="store_true", help="the demo's pointing game instead")
    args = parser.parse_args(argv)
    parts = tuple(p for p in args.float32_parts.split(",") if p)
    print(f"xaipipe precision benchmark: {device_name()}")
    if args.demo_localization:
        demo_localization(args.methods.split(","), args.precision)
        return 0
    if parts:
        print(f"float32 parts kept by every method: {', '.join(parts)}")
    for case in args.models.split(","):
        bench(case, args.methods.split(","), args.precision, args.repeats, args.slow_repeats, parts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
