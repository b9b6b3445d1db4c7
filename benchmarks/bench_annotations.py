"""Label map editing: brush dab time and undo memory on a 300 x 512 x 512 map.

    python3 benchmarks/bench_annotations.py [--slices 300] [--radius 10] [--strokes 100]

A uint8 label map of 300 x 512 x 512 on 1.0 x 0.7 x 0.7 mm voxels (slice, row, column).
- 2D dab: `tools.brush` of a disc of --radius mm on one slice, the core part of a dab (the
  overlay refresh of the returned box comes on top, in the UI); as its own undo item and as one
  dab inside a running stroke. Baseline: the disc computed over the whole 512 x 512 slice and
  written with a boolean assignment, with no undo at all.
- 3D dab: `tools.brush(sphere=True)` of --radius mm, its own undo item. Baseline: the same dab
  with a naive undo that snapshots the whole map before each edit.
- Undo memory: --strokes strokes of 20 overlapping dabs (radius/2 apart, random place and
  direction on a random slice), `History.memory_bytes()`; baseline: a 75 MB snapshot per
  stroke. Then every stroke is undone and the map must be all zero again (byte for byte).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medviewer.core.annotations.history import History  # noqa: E402
from medviewer.core.annotations.labelmap import LabelMap  # noqa: E402
from medviewer.core.annotations.tools import brush, brush_stroke  # noqa: E402

SPACING = (1.0, 0.7, 0.7)
MB = 2**20


def median_ms(fn, args: list) -> float:
    times = []
    for a in args:
        start = time.perf_counter()
        fn(a)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def fresh_map(slices: int) -> tuple[LabelMap, History]:
    lm = LabelMap(np.zeros((slices, 512, 512), np.uint8), spacing=SPACING)
    lm.table.add("lesion")
    return lm, History(lm)


def centres(rng: np.random.Generator, n: int, slices: int) -> list[tuple[float, float, float]]:
    return [(float(rng.integers(20, slices - 20)), *rng.uniform(40, 472, 2)) for _ in range(n)]


def full_slice_dab(lm: LabelMap, centre, radius: float) -> None:
    """Baseline: the disc over the whole slice, then a boolean assignment."""
    k, r, c = centre
    rows, cols = np.ogrid[:512, :512]
    mask = ((rows - r) * SPACING[1]) ** 2 + ((cols - c) * SPACING[2]) ** 2 <= radius ** 2
    lm.array[int(k)][mask] = 1


def bench_dabs(args, rng) -> list[tuple[str, str, str, float, float]]:
    lm, history = fresh_map(args.slices)
    pts = centres(rng, args.repeat, args.slices)
    r = args.radius
    own = median_ms(lambda p: brush(lm, history, p, r, 1), pts)
    with history.stroke("brush"):
        inside = median_ms(lambda p: brush(lm, history, p, r, 1), pts[: args.repeat // 4])
    base2d = median_ms(lambda p: full_slice_dab(lm, p, r), pts)
    sphere = median_ms(lambda p: brush(lm, history, p, r, 1, sphere=True), pts)

    def naive(p):
        lm.array.copy()  # the snapshot a naive undo keeps
        brush(lm, history, p, r, 1, sphere=True)

    base3d = median_ms(naive, pts[:20])
    drag_median, drag_worst = long_drag(args)
    return [("2D dab, own undo item", "16 (with overlay)", "full-slice boolean assignment",
             own, base2d),
            ("2D dab inside a stroke", "16 (with overlay)", "full-slice boolean assignment",
             inside, base2d),
            ("3D sphere dab, own undo item", "30", "same dab + full-map undo snapshot",
             sphere, base3d),
            ("3D sphere dab in a corner-to-corner drag, median", "30",
             "same dab + full-map undo snapshot", drag_median, base3d),
            ("3D sphere dab in a corner-to-corner drag, worst", "30",
             "same dab + full-map undo snapshot", drag_worst, base3d)]


def long_drag(args) -> tuple[float, float]:
    """Dab times of one stroke across a slice (its undo buffer keeps growing)."""
    lm, history = fresh_map(args.slices)
    k = args.slices // 2
    times = []
    with history.stroke("brush"):
        for t in np.linspace(0, 1, int(512 * 0.7 * 2**0.5 / (args.radius / 2)) + 1):
            start = time.perf_counter()
            brush(lm, history, (k, 511 * t, 511 * t), args.radius, 1, sphere=True)
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times), 1000 * max(times)


def bench_memory(args, rng, sphere: bool) -> tuple[float, float, float, bool]:
    lm, history = fresh_map(args.slices)
    history.cap_bytes = 2**40  # measure everything; the real cap is 256 MB
    start = time.perf_counter()
    for _ in range(args.strokes):
        k, r, c = centres(rng, 1, args.slices)[0]
        angle = rng.uniform(0, 2 * np.pi)
        step = args.radius / 2 / SPACING[1]
        dabs = [(k, r + i * step * np.sin(angle), c + i * step * np.cos(angle))
                for i in range(20)]
        brush_stroke(lm, history, dabs, args.radius, 1, sphere=sphere)
    per_stroke = 1000 * (time.perf_counter() - start) / args.strokes
    memory = history.memory_bytes() / MB
    start = time.perf_counter()
    while history.can_undo:
        history.undo()
    undo_ms = 1000 * (time.perf_counter() - start) / args.strokes
    return memory, per_stroke, undo_ms, not lm.array.any()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--radius", type=float, default=10.0, help="brush radius, mm")
    parser.add_argument("--strokes", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    shape = f"{args.slices} x 512 x 512 uint8, {SPACING[0]} x {SPACING[1]} x {SPACING[2]} mm"
    print(f"\n`python3 benchmarks/bench_annotations.py --slices {args.slices} --radius "
          f"{args.radius:g} --strokes {args.strokes} --repeat {args.repeat}`\n")
    print(f"{shape}, brush radius {args.radius:g} mm, median of {args.repeat} dabs\n")
    print("| dab | target ms | ours ms | baseline | baseline ms | ratio |")
    print("|---|---|---|---|---|---|")
    for name, target, base_name, ours, base in bench_dabs(args, rng):
        print(f"| {name} | {target} | {ours:.3f} | {base_name} | {base:.2f} | "
              f"{base / ours:.0f}x |")
    naive = args.strokes * args.slices * 512 * 512 / MB
    print(f"\n{args.strokes} strokes of 20 dabs, radius {args.radius:g} mm\n")
    print("| brush | undo memory MB (target < 50) | naive snapshots MB | stroke ms | "
          "undo ms per stroke | undo all restores the map |")
    print("|---|---|---|---|---|---|")
    for sphere in (False, True):
        memory, stroke_ms, undo_ms, restored = bench_memory(args, rng, sphere)
        print(f"| {'3D sphere' if sphere else '2D disc'} | {memory:.1f} | {naive:.0f} | "
              f"{stroke_ms:.1f} | {undo_ms:.2f} | {'yes' if restored else 'NO'} |")


if __name__ == "__main__":
    main()
