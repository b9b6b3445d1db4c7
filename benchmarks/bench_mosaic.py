"""Siemens mosaic benchmark: our load_series (scan, split into tiles, 4D) against a bare
pydicom loop that decodes the same files and cuts the tiles with numpy, and dcm2niix.

    python3 benchmarks/bench_mosaic.py [--times 100] [--slices 36] [--size 64] [--repeat 3]

Generates (once, cached under benchmarks/data/, gitignored) an fMRI-like series: one mosaic
file per time point (6 x 6 tiles of 64 x 64 by default, as a Siemens scanner writes them, CSA
header included), then measures with a warm page cache. The baseline knows the tile count in
advance; ours reads it from each file's CSA header and places every tile in patient space.
dcm2niix (Debian package) also writes a NIfTI file; it is shown when installed. Prints a
markdown table.
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "core"))  # the mosaic writer the tests use

from mosaic_files import mosaic_volumes, write_mosaics  # noqa: E402

from medviewer.core.dicom import scan  # noqa: E402
from medviewer.core.dicom.volume import load_series  # noqa: E402


def _baseline(files: list[Path], count: int) -> np.ndarray:
    side = math.ceil(math.sqrt(count))
    out = []
    for path in files:
        grid = pydicom.dcmread(path).pixel_array
        rows, columns = grid.shape[0] // side, grid.shape[1] // side
        tiles = grid.reshape(side, rows, side, columns).swapaxes(1, 2).reshape(-1, rows, columns)
        out.append(tiles[:count])
    return np.stack(out)


def _ours(folder: Path) -> np.ndarray:
    return load_series(scan(folder, cache=False).all_series()[0]).voxels


def _median(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--times", type=int, default=100)
    parser.add_argument("--slices", type=int, default=36)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    folder = ROOT / "benchmarks" / "data" / f"mosaic_{args.times}x{args.slices}x{args.size}"
    volumes = mosaic_volumes(args.times, args.slices, args.size, args.size)
    if not folder.exists():
        write_mosaics(folder, volumes)
    files = sorted(folder.glob("*.dcm"))
    base_s, base = _median(lambda: _baseline(files, args.slices), args.repeat)
    ours_s, ours = _median(lambda: _ours(folder), args.repeat)
    assert ours.shape == volumes.shape, ours.shape  # (time, slice, row, column)
    assert np.array_equal(np.asarray(base), volumes)
    rows = [("pydicom loop + numpy tiles (baseline)", base_s),
            ("MedViewer scan + load_series", ours_s)]
    if shutil.which("dcm2niix"):
        def convert() -> None:
            with tempfile.TemporaryDirectory() as out:
                subprocess.run(["dcm2niix", "-z", "n", "-o", out, str(folder)], check=True,
                               capture_output=True)
        rows.append(("dcm2niix to NIfTI (peer)", _median(convert, args.repeat)[0]))
    print(f"{args.times} mosaics of {args.slices} tiles {args.size} x {args.size} "
          f"-> voxels {ours.shape}, median of {args.repeat}")
    print("| reader | seconds | ratio to baseline |\n|---|---|---|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.3f} | {seconds / base_s:.2f}x |")


if __name__ == "__main__":
    main()
