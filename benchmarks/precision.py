"""Every method in bfloat16 (or float16) next to the same method in float32, in one process.

    python -m benchmarks.precision [--models resnet50] [--methods gradcam,saliency,...] [--precision bfloat16]
                                   [--float32-parts early/4,late]

For each method: its time per image in float32 and with ``precision`` (the method run on a
mixed-precision copy of the model, :func:`xaipipe.model.in_precision`), interleaved on the
same inputs (:func:`benchmarks.run.interleaved_medians`), their ratio against the issue's
limit (0.75), and how close the maps are: Pearson r of the raw maps of every image together
and of the worst image, against the limit 0.99. The first line compares the model's class
probabilities (largest difference). The methods' settings are the speed benchmark's
(:mod:`benchmarks.run`: fewer samples, masks or channels where a default would take minutes
on a CPU); ratios are what count on a shared machine. Each row also says how many of the
model's layers compute in float32 (the input's and the classifier head's, and those of the
parts the method declares, :attr:`xaipipe.methods.base.Method.float32_parts`);
``--float32-parts`` replaces every method's parts with the given ones (``none``: the head
only), for the trade-off between time and r.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from benchmarks.run import BENCH_PARAMS, CASES, SLOW, device_name, interleaved_medians

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


def float32_layers(model) -> tuple[int, int]:
    """How many of ``model``'s layers (nested models' included, input layers not) compute in float32, of all."""
    import keras

    from xaipipe.model import _layers

    layers = [layer for layer in _layers(model) if not isinstance(layer, keras.layers.InputLayer)]
    return sum(layer.compute_dtype == "float32" for layer in layers), len(layers)


def bench(case_name: str, method_keys: list[str], precision: str, repeats: int, parts: tuple[str, ...] | None) -> None:
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
        if parts is None:  # the method's own float32 parts
            low = methods.create(key, model, precision=precision, **params)
        else:  # made on a copy with the given parts, as the constructor makes it on a copy with the method's own
            low = methods.create(key, in_precision(model, precision, parts), **params)
            low.precision = precision
        kept, n_layers = float32_layers(low.model)
        t_full, t_low = interleaved_medians(
            [lambda: full.explain(images, classes), lambda: low.explain(images, classes)], 1 if key in SLOW else repeats
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
            f"  {name:44s} float32 {t_full / len(images) * 1e3:9.2f} ms/img  {precision} {t_low / len(images) * 1e3:9.2f}"
            f" ms/img  ratio {ratio:5.2f} (limit {TIME_LIMIT})  r {r_all:.4f}, worst image {r_worst:.4f}"
            f" (limit {R_LIMIT})  {verdict}  float32 layers {kept}/{n_layers}",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="resnet50", help="comma-separated: " + ",".join(CASES))
    parser.add_argument("--methods", default=DEFAULT_METHODS)
    parser.add_argument("--precision", default="bfloat16", choices=("bfloat16", "float16"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--float32-parts", default=None, help="comma-separated parts kept in float32 for every method, 'none': the "
        "head only (default: each method's own); see xaipipe.model.in_precision"
    )  # fmt: skip
    args = parser.parse_args(argv)
    parts = None if args.float32_parts is None else tuple(p for p in args.float32_parts.split(",") if p != "none")
    print(f"xaipipe precision benchmark: {device_name()}")
    for case in args.models.split(","):
        if parts is not None:
            print(f"float32 parts of every method: {', '.join(parts) or 'none (the classifier head only)'}")
        bench(case, args.methods.split(","), args.precision, args.repeats, parts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
