"""Bytes of the stored maps, written through the real writers, as they were (float32) and as they are now.

    python -m benchmarks.storage

HDF5 heatmaps files (``h5store.heatmaps_writer``): 64 maps of 192x192 and 4 volumes of 64^3,
Grad-CAM-like (a 6x6 / 4^3 grid of ReLU'd noise upsampled bilinearly) and saliency-like (per-pixel
noise over a smooth envelope, tiny values), min-max normalized; "before" is the layout of
schema_version 1 (raw and normalized maps as float32), "after" today's (the raw maps and the
normalization's two numbers per map, from which the normalized maps are derived exactly). NIfTI maps (``writers.write_map``): one
64^3 map of each kind resized to a 160x192x192 source volume, as float32 before, as 8-bit levels
with ``scl_slope`` now. Prints bytes per input pixel (HDF5) or per source voxel (NIfTI), the ratio
and its target, and the write time per map (for today's layout also as HDF5's own gzip filter wrote it before
the writer deflated the chunks itself with libdeflate). Synthetic maps: real ones (smoother or noisier)
compress differently, so the ratios are what counts.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np

from xaipipe import h5store, writers
from xaipipe.maps import normalization_params, normalize_maps, resize_linear

HDF5_TARGET, NIFTI_TARGET = 0.5, 1.0  # x today's bytes; B per source voxel


def gradcam_like(rng: np.random.Generator, n: int, shape: tuple[int, ...]) -> np.ndarray:
    coarse = np.maximum(rng.normal(size=(n, *(max(4, s // 32) for s in shape))), 0).astype(np.float32)
    return resize_linear(coarse * 3.7, shape)


def saliency_like(rng: np.random.Generator, n: int, shape: tuple[int, ...]) -> np.ndarray:
    envelope = 0.2 + gradcam_like(rng, n, shape)
    return np.abs(rng.normal(size=(n, *shape))).astype(np.float32) * envelope * 1e-3


KINDS: dict[str, Callable[[np.random.Generator, int, tuple[int, ...]], np.ndarray]] = {
    "Grad-CAM-like": gradcam_like,
    "saliency-like": saliency_like,
}


def heatmaps_bytes_v1(folder: Path, raw: np.ndarray) -> tuple[int, int, float]:
    """As :func:`heatmaps_bytes`, for the layout of schema_version 1 (raw and normalized maps as float32, gzip 1,
    shuffled, a chunk per map), written with h5py as the writer wrote it then."""
    path = folder / "maps-v1.h5"
    start = time.perf_counter()
    with h5py.File(path, "w") as f:
        f.attrs.update(schema=h5store.HEATMAPS, schema_version=1)
        f.create_dataset("ids", data=np.array([f"s{i}" for i in range(len(raw))], dtype=object),
                         dtype=h5py.string_dtype())  # fmt: skip
        f.create_dataset("sample_index", data=np.arange(len(raw), dtype=np.int32))
        f.create_dataset("class_index", data=np.zeros(len(raw), np.int32))
        datasets = [f.create_dataset(name, shape=raw.shape, dtype=np.float32, chunks=(1, *raw.shape[1:]),
                                     compression="gzip", compression_opts=1, shuffle=True)
                    for name in ("raw", "normalized")]  # fmt: skip
        for lo in range(0, len(raw), 16):  # batches, as the heatmaps stage wrote them
            batch = raw[lo : lo + 16]
            datasets[0][lo : lo + len(batch)] = batch
            datasets[1][lo : lo + len(batch)] = normalize_maps(batch)
    seconds = (time.perf_counter() - start) / len(raw)
    with h5py.File(path) as f:
        normalized = f["normalized"].id.get_storage_size()
    return path.stat().st_size, normalized, seconds


def heatmaps_seconds_hdf5_filter(folder: Path, raw: np.ndarray) -> float:
    """The write time per map of today's layout with the raw maps compressed by HDF5's own shuffle and gzip
    filters (zlib), as the writer did before it deflated the chunks itself (libdeflate, the same format)."""
    path = folder / "maps-filter.h5"
    start = time.perf_counter()
    with h5py.File(path, "w") as f:
        raw_maps = f.create_dataset("raw", shape=raw.shape, dtype=np.float32, chunks=(1, *raw.shape[1:]),
                                    compression="gzip", compression_opts=h5store.RAW_GZIP_LEVEL, shuffle=True)  # fmt: skip
        offsets, divisors = (f.create_dataset(name, shape=(len(raw),), dtype=np.float32)
                             for name in h5store.NORMALIZATION_DATASETS)  # fmt: skip
        for lo in range(0, len(raw), 16):
            batch = raw[lo : lo + 16]
            offset, divisor = normalization_params(batch)
            raw_maps[lo : lo + len(batch)] = batch
            offsets[lo : lo + len(batch)], divisors[lo : lo + len(batch)] = offset, divisor
    return (time.perf_counter() - start) / len(raw)


def heatmaps_bytes(folder: Path, raw: np.ndarray) -> tuple[int, int, float]:
    """Size of a heatmaps file of ``raw`` maps (min-max normalized) written by today's writer, the bytes of
    what keeps the normalized maps (the normalization's two numbers per map), the write time per map."""
    path = folder / "maps.h5"
    start = time.perf_counter()
    with h5store.heatmaps_writer(path, [f"s{i}" for i in range(len(raw))], len(raw), raw.shape[1:], method="m") as w:
        for lo in range(0, len(raw), 16):  # batches, as the heatmaps stage writes them
            batch = raw[lo : lo + 16]
            w.write(slice(lo, lo + len(batch)), np.arange(lo, lo + len(batch)), np.zeros(len(batch)), batch)
    seconds = (time.perf_counter() - start) / len(raw)
    with h5py.File(path) as f:
        normalized = sum(f[name].id.get_storage_size() for name in h5store.NORMALIZATION_DATASETS)
    return path.stat().st_size, normalized, seconds


def nifti_bytes(folder: Path, heat: np.ndarray, source: tuple[int, ...], scaled: bool) -> tuple[int, float]:
    path = folder / "map.nii.gz"
    image = np.zeros(source, np.uint8)
    start = time.perf_counter()
    if scaled:
        writers.write_map(path, heat, image, 3, "nifti", spacing=(1.0, 1.0, 1.0))
    else:  # as write_map wrote it before: the resized float32 map
        writers.write_nifti(path, writers.drawing.map_at(heat, source), (1.0, 1.0, 1.0))
    return path.stat().st_size, time.perf_counter() - start


def main() -> None:
    rng = np.random.default_rng(0)
    print("HDF5 heatmaps files, B per input pixel and map: before, raw and normalized maps as float32 (schema_version "
          f"1); after, raw maps and two numbers per map (version 3); target <= {HDF5_TARGET}x")  # fmt: skip
    print(f"{'maps':<28} {'before':>8} {'after':>8} {'ratio':>6} {'normalized alone':>17} {'ms/map before':>14} "
          f"{'after':>6} {'after, HDF5 filter':>19}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for n, shape in ((64, (192, 192)), (4, (64, 64, 64))):
            for kind, make in KINDS.items():
                raw = make(rng, n, shape)
                before, norm_before, t_before = heatmaps_bytes_v1(folder, raw)
                after, norm_after, t_after = heatmaps_bytes(folder, raw)
                t_filter = heatmaps_seconds_hdf5_filter(folder, raw)
                pixels = raw.size
                label = f"{n} x {'x'.join(map(str, shape))} {kind}"
                alone = f"{norm_before / pixels:.2f} -> {norm_after / pixels:.2f}"
                print(f"{label:<28} {before / pixels:8.2f} {after / pixels:8.2f} {after / before:6.3f} {alone:>17} "
                      f"{t_before * 1e3:14.1f} {t_after * 1e3:6.1f} {t_filter * 1e3:19.1f}")  # fmt: skip
        source = (160, 192, 192)
        print(f"\nNIfTI maps (.nii.gz) of a 64^3 map at a {'x'.join(map(str, source))} source, B per source voxel; "
              f"target <= {NIFTI_TARGET}")  # fmt: skip
        print(f"{'map':<28} {'before':>8} {'after':>8} {'ratio':>6} {'s before':>9} {'after':>6}")
        for kind, make in KINDS.items():
            heat = normalize_maps(make(rng, 1, (64, 64, 64)))[0]
            before, t_before = nifti_bytes(folder, heat, source, scaled=False)
            after, t_after = nifti_bytes(folder, heat, source, scaled=True)
            voxels = int(np.prod(source))
            print(f"{kind:<28} {before / voxels:8.2f} {after / voxels:8.2f} {after / before:6.2f} "
                  f"{t_before:9.2f} {t_after:6.2f}")  # fmt: skip
        print(f"uncompressed .nii: 352-byte header + 1 B per voxel ({352 + voxels} B here)")


if __name__ == "__main__":
    main()
