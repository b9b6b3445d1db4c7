"""First image on screen: from choosing a series in the real main window to its first slice drawn.

    python3 benchmarks/bench_first_slice.py [--repeat 5] [--slices 300]

Uses the 300 x 512 x 512 CT series of bench_load.py (uncompressed and RLE), scanned once. For
each repeat a fresh MainWindow (offscreen) opens the series through `open_series`, as a click in
the browser does, and we time until the view's ImageItem holds the preview slice, then until the
whole volume is loaded and drawn. The baseline is the second figure: what a viewer that waits
for the series to decode would show. Target: first slice <= 0.3 s, whatever the series length.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_load import ensure_data  # noqa: E402
from PySide6.QtCore import QSettings  # noqa: E402

from medviewer.core.dicom import scan  # noqa: E402
from medviewer.ui.shell.app import make_application  # noqa: E402
from medviewer.ui.shell.main_window import MainWindow  # noqa: E402


def wait_until(app, predicate, timeout: float = 60.0) -> float:
    start = time.perf_counter()
    while not predicate():
        app.processEvents()
        if time.perf_counter() - start > timeout:
            raise TimeoutError("the viewer did not draw in time")
        time.sleep(0.0005)
    return time.perf_counter() - start


def open_once(app, series, settings_file: str) -> tuple[float, float]:
    window = MainWindow(settings=QSettings(settings_file, QSettings.Format.IniFormat))
    window.resize(1400, 900)
    window.show()
    app.processEvents()
    view = window.viewer.single_view
    loaded = []
    window.volume_loaded.connect(loaded.append)
    start = time.perf_counter()
    window.open_series(series)
    first = wait_until(app, lambda: view.image_item.image is not None)
    wait_until(app, lambda: bool(loaded))
    full = time.perf_counter() - start
    window.close()
    window.deleteLater()
    app.processEvents()
    return first, full


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--slices", type=int, default=300)
    args = parser.parse_args()
    raw, rle = ensure_data(args.slices)
    app = make_application([])
    settings_file = os.path.join(tempfile.mkdtemp(), "bench.ini")
    print(f"\n{args.slices} x 512 x 512 CT, offscreen main window, median of {args.repeat}\n")
    print("| series | first slice on screen | whole volume loaded (baseline) | ratio |")
    print("|---|---|---|---|")
    for label, folder in (("uncompressed", raw), ("RLE", rle)):
        series = max(scan(folder).all_series(), key=lambda s: s.image_count)
        open_once(app, series, settings_file)  # warm caches and lazy imports
        runs = [open_once(app, series, settings_file) for _ in range(args.repeat)]
        first = statistics.median(r[0] for r in runs)
        full = statistics.median(r[1] for r in runs)
        print(f"| {label} | {first * 1000:.0f} ms | {full * 1000:.0f} ms | {first / full:.2f}x |")


if __name__ == "__main__":
    main()
