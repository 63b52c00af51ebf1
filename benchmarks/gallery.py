"""What the report costs for a study of 1,000 samples and 3 methods: time and size, in one process.

    python -m benchmarks.gallery [--samples 1000] [--methods 3] [--shard-size 250] [--side 512]

Synthetic shards as the pipeline writes them (``side`` x ``side`` RGB images, smooth maps at
224 x 224), then each shard's pictures (:func:`xaipipe.thumbnails.thumbnail_shard`, one job per
shard in the pipeline: their sum and the time on 2 cores running two at once) and the pages
(:func:`xaipipe.report.build_report`), against the issue's limits: under 60 s on 2 cores and
under 100 MB.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

LIMIT_SECONDS = 60.0
LIMIT_MB = 100.0


def write_study(root: Path, n: int, methods: list[str], shard_size: int, side: int) -> list[str]:
    from xaipipe import h5store
    from xaipipe.samples import shard_names

    rng = np.random.default_rng(0)
    shards = shard_names(n, shard_size)
    for s, shard in enumerate(shards):
        ids = [f"case_{k:05d}.png" for k in range(s * shard_size, min(n, (s + 1) * shard_size))]
        m = len(ids)
        with h5store.preprocessed_writer(
            root / f"preprocessed/shard-{shard}.h5", ids, [k % 3 for k in range(m)], (224, 224, 3),
            spatial_dims=2, class_names=["a", "b", "c"], preprocessing={}, preprocess_overlay=True,
        ) as writer:  # fmt: skip
            for row in range(m):
                image = cv2.GaussianBlur(rng.integers(0, 256, (side, side, 3), dtype=np.uint8), (0, 0), 3)
                writer.write(row, np.zeros((224, 224, 3), np.float32), image)
        probabilities = rng.dirichlet(np.ones(3), m).astype(np.float32)
        h5store.write_predictions(
            root / f"predictions/shard-{shard}.h5", ids, np.arange(m) % 3, probabilities, class_names=["a", "b", "c"]
        )
        for method in methods:
            maps = np.stack([cv2.GaussianBlur(rng.random((224, 224)).astype(np.float32), (0, 0), 12) for _ in range(m)])
            maps = (maps - maps.min(axis=(1, 2), keepdims=True)) / np.ptp(maps, axis=(1, 2), keepdims=True)
            path = root / f"heatmaps/{method}/shard-{shard}.h5"
            with h5store.heatmaps_writer(path, ids, m, (224, 224), method=method) as out:
                out.write(slice(0, m), np.arange(m), probabilities.argmax(axis=1), maps)
    return shards


def folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def main(argv: list[str] | None = None) -> int:
    from xaipipe.report import build_report
    from xaipipe.thumbnails import thumbnail_shard

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--methods", type=int, default=3)
    parser.add_argument("--shard-size", type=int, default=250)
    parser.add_argument("--side", type=int, default=512)
    args = parser.parse_args(argv)
    methods = ["gradcam", "saliency", "integratedgradients"][: args.methods]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shards = write_study(root, args.samples, methods, args.shard_size, args.side)
        report = root / "report"
        per_shard = []
        for shard in shards:
            start = time.perf_counter()
            thumbnail_shard(
                root / f"preprocessed/shard-{shard}.h5",
                {m: root / f"heatmaps/{m}/shard-{shard}.h5" for m in methods},
                report, shard, report / f"shards/shard-{shard}.json",
            )  # fmt: skip
            per_shard.append(time.perf_counter() - start)
        (root / "failures.tsv").write_text("sample\tstage\tkind\treason\n")
        (root / "model.sha256").write_text("0" * 64 + "  model.keras\n")
        config = {"render": {"colormap": "jet"}, "model": {"path": "model.keras"}, "methods": methods}
        start = time.perf_counter()
        build_report(
            [report / f"shards/shard-{s}.json" for s in shards], [root / f"predictions/shard-{s}.h5" for s in shards],
            methods, [], None, None, [], root / "failures.tsv", root / "model.sha256", config, report,
        )  # fmt: skip
        pages = time.perf_counter() - start
        size = folder_mb(report)
        # two pictures jobs at a time on 2 cores (the shards' jobs are independent), then the pages
        two_cores = sum(sorted(per_shard, reverse=True)[::2]) + pages
        print(f"study: {args.samples} samples of {args.side}x{args.side} RGB, {len(methods)} methods, {len(shards)} shards")
        print(f"pictures: {sum(per_shard):6.1f} s in all ({', '.join(f'{t:.1f}' for t in per_shard)} s per shard)")
        print(f"pages:    {pages:6.1f} s (index.html {(report / 'index.html').stat().st_size / 1e6:.2f} MB)")
        print(f"on 2 cores: {two_cores:6.1f} s  (limit {LIMIT_SECONDS:.0f} s: {two_cores / LIMIT_SECONDS:.2f}x)")
        print(f"report:   {size:6.1f} MB  (limit {LIMIT_MB:.0f} MB: {size / LIMIT_MB:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
