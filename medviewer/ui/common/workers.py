"""Background work for the viewer: scans, series loads, thumbnails and tag reads.

The GUI thread must never wait on the disk or a decoder, so every such call runs in a `Worker`
on a `WorkerPool`. A worker's function receives a `TaskContext` that it passes on to the core:
`ctx.progress` as the progress callback and `ctx.is_cancelled` as the cancel check. Results,
errors, progress and partial results (e.g. a preview slice before the whole volume) come back
as Qt signals, which Qt delivers on the GUI thread because the signal object lives there.

A cancelled worker never delivers its result: a newer selection replaces an older load without
the old volume flashing onto the screen.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal
from PySide6.QtWidgets import QWidget

from medviewer.core.dicom.errors import DicomError
from medviewer.core.dicom.model import ScanResult, Series
from medviewer.core.display import Window, default_window

if TYPE_CHECKING:  # pydicom loads with the first series, not before the first paint
    from medviewer.core.dicom.volume import SliceSource, Volume

log = logging.getLogger(__name__)

# Progress is throttled so that a scan of 10,000 files does not flood the event loop.
PROGRESS_INTERVAL_S = 0.05


class WorkerSignals(QObject):
    """Signals of one worker; created on the GUI thread so slots run there."""

    sigProgress = Signal(int, int)  # (done, total)
    sigPartial = Signal(object)  # an intermediate result, e.g. the preview slice
    sigResult = Signal(object)
    sigError = Signal(object)  # the exception instance
    sigCancelled = Signal()
    sigFinished = Signal()  # always last, whatever the outcome


class TaskContext:
    """What a background function may use to talk back: progress, partials, cancellation."""

    def __init__(self, signals: WorkerSignals) -> None:
        self._signals = signals
        self.cancel_event = threading.Event()
        self._last_progress = 0.0

    def is_cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def progress(self, done: int, total: int) -> None:
        """Forward (done, total) to the GUI, at most every PROGRESS_INTERVAL_S and at the end."""
        now = time.monotonic()
        if done >= total or now - self._last_progress >= PROGRESS_INTERVAL_S:
            self._last_progress = now
            self._signals.sigProgress.emit(int(done), int(total))

    def partial(self, value: Any) -> None:
        if not self.is_cancelled():
            self._signals.sigPartial.emit(value)


class Worker(QRunnable):
    """Runs `fn(ctx, *args, **kwargs)` on a pool thread and reports through `signals`."""

    def __init__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self.setAutoDelete(False)  # the pool's Python set owns us until sigFinished
        self.signals = WorkerSignals()
        self.ctx = TaskContext(self.signals)
        self._fn = fn
        self._args = args
        self._kwargs = kwargs
        self.done = threading.Event()
        self.name = getattr(fn, "__name__", "task")

    def cancel(self) -> None:
        self.ctx.cancel_event.set()

    @property
    def is_cancelled(self) -> bool:
        return self.ctx.is_cancelled()

    def run(self) -> None:
        """Qt override, runs on the pool thread."""
        try:
            result = self._fn(self.ctx, *self._args, **self._kwargs)
        except Exception as exc:  # every failure must reach the GUI, never kill the thread
            if self.ctx.is_cancelled():
                self.signals.sigCancelled.emit()
            else:
                log.debug("worker %s failed:\n%s", self.name, traceback.format_exc())
                self.signals.sigError.emit(exc)
        else:
            if self.ctx.is_cancelled():
                self.signals.sigCancelled.emit()
            else:
                self.signals.sigResult.emit(result)
        finally:
            self.done.set()
            self.signals.sigFinished.emit()


class WorkerPool(QObject):
    """The window's own thread pool: it knows its workers so it can cancel and wait on close."""

    sigBusyChanged = Signal(bool)

    def __init__(self, parent: QObject | None = None, max_threads: int = 4) -> None:
        super().__init__(parent)
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(max_threads)
        self._workers: set[Worker] = set()
        self._closed = False

    def _unless_closed(self, slot: Callable[..., Any]) -> Callable[..., Any]:
        """A result queued before shutdown must not reach widgets deleted since."""

        def call(*args: Any) -> Any:
            return None if self._closed else slot(*args)

        return call

    def start(
        self,
        fn: Callable[..., Any],
        *args: Any,
        on_result: Callable[[Any], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
        on_progress: Callable[[int, int], None] | None = None,
        on_partial: Callable[[Any], None] | None = None,
        on_cancelled: Callable[[], None] | None = None,
        on_finished: Callable[[], None] | None = None,
        **kwargs: Any,
    ) -> Worker:
        """Queue `fn(ctx, *args, **kwargs)`; callbacks run on the GUI thread.

        Callbacks are connected here, before the worker starts: a signal emitted before its
        connection exists would be lost (a fast task could finish first).
        """
        worker = Worker(fn, *args, **kwargs)
        sig = worker.signals
        for signal, slot in (
            (sig.sigResult, on_result),
            (sig.sigError, on_error),
            (sig.sigProgress, on_progress),
            (sig.sigPartial, on_partial),
            (sig.sigCancelled, on_cancelled),
            (sig.sigFinished, on_finished),
        ):
            if slot is not None:
                signal.connect(self._unless_closed(slot))
        sig.sigFinished.connect(lambda w=worker: self._forget(w))
        self._workers.add(worker)
        self._pool.start(worker)
        return worker

    def _forget(self, worker: Worker) -> None:
        self._workers.discard(worker)

    @property
    def active(self) -> int:
        return sum(1 for w in self._workers if not w.done.is_set())

    def cancel_all(self) -> None:
        for worker in list(self._workers):
            worker.cancel()

    def shutdown(self, timeout_ms: int = 10_000) -> bool:
        """Cancel every worker and wait for them: nothing may outlive the window, and no
        result still queued in the event loop is delivered afterwards."""
        self._closed = True
        self.cancel_all()
        for worker in list(self._workers):
            if not worker.done.is_set() and self._pool.tryTake(worker):  # queued, never started
                worker.done.set()
                self._workers.discard(worker)
        ok = self._pool.waitForDone(timeout_ms)
        if not ok:
            log.warning("%d background task(s) still running at shutdown", self.active)
        return ok


class TaskRunner(QObject):
    """At most one task per kind ("scan", "load"), shown in the status bar while it runs.

    A new task of a kind cancels the older one, and callbacks of a task that is no longer
    current are dropped: a result already queued when the reader chose another series must
    not replace the newer one on screen.
    """

    def __init__(self, pool: WorkerPool, busy_widgets: Sequence[QWidget], progress_bar: Any,
                 on_cancelled: Callable[[str], None] | None = None) -> None:
        super().__init__(pool)
        self._pool = pool
        self._busy_widgets = list(busy_widgets)
        self._progress_bar = progress_bar
        self._on_cancelled = on_cancelled
        self.tasks: dict[str, Worker] = {}
        self._show_busy(False)

    @property
    def busy(self) -> bool:
        return bool(self.tasks)

    def start(self, kind: str, fn: Callable[..., Any], *args: Any,
              **callbacks: Callable[..., Any]) -> Worker:
        self.cancel(kind)
        cell: list[Worker] = []  # filled before the event loop runs, so before any callback

        def current() -> bool:
            return bool(cell) and self.tasks.get(kind) is cell[0] and not cell[0].is_cancelled

        only_current = {name: _only_if(current, slot) for name, slot in callbacks.items()}
        worker = self._pool.start(
            fn, *args, **only_current,
            on_progress=_only_if(current, self._on_progress),
            on_cancelled=lambda: self._cancelled(kind, cell[0]),
            on_finished=lambda: self._finished(kind, cell[0]),
        )
        cell.append(worker)
        self.tasks[kind] = worker
        self._progress_bar.setRange(0, 0)  # "busy" until the first progress report
        self._show_busy(True)
        return worker

    def cancel(self, kind: str) -> None:
        """Cancel the running task of this kind, if any."""
        worker = self.tasks.get(kind)
        if worker is not None:
            worker.cancel()

    def cancel_all(self) -> None:
        for kind in list(self.tasks):
            self.cancel(kind)

    def _on_progress(self, done: int, total: int) -> None:
        if total > 0:
            self._progress_bar.setRange(0, total)
            self._progress_bar.setValue(done)

    def _cancelled(self, kind: str, worker: Worker) -> None:
        if self.tasks.get(kind) is worker and self._on_cancelled is not None:
            self._on_cancelled(kind)

    def _finished(self, kind: str, worker: Worker) -> None:
        if self.tasks.get(kind) is worker:
            del self.tasks[kind]
        if not self.tasks:
            self._show_busy(False)

    def _show_busy(self, busy: bool) -> None:
        for widget in self._busy_widgets:
            widget.setVisible(busy)


def _only_if(condition: Callable[[], bool], slot: Callable[..., Any]) -> Callable[..., Any]:
    return lambda *args: slot(*args) if condition() else None


# --------------------------------------------------------------------------- the viewer's tasks
# Plain functions run by `WorkerPool.start(fn, ...)`: they call the core and nothing of Qt.


@dataclass
class Preview:
    """The middle slice of a series, decoded before the rest so the reader sees it at once."""

    slice: np.ndarray
    series: Series
    window: Window
    index: int
    count: int
    affine: np.ndarray
    source: SliceSource
    has_geometry: bool = True
    patient_orientation: tuple[str, str] | None = None
    header: dict[str, str] = field(default_factory=dict)  # patient / series facts to overlay
    photometric: str = "MONOCHROME2"  # MONOCHROME1 previews show inverted, as the volume will
    spacing_known: bool = True

    def show_on(self, document: Any) -> None:
        """Hand this preview to a StudyDocument (what the main window does on arrival)."""
        document.set_preview(self.slice, self.series, self.window, self.index, self.count,
                             affine=self.affine, source=self.source,
                             has_geometry=self.has_geometry,
                             patient_orientation=self.patient_orientation, header=self.header,
                             photometric=self.photometric, spacing_known=self.spacing_known)


def scan_task(ctx: TaskContext, paths: Any, cache: bool | str | Path = True) -> ScanResult:
    from medviewer.core.dicom import scan

    return scan(paths, progress=ctx.progress, cancel=ctx.is_cancelled, cache=cache)


def load_series_task(ctx: TaskContext, series: Series) -> Volume:
    """Middle slice first (as a partial), then the whole volume with progress and cancel."""
    from medviewer.core.dicom.volume import SeriesLoader

    loader = SeriesLoader(series)
    count = loader.slice_count
    k = count // 2
    try:
        frame = loader.read_slice(k)
    except DicomError:  # a bad middle slice: no preview; the full load shows it with its reason
        frame = None
    if frame is not None:
        ctx.partial(Preview(frame, series, default_window(frame, loader.windows), k, count,
                            loader.affine, loader.source(k), loader.has_geometry,
                            loader.patient_orientation, dict(loader.header),
                            loader.photometric, loader.spacing_known))
    return loader.load(progress=ctx.progress, cancel=ctx.is_cancelled)


def demo_task(ctx: TaskContext) -> str:
    """Generate (first start only) the built-in demo study; returns its folder."""
    from medviewer.core.demo import ensure_demo_study

    return str(ensure_demo_study())
