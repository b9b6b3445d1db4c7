"""The viewer's event loop while a model trains in the Retrain dialog's child process.

    QT_QPA_PLATFORM=offscreen python benchmarks/bench_train_ui.py [--seconds 10]
        [--model lab1-digits-mlp] [--epochs 20] [--demo 40] [--batch 16]

The real main window with the Retrain dialog open. A 10 ms QTimer (PreciseTimer) stands for the
viewer's event loop: each tick's lateness (time since the previous tick minus 10 ms) is how
long the loop was busy or starved. Baseline in the same run: the same window and dialog for
the same time with no child. Then Start runs `medviewer train` (the GUI's real command) and
the ticks are measured while it trains: the child's JSON lines are parsed and the curves,
progress bar and log redrawn on the GUI thread meanwhile. Target: every iteration < 50 ms.
The run is cancelled when `--seconds` have passed (or measured to its end if shorter).
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
from PySide6.QtCore import QCoreApplication, QEventLoop, Qt, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from medviewer.ui.shell.app import configure_pyqtgraph  # noqa: E402
from medviewer.ui.shell.main_window import MainWindow  # noqa: E402
from medviewer.ui.training import process as training_process  # noqa: E402
from medviewer.ui.training.retrain_dialog import RetrainDialog  # noqa: E402

TICK_MS, TARGET_MS = 10, 50.0


def measure(seconds: float, until=None) -> list[float]:
    """Lateness (ms) of each tick of a 10 ms timer over `seconds` (or until `until()`)."""
    ticks: list[float] = []
    loop = QEventLoop()
    timer = QTimer()
    timer.setTimerType(Qt.TimerType.PreciseTimer)
    end = time.perf_counter() + seconds

    def tick() -> None:
        ticks.append(time.perf_counter())
        if ticks[-1] >= end or (until is not None and until()):
            loop.quit()

    timer.timeout.connect(tick)
    ticks.append(time.perf_counter())
    timer.start(TICK_MS)
    loop.exec()
    timer.stop()
    return [max(0.0, (b - a) * 1000 - TICK_MS) for a, b in zip(ticks, ticks[1:], strict=False)]


def summary(name: str, late: list[float]) -> str:
    arr = np.asarray(late)
    return (f"{name:28s} iterations {len(arr):5d}  lateness median {np.median(arr):6.2f} ms  "
            f"p99 {np.percentile(arr, 99):6.2f} ms  max {arr.max():7.2f} ms")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--model", default="lab1-digits-mlp")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--demo", type=int, default=40)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--child-nice", type=int, default=None,
                   help="the child's POSIX priority (default: training_process.CHILD_NICE; "
                   "0: the viewer's own)")
    args = p.parse_args()
    if args.child_nice is not None:
        training_process.CHILD_NICE = args.child_nice
    if "MEDVIEWER_DATA_DIR" not in os.environ:  # runs and versions never reach the user's store
        import tempfile

        os.environ["MEDVIEWER_DATA_DIR"] = tempfile.mkdtemp(prefix="bench-train-ui-")
    app = QApplication.instance() or QApplication(sys.argv)
    configure_pyqtgraph()
    window = MainWindow(scan_cache=False)
    window.show()
    dialog = RetrainDialog(window, model_id=args.model)
    dialog.epochs_spin.setValue(args.epochs)
    dialog.demo_spin.setValue(args.demo)
    dialog.batch_spin.setValue(args.batch)
    dialog.patience_spin.setValue(0)
    dialog.show()
    measure(0.5)  # first paints
    idle = measure(args.seconds)
    events = {"n": 0, "first": None}

    def count(event: dict) -> None:
        events["n"] += 1
        if event.get("event") in ("step", "epoch") and events["first"] is None:
            events["first"] = time.perf_counter()

    dialog.process.sigEvent.connect(count)
    handling: list[float] = []  # GUI-thread ms per batch of child output (parse + redraw)
    read = dialog.process._read_stdout

    def timed_read() -> None:
        t0 = time.perf_counter()
        read()
        handling.append((time.perf_counter() - t0) * 1000)

    dialog.process._read_stdout = timed_read  # connected by start(), so patched before it
    started = time.perf_counter()
    if not dialog.start():
        print(f"could not start: {dialog.status_label.text()}")
        return 1
    starting = measure(60.0, until=lambda: events["first"] is not None
                       or not dialog.process.running)
    warmup = time.perf_counter() - started  # interpreter + torch import + data
    training = measure(args.seconds, until=lambda: not dialog.process.running)
    status = "ran to its end" if not dialog.process.running else "cancelled after measuring"
    dialog.shutdown()
    QCoreApplication.processEvents()
    print("command: QT_QPA_PLATFORM=offscreen python3 " + " ".join(sys.argv))
    print(f"child: {' '.join(dialog.process.process.arguments())} (nice "
          f"{training_process.CHILD_NICE}; {status}; first progress "
          f"event {warmup:.1f} s after Start; {events['n']} events while measured)")
    print(summary("no child (baseline)", idle))
    print(summary("child starting (imports)", starting))
    print(summary("while training", training))
    if handling:
        print(f"GUI thread per read of the child's output (parse, curves, log): median "
              f"{statistics.median(handling):.2f} ms, max {max(handling):.2f} ms over "
              f"{len(handling)} reads")
    ok = max(training + starting) < TARGET_MS
    print(f"target: every iteration < {TARGET_MS:.0f} ms: {'met' if ok else 'NOT met'} "
          f"(median tick ratio training/baseline "
          f"{statistics.median(training) / max(statistics.median(idle), 1e-3):.2f}x)")
    log_tail = dialog.log_view.toPlainText().splitlines()[-3:]
    print("log tail:", *log_tail, sep="\n  ")
    window.close()
    app.processEvents()
    return 0


if __name__ == "__main__":
    sys.exit(main())
