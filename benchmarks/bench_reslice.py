"""True-plane MPR of an oblique acquisition: time per resampled image.

    python3 benchmarks/bench_reslice.py [--slices 200] [--repeat 20]

A 25-degree oblique 200 x 512 x 512 int16 volume. For each true plane, the median time of
`ResliceView.image` (trilinear, scipy.ndimage.map_coordinates) over images through the middle
of the volume; baseline in the same run: the same plane of the same volume cut along its own
voxel axes (`geometry.plane_view`, a numpy view, made contiguous), what MPR did before.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medviewer.core import geometry, reslice  # noqa: E402
from medviewer.core.synthetic import Geometry, oblique  # noqa: E402


def median_ms(fn, ks: list[int]) -> float:
    times = []
    for k in ks:
        start = time.perf_counter()
        fn(k)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    geom = Geometry((args.slices, 512, 512), (1.0, 0.5, 0.5), oblique(25))
    voxels = np.random.default_rng(0).integers(-1000, 1000, geom.shape).astype(np.int16)
    print(f"\n{args.slices} x 512 x 512 int16, 25 degrees oblique, median of {args.repeat}\n")
    print("| plane | image size | true plane (resampled) | own voxel axes (view) | ratio |")
    print("|---|---|---|---|---|")
    for plane in geometry.PLANES:
        true = reslice.plane_view_for(geom.shape, geom.affine, plane)
        native = geometry.plane_view(geom.shape, geom.affine, plane)
        mid = true.count // 2
        ks = [mid + d for d in range(-args.repeat // 2, args.repeat - args.repeat // 2)]
        nks = [min(native.count - 1, max(0, k * native.count // true.count)) for k in ks]
        ours = median_ms(lambda k, v=true: v.image(voxels, k), ks)
        base = median_ms(lambda k, v=native: np.ascontiguousarray(v.image(voxels, k)), nks)
        size = f"{true.shape[1]} x {true.shape[2]}"
        print(f"| {plane} | {size} | {ours:.1f} ms | {base:.2f} ms | {ours / base:.0f}x |")


if __name__ == "__main__":
    main()
