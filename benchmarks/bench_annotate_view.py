"""One brush dab plus the overlay refresh in the real slice view, offscreen.

    QT_QPA_PLATFORM=offscreen python benchmarks/bench_annotate_view.py [--dabs 200]

A 40 x 512 x 512 CT in a SliceView (768 px); the brush (5 mm disc) moves across the lungs one
dab per step, the way a drag calls the mouse handler: dab into the label map (one stroke =
one undo item), update only the dirty rectangle of the RGBA overlay, then render the view
(`widget.grab()`, so the frame is really drawn). Baseline in the same run: the same step with
the whole 512 x 512 overlay recoloured and set again (what a redraw without dirty rectangles
costs). Target: <= 16 ms per dab including the refresh.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pyqtgraph as pg  # noqa: E402
from bench_render import WINDOW, make_ct  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from medviewer.core.dicom.volume import Volume  # noqa: E402
from medviewer.ui.annotate.layers import AnnotationLayer  # noqa: E402
from medviewer.ui.annotate.paint_tools import AnnotateMouse  # noqa: E402
from medviewer.ui.document.study import StudyDocument  # noqa: E402
from medviewer.ui.viewing.slice_view import SliceView  # noqa: E402

TARGET_MS = 16.0


def make_view(size: int) -> tuple[StudyDocument, SliceView]:
    doc = StudyDocument()
    affine = np.diag([0.7, 0.7, 2.5, 1.0])
    doc.set_volume(Volume(voxels=make_ct(40), affine=affine, modality="CT"), window=WINDOW)
    doc.set_slice(20)
    view = SliceView(doc)
    view.resize(size, size)
    view.show()
    QApplication.processEvents()
    view.fit()
    doc.set_tool_settings(radius_mm=5.0)
    doc.set_tool("brush")
    view.add_layer("annotation", AnnotationLayer)
    return doc, view


def time_dabs(doc: StudyDocument, view: SliceView, dabs: int, full_redraw: bool
              ) -> list[float]:
    mouse, layer, app = AnnotateMouse(view), view.layers["annotation"], QApplication.instance()
    times = []
    mouse.begin((20.0, 256.0, 100.0))
    for i in range(dabs + 5):
        point = (20.0, 200.0 + 100 * np.sin(i / 9), 100.0 + (i * 1.5) % 300)
        t0 = time.perf_counter()
        mouse.paint_to(point)
        if full_redraw:
            layer.refresh()
        app.processEvents()
        view.grab()
        if i >= 5:
            times.append((time.perf_counter() - t0) * 1000)
    mouse.finish()
    assert doc.labelmap.array[20].any() and len(doc.history) >= 1
    return times


def row(name: str, times: list[float]) -> str:
    med = statistics.median(times)
    ok = "yes" if med <= TARGET_MS else "no"
    return (f"| {name} | {med:.2f} | {float(np.percentile(times, 95)):.2f} | "
            f"{max(times):.2f} | {ok} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dabs", type=int, default=200)
    parser.add_argument("--size", type=int, default=768, help="view size in screen pixels")
    args = parser.parse_args()
    app = QApplication.instance() or QApplication([])
    pg.setConfigOptions(imageAxisOrder="row-major", antialias=True)  # as medviewer.ui.shell.app
    doc, view = make_view(args.size)
    dirty = time_dabs(doc, view, args.dabs, full_redraw=False)
    full = time_dabs(doc, view, args.dabs, full_redraw=True)
    view.close()
    print(f"`QT_QPA_PLATFORM=offscreen python3 benchmarks/bench_annotate_view.py --dabs "
          f"{args.dabs}` ({args.size} px view, 512 x 512 image, 5 mm brush)\n")
    print("| step (dab + overlay + render) | median ms | p95 ms | max ms | <= 16 ms |")
    print("|---|---|---|---|---|")
    print(row("dirty rectangle only (MedViewer)", dirty))
    print(row("baseline: whole overlay recoloured", full))
    print(f"\nratio {statistics.median(dirty) / statistics.median(full):.2f}x the baseline")
    app.quit()


if __name__ == "__main__":
    main()
