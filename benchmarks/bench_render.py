"""Slice change including render, offscreen: MedViewer's SliceView against a bare ImageItem.

    QT_QPA_PLATFORM=offscreen python benchmarks/bench_render.py [--steps 200] [--size 768]

One step = go to the next slice of a 300 x 512 x 512 int16 CT volume, let Qt process the
events, and render the view to a pixmap (`widget.grab()`, so the frame is really drawn, not
just scheduled). The baseline is the simplest possible viewer in the same run: a pyqtgraph
ImageItem in a ViewBox given the raw int16 slice with its levels set. Target: <= 16 ms (60 fps).
A third row pages through the same volume with a 10 mm MIP on (11 images of 1 mm reduced per
step, from a view of only those images): thick slabs must stay as interactive as plain slices.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pyqtgraph as pg  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from medviewer.core.dicom.volume import Volume  # noqa: E402
from medviewer.core.display import Window  # noqa: E402
from medviewer.ui.document.study import StudyDocument  # noqa: E402
from medviewer.ui.viewing.slice_view import SliceView  # noqa: E402

SLICES, SIZE = 300, 512
WINDOW = Window(40, 400)
TARGET_MS = 16.0


def make_ct(slices: int = SLICES, size: int = SIZE) -> np.ndarray:
    """A body-like phantom with noise, int16 HU, so no frame is trivially compressible."""
    rng = np.random.default_rng(0)
    y, x = np.ogrid[:size, :size]
    body = ((y - size / 2) / (size * 0.4)) ** 2 + ((x - size / 2) / (size * 0.45)) ** 2 < 1
    base = np.where(body, 40, -1000).astype(np.int16)
    vol = np.empty((slices, size, size), np.int16)
    for k in range(slices):
        vol[k] = base + rng.integers(-20, 20, (size, size), dtype=np.int16)
    return vol


def time_steps(step: Callable[[int], None], render: Callable[[], object],
               n: int) -> list[float]:
    """Milliseconds per (step k, process events, render) for n steps after 5 warm-up ones."""
    app = QApplication.instance()
    times = []
    for i in range(n + 5):
        t0 = time.perf_counter()
        step(i)
        app.processEvents()
        render()
        if i >= 5:
            times.append((time.perf_counter() - t0) * 1000)
    return times


def bench_slice_view(voxels: np.ndarray, size: int, n: int, slab_mm: float = 0.0
                     ) -> list[float]:
    doc = StudyDocument()
    affine = np.diag([0.7, 0.7, 1.0, 1.0])
    doc.set_volume(Volume(voxels=voxels, affine=affine, modality="CT"), window=WINDOW)
    if slab_mm:
        doc.set_slab("mip", slab_mm)
    view = SliceView(doc)
    view.resize(size, size)
    view.show()
    QApplication.processEvents()
    view.fit()
    count = doc.slice_count
    times = time_steps(lambda i: doc.set_slice(i % count), view.grab, n)
    assert doc.slice_index == (n + 4) % count  # it really moved through the slices
    view.close()
    return times


def bench_bare_image_item(voxels: np.ndarray, size: int, n: int) -> list[float]:
    widget = pg.GraphicsView(background="k")
    box = pg.ViewBox(lockAspect=True, invertY=True)
    widget.setCentralItem(box)
    item = pg.ImageItem(axisOrder="row-major")
    box.addItem(item)
    widget.resize(size, size)
    widget.show()
    levels = (WINDOW.center - WINDOW.width / 2, WINDOW.center + WINDOW.width / 2)
    item.setImage(voxels[0], autoLevels=False, levels=levels)
    box.autoRange(padding=0)
    count = voxels.shape[0]
    times = time_steps(lambda i: item.setImage(voxels[i % count], autoLevels=False,
                                               levels=levels), widget.grab, n)
    widget.close()
    return times


def row(name: str, times: list[float]) -> str:
    med = statistics.median(times)
    p95 = float(np.percentile(times, 95))
    ok = "yes" if med <= TARGET_MS else "no"
    return (f"| {name} | {med:.2f} | {p95:.2f} | {statistics.fmean(times):.2f} "
            f"| {1000 / med:.0f} | {ok} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--size", type=int, default=768, help="view size in screen pixels")
    parser.add_argument("--slices", type=int, default=SLICES)
    args = parser.parse_args()
    app = QApplication.instance() or QApplication([])
    pg.setConfigOptions(imageAxisOrder="row-major", antialias=True)  # as medviewer.ui.shell.app
    voxels = make_ct(args.slices)
    ours: list[float] = []
    bare: list[float] = []
    mip: list[float] = []
    rounds = 4  # interleaved, so load from other processes hits all alike
    for _ in range(rounds):
        ours += bench_slice_view(voxels, args.size, args.steps // rounds)
        bare += bench_bare_image_item(voxels, args.size, args.steps // rounds)
        mip += bench_slice_view(voxels, args.size, args.steps // rounds, slab_mm=10.0)
    print(f"Slice change incl. render, {args.slices} x {SIZE} x {SIZE} int16, "
          f"{args.size} x {args.size} px view, {args.steps} steps, "
          f"Qt platform {app.platformName()}\n")
    print("| view | median ms | p95 ms | mean ms | fps (median) | <= 16 ms |")
    print("|---|---|---|---|---|---|")
    print(row("MedViewer SliceView (to_display uint8 + overlays)", ours))
    print(row("baseline: bare pyqtgraph ImageItem, raw int16 + levels", bare))
    print(row("MedViewer SliceView, 10 mm MIP (11 x 1 mm images per step)", mip))
    print(f"\nratio SliceView / baseline (median): "
          f"{statistics.median(ours) / statistics.median(bare):.2f}x")


if __name__ == "__main__":
    main()
