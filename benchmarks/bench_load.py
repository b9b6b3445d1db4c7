"""Load benchmark: our load_series against SimpleITK's ImageSeriesReader and a pydicom loop.

    python3 benchmarks/bench_load.py [--repeat 3] [--slices 300]

Generates (once, cached under benchmarks/data/, gitignored) a 300 x 512 x 512 CT series,
uncompressed and RLE (encoded by 2 processes), then measures with a warm page cache:
load time (median of --repeat), first-slice latency, the baselines, and the peak memory of a
load against the int16 bytes of the voxels. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import tracemalloc
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pydicom

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medviewer.core import synthetic as syn  # noqa: E402
from medviewer.core.dicom import scan  # noqa: E402
from medviewer.core.dicom.model import Series  # noqa: E402
from medviewer.core.dicom.volume import SeriesLoader, load_series  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"


def phantom(slices: int) -> np.ndarray:
    """A body ellipse with lungs and noise: realistic run lengths for RLE."""
    y, x = np.mgrid[-256:256, -256:256]
    body = (x / 220.0) ** 2 + (y / 160.0) ** 2 < 1
    lungs = ((np.abs(x) - 95) / 70.0) ** 2 + (y / 110.0) ** 2 < 1
    base = np.where(body, 40, -1000) - np.where(lungs & body, 890, 0)
    rng = np.random.default_rng(0)
    vol = np.empty((slices, 512, 512), np.int16)
    for k in range(slices):
        vol[k] = base + rng.normal(0, 8, base.shape).astype(np.int16) * body
    return vol


def _to_rle(args: tuple[str, str]) -> None:
    src, dst = args
    ds = pydicom.dcmread(src)
    ds.compress(pydicom.uid.RLELossless)
    ds.save_as(dst, enforce_file_format=True)


def ensure_data(slices: int) -> tuple[Path, Path]:
    raw, rle = DATA / f"ct{slices}_raw", DATA / f"ct{slices}_rle"
    if len(list(raw.glob("*.dcm"))) != slices:
        print(f"generating {slices} uncompressed slices in {raw} ...", flush=True)
        syn.write_series(raw, phantom(slices), spacing=(1.25, 0.7, 0.7), shuffle_names=True)
    if len(list(rle.glob("*.dcm"))) != slices:
        print(f"RLE-encoding with 2 processes into {rle} ...", flush=True)
        rle.mkdir(parents=True, exist_ok=True)
        jobs = [(str(p), str(rle / p.name)) for p in sorted(raw.glob("*.dcm"))]
        with ProcessPoolExecutor(2) as pool:
            list(pool.map(_to_rle, jobs, chunksize=8))
    return raw, rle


def scanned(folder: Path) -> Series:
    """The Series the study browser would hand over."""
    return max(scan(folder, cache=False).all_series(), key=lambda s: s.image_count)


def timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def sitk_load(folder: Path):
    import SimpleITK as sitk

    names = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder))
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(names)
    return lambda: sitk.GetArrayFromImage(reader.Execute())


def pydicom_loop(folder: Path):
    paths = sorted(folder.glob("*.dcm"))

    def run() -> np.ndarray:
        out = None
        for k, p in enumerate(paths):
            ds = pydicom.dcmread(p)
            arr = ds.pixel_array.astype(np.int16) * int(ds.RescaleSlope) + int(ds.RescaleIntercept)
            out = np.empty((len(paths), *arr.shape), np.int16) if out is None else out
            out[k] = arr
        return out

    return run


def measure(label: str, folder: Path, repeat: int) -> list[tuple[str, float, str]]:
    series = scanned(folder)
    load_series(series)  # warm the page cache and any lazy imports
    ours = timed(lambda: load_series(series), repeat)
    first = timed(lambda: SeriesLoader(series).read_slice(len(series.instances) // 2), repeat)
    tracemalloc.start()
    volume = load_series(series)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    int16_bytes = volume.voxels.size * 2
    sitk = timed(sitk_load(folder), repeat)
    loop = timed(pydicom_loop(folder), repeat)
    return [
        (f"{label}: load_series", ours, f"{ours / sitk:.2f}x SimpleITK, {ours / loop:.2f}x loop"),
        (f"{label}: first slice (plan + read_slice)", first, "target <= 0.3 s"),
        (f"{label}: SimpleITK ImageSeriesReader", sitk, "baseline"),
        (f"{label}: pydicom loop", loop, ""),
        (f"{label}: peak memory / int16 bytes", peak / int16_bytes,
         f"{peak / 2**20:.0f} MiB for {int16_bytes / 2**20:.0f} MiB, dtype {volume.voxels.dtype}"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--slices", type=int, default=300)
    args = parser.parse_args()
    raw, rle = ensure_data(args.slices)
    rows = measure("uncompressed", raw, args.repeat) + measure("RLE", rle, args.repeat)
    print(f"\n{args.slices} x 512 x 512 CT, warm cache, median of {args.repeat}\n")
    print("| measurement | value | note |\n|---|---|---|")
    for name, value, note in rows:
        unit = "x" if "memory" in name else " s"
        print(f"| {name} | {value:.3f}{unit} | {note} |")


if __name__ == "__main__":
    main()
