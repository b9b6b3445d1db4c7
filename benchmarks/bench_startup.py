"""Issue 17 item 4: start-up, from process start to the main window's first paint.

    python3 benchmarks/bench_startup.py [--repeat 5] [--top 12]

Each repeat is a fresh interpreter (offscreen, warm disk cache after the first) that times:
importing PySide6 + `make_application`, importing the main window module, building and showing
the window as the real start does (`app.show_main_window`, used by `app.run`: the AI, Model,
Annotate, PACS and Export Dataset features are built on the tick after the first paint), the
first paint (the first paintEvent of any widget after show()), and "features ready" (those
features built, their menus and docks in the window; the bare window has none). The baseline,
in the same run: a bare QMainWindow with a pyqtgraph ImageItem, what any viewer of this kind
needs at least. Then one `python -X importtime` run lists the biggest imports before the first
paint (`make_application`, then the main window module). Prints best and median of each
figure, the ratio to the bare window started just before in the same repeat (the two kinds
alternate), and the load average. Target: < 0.5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMAND = "python3 benchmarks/bench_startup.py"

# Run in the child; `T0` is the interpreter's own start (time.perf_counter at its first line is
# as close as Python gets; the interpreter start itself is added from the parent's clock).
_CHILD = r"""
import time, json, sys
T0 = time.perf_counter()
marks = {}
from PySide6.QtCore import QObject, QEvent, QTimer
from PySide6.QtWidgets import QApplication
KIND = sys.argv[1]
if KIND == "medviewer":
    from medviewer.ui.shell.app import make_application
    app = make_application()
    marks["application"] = time.perf_counter() - T0
    from medviewer.ui.shell.main_window import MainWindow
    marks["import window"] = time.perf_counter() - T0
    from medviewer.ui.shell.app import show_main_window
else:
    import pyqtgraph as pg
    app = QApplication(sys.argv[:1])
    pg.setConfigOptions(imageAxisOrder="row-major")
    marks["application"] = time.perf_counter() - T0
    from PySide6.QtWidgets import QMainWindow
    marks["import window"] = time.perf_counter() - T0
    window = QMainWindow()
    view = pg.GraphicsLayoutWidget()
    view.addViewBox().addItem(pg.ImageItem())
    window.setCentralWidget(view)
    window.resize(1400, 900)

class FirstPaint(QObject):
    def eventFilter(self, obj, event):
        if event.type() == QEvent.Type.Paint and "first paint" not in marks:
            marks["first paint"] = time.perf_counter() - T0
            if KIND != "medviewer":
                marks["features ready"] = marks["first paint"]
                QTimer.singleShot(0, app.quit)
        return False

def features_ready():
    marks["features ready"] = time.perf_counter() - T0
    QTimer.singleShot(0, app.quit)

spy = FirstPaint()
app.installEventFilter(spy)  # the first paint of any widget of the window
if KIND == "medviewer":
    window = show_main_window()
    window.sigFeaturesReady.connect(features_ready)
else:
    window.show()
marks["shown"] = time.perf_counter() - T0
QTimer.singleShot(20000, app.quit)  # never hang the benchmark
if "features ready" not in marks:
    app.exec()
print(json.dumps(marks))
"""


def one_run(kind: str) -> dict[str, float]:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(ROOT))
    import time

    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _CHILD, kind], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=120)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{kind} start-up failed:\n{done.stderr[-2000:]}")
    marks = json.loads(done.stdout.strip().splitlines()[-1])
    if "features ready" not in marks:
        raise SystemExit(f"{kind}: the window's features were not built within 20 s: {marks}")
    # process start -> interpreter's first line: the wall time not seen by the child's clock
    # is spent after the paint (exit) as well, so it is estimated from a bare interpreter.
    return {**marks, "wall": wall}


def interpreter_start() -> float:
    import time

    runs = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        runs.append(time.perf_counter() - start)
    return min(runs)


def import_top(top: int) -> list[tuple[float, str]]:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-X", "importtime", "-c",
                           "from medviewer.ui.shell.app import make_application; "
                           "app = make_application(); import medviewer.ui.shell.main_window"],
                          capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    rows = []
    for line in done.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((int(parts[1]) / 1e6, parts[2].rstrip()))
    return sorted(rows, reverse=True)[:top]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args(argv)
    base = interpreter_start()
    print(f"{COMMAND} --repeat {args.repeat}; load average {os.getloadavg()[0]:.2f}; "
          f"bare interpreter start {base:.3f} s (added to every figure)\n")
    print("| start-up (best / median) | application | import window | shown | first paint "
          "| features ready |")
    print("|---|---|---|---|---|---|")
    kinds = ("baseline", "medviewer")
    for kind in kinds:
        one_run(kind)  # warm the disk cache
    runs: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
    for _ in range(args.repeat):  # interleaved: a load change on this shared machine hits both
        for kind in kinds:
            runs[kind].append(one_run(kind))
    paint = {}
    for kind in kinds:
        cols = []
        for key in ("application", "import window", "shown", "first paint", "features ready"):
            values = sorted(base + run[key] for run in runs[kind])
            cols.append(f"{values[0]:.3f} / {statistics.median(values):.3f}")
        paint[kind] = [base + run["first paint"] for run in runs[kind]]
        name = "bare QMainWindow + ImageItem" if kind == "baseline" else "MedViewer MainWindow"
        print(f"| {name} | " + " | ".join(cols) + " |")
    ours, bare = paint["medviewer"], paint["baseline"]
    ratios = sorted(m / b for m, b in zip(ours, bare, strict=True))
    print(f"\nfirst paint: best {min(ours):.3f} s, median {statistics.median(ours):.3f} s "
          f"(target < 0.5 s); per repeat {ratios[0]:.2f}-{ratios[-1]:.2f}x the bare window "
          f"started just before it (median {statistics.median(ratios):.2f}x)")
    print("\nbiggest imports before the first paint: make_application, then "
          "medviewer.ui.shell.main_window (cumulative, -X importtime):")
    for seconds, name in import_top(args.top):
        print(f"- {seconds:.3f} s {name.strip()}")
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
