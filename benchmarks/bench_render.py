"""Slice change including render, offscreen: MedViewer's SliceView against a bare ImageItem.

    QT_QPA_PLATFORM=offscreen python benchmarks/bench_render.py [--steps 200] [--size 768]

One step = go to the next slice of a 300 x 512 x 512 int16 CT volume, let Qt process the
events, and render the view to a pixmap (`widget.grab()`, so the frame is really drawn, not
just scheduled). The baseline is the simplest possible viewer in the same run: a pyqtgraph
ImageItem in a ViewBox given the raw int16 slice with its levels set. Target: <= 16 ms (60 fps)
and (issue 17) <= 1.2x the baseline.
Two cases, each against its own baseline, all rounds interleaved so the load of other
processes hits every row alike, each round paging on from another eighth of the volume (so
the label rows cross the nodule too): overlays off (the corner text on, as the reader sees it), and
one AI label map on (two lungs and a nodule on every slice, drawn as outlines, the AI's
default), against the bare view with a second ImageItem given the label slice through a
pyqtgraph lookup table (filled: pyqtgraph has no outline), and, the stricter baseline, given
the slice's labels already coloured as RGBA (filled; coloured before the clock starts, so the
baseline does no colouring at all: only the two setImage and the draw). The label map is
timed twice: on slices seen for the first time (coloured on the step), and on slices the view
has already shown once before the clock starts (as the reader pages back over them; the view
keeps each slice's coloured labels, `viewing.label_images`), the counterpart of the baseline's
colouring beforehand.
A main-window row takes the same steps in the real MainWindow (slider, docks, panels and status
bar follow every slice; its view near the same size), against the first baseline.
A last row pages through the same volume with a 10 mm MIP on (11 images of 1 mm reduced per
step, from a view of only those images): thick slabs must stay as interactive as plain slices.
Medians of wall time and of the process's CPU time (`time_steps`: the CPU ratio is the one a
busy shared machine does not skew).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
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
from medviewer.inference.results import Result  # noqa: E402
from medviewer.ui.ai.layers import AiLayerItems  # noqa: E402
from medviewer.ui.document.ai_state import AiOutput, label_lut  # noqa: E402
from medviewer.ui.document.study import StudyDocument  # noqa: E402
from medviewer.ui.viewing.slice_view import SliceView  # noqa: E402

SLICES, SIZE = 300, 512
WINDOW = Window(40, 400)
TARGET_MS = 16.0
MAIN_WINDOW_VIEW: list[int] = []  # the main window's view size, as its layout made it


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


def make_labels(slices: int = SLICES, size: int = SIZE) -> np.ndarray:
    """A segmentation's label map: two lungs (1) on every slice and a nodule (2) on the
    middle ones (a sphere of 4 % of the image's size, 4 slices to a pixel)."""
    y, x = np.ogrid[:size, :size]
    labels = np.zeros((slices, size, size), np.uint8)
    for cx in (0.32, 0.68):
        labels[:, ((y - size * 0.45) / (size * 0.22)) ** 2
               + ((x - size * cx) / (size * 0.12)) ** 2 < 1] = 1
    radius = size * 0.04
    for k in range(slices):
        left = radius ** 2 - ((k - slices / 2) * 4) ** 2
        if left > 0:
            labels[k][(y - size * 0.4) ** 2 + (x - size * 0.3) ** 2 < left] = 2
    return labels


def time_steps(step: Callable[[int], None], render: Callable[[], object],
               n: int) -> list[tuple[float, float]]:
    """(wall, CPU) milliseconds per (step k, process events, render) for n steps after 5
    warm-up ones. The CPU time is the process's, all threads (Qt converts and scales large
    images on a pool of its own): on a shared machine it leaves out the time other
    processes held the cores, which the wall time does not."""
    app = QApplication.instance()
    times = []
    for i in range(n + 5):
        t0, c0 = time.perf_counter(), time.process_time()
        step(i)
        app.processEvents()
        render()
        if i >= 5:
            times.append(((time.perf_counter() - t0) * 1000, (time.process_time() - c0) * 1000))
    return times


def bench_slice_view(voxels: np.ndarray, size: int, n: int, slab_mm: float = 0.0,
                     labels: np.ndarray | None = None, start: int = 0, seen: bool = False
                     ) -> list[tuple[float, float]]:
    """`seen`: show the slices of the steps once before the clock starts."""
    doc = StudyDocument()
    affine = np.diag([0.7, 0.7, 1.0, 1.0])
    doc.set_volume(Volume(voxels=voxels, affine=affine, modality="CT"), window=WINDOW)
    if slab_mm:
        doc.set_slab("mip", slab_mm)
    view = SliceView(doc)
    if labels is not None:  # as the AI controller does: its layer on the view, then a result
        view.add_layer("ai", AiLayerItems)
        doc.set_ai_output(AiOutput((LUNG_RESULT(labels),), "series"))
    view.resize(size, size)
    view.show()
    QApplication.processEvents()
    view.fit()
    count = doc.slice_count
    for i in range(n + 5 if seen else 0):
        doc.set_slice((start + i) % count)
        QApplication.processEvents()
    times = time_steps(lambda i: doc.set_slice((start + i) % count), view.grab, n)
    assert doc.slice_index == (start + n + 4) % count  # it really moved through the slices
    view.close()
    return times


def bench_main_window(voxels: np.ndarray, size: int, n: int, start: int = 0
                      ) -> list[tuple[float, float]]:
    """The same steps in the real main window (slider, docks, panels and status bar follow
    every slice), its view about `size` px square."""
    from PySide6.QtCore import QSettings

    from medviewer.ui.shell.main_window import MainWindow

    folder = tempfile.mkdtemp()
    window = MainWindow(settings=QSettings(os.path.join(folder, "bench.ini"),
                                           QSettings.Format.IniFormat),
                        scan_cache=Path(folder) / "index.sqlite")
    window.resize(size + 660, size + 190)
    window.show()
    doc = window.document
    doc.set_volume(Volume(voxels=voxels, affine=np.diag([0.7, 0.7, 1.0, 1.0]), modality="CT"),
                   window=WINDOW)
    QApplication.processEvents()
    count, view = doc.slice_count, window.viewer.single_view
    MAIN_WINDOW_VIEW[:] = [view.width(), view.height()]
    times = time_steps(lambda i: doc.set_slice((start + i) % count), view.grab, n)
    window.close()
    window.deleteLater()
    QApplication.processEvents()
    return times


def LUNG_RESULT(labels: np.ndarray) -> Result:  # noqa: N802 - reads as a constant
    return Result("bench-seg", "1", "segmentation", ["background", "lung", "nodule"],
                  ["#000000", "#3cb44b", "#e6194b"], label_map=labels)


def bench_bare_image_item(voxels: np.ndarray, size: int, n: int,
                          labels: np.ndarray | None = None, coloured: bool = False,
                          start: int = 0) -> list[tuple[float, float]]:
    """`labels`: a second ImageItem shows them, through pyqtgraph's lookup table, or (when
    `coloured`) as RGBA coloured before the clock starts: no colouring per step at all."""
    widget = pg.GraphicsView(background="k")
    box = pg.ViewBox(lockAspect=True, invertY=True)
    widget.setCentralItem(box)
    item = pg.ImageItem(axisOrder="row-major")
    box.addItem(item)
    overlay = pg.ImageItem(axisOrder="row-major")
    if not coloured:
        overlay.setLookupTable(label_lut(LUNG_RESULT(voxels[:1])))
    box.addItem(overlay)
    widget.resize(size, size)
    widget.show()
    levels = (WINDOW.center - WINDOW.width / 2, WINDOW.center + WINDOW.width / 2)
    item.setImage(voxels[0], autoLevels=False, levels=levels)
    box.autoRange(padding=0)
    count = voxels.shape[0]
    lut = label_lut(LUNG_RESULT(voxels[:1]))
    rgba = {k % count: lut[labels[k % count]] for k in range(start, start + n + 5)} \
        if coloured else {}

    def step(i: int) -> None:
        k = (start + i) % count
        item.setImage(voxels[k], autoLevels=False, levels=levels)
        if coloured:
            overlay.setImage(rgba[k], autoLevels=False, levels=None)
        elif labels is not None:
            overlay.setImage(labels[k], autoLevels=False, levels=(0, 255))

    times = time_steps(step, widget.grab, n)
    widget.close()
    return times


def row(name: str, times: list[tuple[float, float]]) -> str:
    wall, cpu = (np.array(t) for t in zip(*times, strict=True))
    med = float(np.median(wall))
    ok = "yes" if med <= TARGET_MS else "no"
    return (f"| {name} | {med:.2f} | {np.percentile(wall, 95):.2f} | {np.median(cpu):.2f} "
            f"| {1000 / med:.0f} | {ok} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--size", type=int, default=768, help="view size in screen pixels")
    parser.add_argument("--slices", type=int, default=SLICES)
    args = parser.parse_args()
    app = QApplication.instance() or QApplication([])
    pg.setConfigOptions(imageAxisOrder="row-major", antialias=True)  # as medviewer.ui.shell.app
    voxels, labels = make_ct(args.slices), make_labels(args.slices)
    load_before = os.getloadavg()[0]
    cases: dict[str, Callable[[int, int], list[tuple[float, float]]]] = {  # (steps, first)
        "MedViewer SliceView (overlays off: image + corner text)":
            lambda n, k: bench_slice_view(voxels, args.size, n, start=k),
        "baseline: bare pyqtgraph ImageItem, raw int16 + levels":
            lambda n, k: bench_bare_image_item(voxels, args.size, n, start=k),
        "MedViewer SliceView + AI label map (outlines), slices seen for the first time":
            lambda n, k: bench_slice_view(voxels, args.size, n, labels=labels, start=k),
        "MedViewer SliceView + AI label map (outlines), slices shown once before":
            lambda n, k: bench_slice_view(voxels, args.size, n, labels=labels, start=k,
                                          seen=True),
        "baseline: bare ImageItem + label ImageItem (lookup table, filled)":
            lambda n, k: bench_bare_image_item(voxels, args.size, n, labels=labels, start=k),
        "baseline: bare ImageItem + label ImageItem (RGBA coloured beforehand)":
            lambda n, k: bench_bare_image_item(voxels, args.size, n, labels=labels,
                                               coloured=True, start=k),
        "MedViewer main window (slider, docks, panels; overlays as the reader has them)":
            lambda n, k: bench_main_window(voxels, args.size, n, start=k),
        "MedViewer SliceView, 10 mm MIP (11 x 1 mm images per step)":
            lambda n, k: bench_slice_view(voxels, args.size, n, slab_mm=10.0, start=k)}
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    rounds = 8  # interleaved, so load from other processes hits all alike
    for r in range(rounds):  # each round pages on from another place in the volume
        for name, run in cases.items():
            times[name] += run(args.steps // rounds, r * args.slices // rounds)
    print(f"Slice change incl. render, {args.slices} x {SIZE} x {SIZE} int16, "
          f"{args.size} x {args.size} px view, {args.steps} steps per row in {rounds} "
          f"interleaved rounds, Qt platform {app.platformName()}, load average "
          f"{load_before:.2f} before / {os.getloadavg()[0]:.2f} after "
          f"on {os.cpu_count()} CPUs\n")
    print("| view | median ms | p95 ms | median CPU ms | fps (median) | <= 16 ms |")
    print("|---|---|---|---|---|---|")
    for name, measured in times.items():
        print(row(name, measured))
    print("\nmain window's view: {} x {} px".format(*MAIN_WINDOW_VIEW))
    for clock, index in (("wall", 0), ("CPU", 1)):
        med = [statistics.median(t[index] for t in times[name]) for name in cases]
        print(f"\nratio SliceView / baseline (median {clock} time): overlays off "
              f"{med[0] / med[1]:.2f}x; one label map on {med[2] / med[4]:.2f}x against the "
              f"lookup table; against the pre-coloured labels {med[2] / med[5]:.2f}x on new "
              f"slices, {med[3] / med[5]:.2f}x on slices shown before; "
              f"the main window {med[6] / med[1]:.2f}x (target <= 1.2x)")

if __name__ == "__main__":
    main()
