"""Model -> Retrain...'s logic, usable without the dialog: the job file, the child, its events.

    process = TrainingProcess()
    process.sigEvent.connect(history.add)          # one dict per JSON line the child prints
    process.sigFinished.connect(on_end)            # (exit code, "finished"|"failed"|"cancelled")
    process.start(write_job(job))                  # `python -m medviewer train JOB.json`

Training runs in a child process (torch, minutes of CPU) so the viewer's event loop never
waits for it: QProcess delivers the child's output as it comes, a line may arrive in pieces,
and a line that is not JSON (a library printing to stdout) becomes a log event instead of an
error. stderr is kept for the error text of a failed run. Cancel terminates the child
(SIGTERM; killed if it lingers): it only ever writes its candidate model atomically at the
end and never publishes, so a cancelled run leaves the model store as it was.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, QTimer, Signal

log = logging.getLogger(__name__)

JOB_NAME = "job.json"
KILL_AFTER_MS = 3000  # a child that ignores SIGTERM this long is killed
STDERR_KEEP = 64_000  # characters of stderr kept for the error message
CHILD_NICE = 10  # the child yields the CPU to the viewer (POSIX priority, 0 = same)
FINISHED, FAILED, CANCELLED = "finished", "failed", "cancelled"


def package_root() -> Path:
    """The folder holding this `medviewer` package: the child must run the same code."""
    return Path(__file__).resolve().parents[3]


def train_command(job_path: str | Path) -> list[str]:
    """The child's command line: the viewer's own interpreter, `medviewer train JOB`."""
    return [sys.executable, "-m", "medviewer", "train", str(job_path)]


def new_run_folder(model_id: str, runs_dir: Path | None = None) -> Path:
    """A new run folder, made here (the child is told its path in the job's "out")."""
    from medviewer.training.run import default_run_dir  # the name the CLI would pick

    for _ in range(1000):
        folder = default_run_dir(model_id, runs_dir)
        try:
            folder.mkdir(parents=True)
            return folder
        except FileExistsError:  # another start took the name meanwhile
            continue
    raise OSError(f"{runs_dir}: no free run folder name for {model_id}")


def write_job(job: dict[str, Any], runs_dir: Path | None = None) -> Path:
    """Write `job` as job.json in a new run folder (its "out"); the path to give the child."""
    folder = new_run_folder(str(job["model"]), runs_dir)
    job = {**job, "out": str(folder)}
    path = folder / JOB_NAME
    path.write_text(json.dumps(job, indent=2) + "\n", encoding="utf-8")
    return path


def annotated_series(scan_result: Any) -> list[tuple[Any, list[str]]]:
    """(Series, annotation kinds) of each scanned series whose workspace holds a SEG or SR."""
    from medviewer.core.annotations import AnnotationError, Workspace

    found = []
    for series in scan_result.all_series() if scan_result is not None else []:
        try:
            kinds = {a.kind for a in Workspace.for_series(series).list_annotations()}
        except (AnnotationError, OSError):
            continue
        kinds &= {"seg", "sr"}
        if kinds:
            found.append((series, sorted(kinds)))
    return found


def series_folder(series: Any) -> str:
    """The folder that holds a series' files (what the job's data.series lists)."""
    return str(Path(series.instances[0].path).resolve().parent)


def format_eta(seconds: float | None) -> str:
    """'about 2 min 05 s left' for the progress bar; '' when the child has not said yet."""
    if seconds is None or seconds != seconds or seconds < 0:
        return ""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"about {seconds} s left"
    minutes, rest = divmod(seconds, 60)
    if minutes < 60:
        return f"about {minutes} min {rest:02d} s left"
    return f"about {minutes // 60} h {minutes % 60:02d} min left"


@dataclass
class RunHistory:
    """What the curves, progress bar and log show, accumulated from the child's events."""

    step_loss: list[tuple[float, float]] = field(default_factory=list)  # (epoch units, loss)
    train_loss: list[tuple[int, float]] = field(default_factory=list)  # per epoch
    val_loss: list[tuple[int, float]] = field(default_factory=list)
    metric: list[tuple[int, float]] = field(default_factory=list)
    main_metric: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)  # the latest epoch's validation scores
    progress: float = 0.0
    eta_s: float | None = None
    start: dict[str, Any] | None = None
    compare: dict[str, Any] | None = None  # the "compare" event
    done: dict[str, Any] | None = None
    error: str = ""

    def add(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "step":
            self._step(event)
        elif kind == "epoch":
            self._epoch(event)
        elif kind in ("start", "compare", "done"):
            setattr(self, str(kind), event)
        elif kind == "error":
            self.error = str(event.get("message", ""))
        self._progress(event)

    def _step(self, event: dict[str, Any]) -> None:
        steps = max(int(event.get("steps") or 1), 1)
        x = int(event.get("epoch", 1)) - 1 + int(event.get("step", 0)) / steps
        if _number(event.get("loss")):
            self.step_loss.append((x, float(event["loss"])))

    def _epoch(self, event: dict[str, Any]) -> None:
        epoch = int(event.get("epoch", len(self.train_loss) + 1))
        self.main_metric = str(event.get("main_metric") or self.main_metric)
        self.metrics = dict(event.get("metrics") or {})
        for series, value in ((self.train_loss, event.get("train_loss")),
                              (self.val_loss, event.get("val_loss")),
                              (self.metric, (event.get("metrics") or {}).get(self.main_metric))):
            if _number(value):
                series.append((epoch, float(value)))

    def _progress(self, event: dict[str, Any]) -> None:
        if _number(event.get("progress")):
            self.progress = min(max(float(event["progress"]), 0.0), 1.0)
        if "eta_s" in event:
            self.eta_s = float(event["eta_s"]) if _number(event["eta_s"]) else None
        if event.get("event") == "done":
            self.progress, self.eta_s = 1.0, 0.0


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def describe_event(event: dict[str, Any]) -> str:
    """One log line for an event the log pane shows ('' for the ones only the curves show)."""
    kind = event.get("event")
    if kind in ("start", "log", "early_stop", "error", "cancelled"):
        level = event.get("level", "error" if kind == "error" else "info")
        prefix = "" if level == "info" else f"{str(level).capitalize()}: "
        return prefix + str(event.get("message", ""))
    if kind == "epoch":
        from medviewer.training.segmentation_metrics import headline_metrics

        # a segmentation's per-label scores are the progress view's table, not this line
        shown = headline_metrics(event.get("metrics") or {})
        metrics = ", ".join(f"{k} {v:.3f}" for k, v in shown.items()
                            if _number(v) and k != "n" and not k.startswith("n_"))
        val = event.get("val_loss")
        val_text = f", validation loss {val:.4f}" if _number(val) else ""
        train = event.get("train_loss")
        train_text = f"train loss {train:.4f}" if _number(train) else "no train loss"
        best = " (best so far)" if event.get("best") else ""
        return (f"Epoch {event.get('epoch')}/{event.get('epochs')}: {train_text}{val_text}; "
                f"{metrics}{best}")
    if kind == "export":
        parity = event.get("parity")
        check = f"largest relative difference to PyTorch {parity:.1e}" if _number(parity) else ""
        return f"Exported to ONNX: {event.get('folder')} ({check or 'no parity check'})"
    if kind == "compare":
        from medviewer.training.metrics import comparison_text

        paired = event.get("paired")
        if not isinstance(paired, dict):  # a child that reports no paired comparison
            return f"Compared with the current version on {event.get('main_metric')}"
        return comparison_text(paired, str(paired.get("per_case_score") or "the cases"))
    if kind == "done":
        return f"Finished in {float(event.get('seconds', 0.0)):.0f} s: {event.get('candidate')}"
    return ""


class TrainingProcess(QObject):
    """One training child at a time: start, stream its events, cancel, report how it ended."""

    sigEvent = Signal(dict)  # every JSON object the child printed, in order
    sigStderr = Signal(str)  # each line the child wrote to stderr (warnings, tracebacks)
    sigFinished = Signal(int, str)  # exit code, "finished" | "failed" | "cancelled"
    sigFailed = Signal(str)  # the sentence to show (before sigFinished, failed runs only)

    def __init__(self, parent: QObject | None = None,
                 command: Sequence[str] | None = None) -> None:
        """`command`: the program and leading arguments; the job path is appended (tests run
        a fake child this way). Default: `python -m medviewer train`."""
        super().__init__(parent)
        self.command = list(command) if command else None
        self.process: QProcess | None = None
        self.job_path: Path | None = None
        self.events: list[dict[str, Any]] = []
        self.stderr_text = ""
        self.status = ""
        self._stdout_tail = b""
        self._stderr_tail = b""
        self._cancelled = False
        self._ended = self._crashed = False
        self._kill_timer = QTimer(self)
        self._kill_timer.setSingleShot(True)
        self._kill_timer.timeout.connect(self._kill)

    @property
    def running(self) -> bool:
        return self.process is not None and \
            self.process.state() != QProcess.ProcessState.NotRunning

    def start(self, job_path: str | Path) -> None:
        """Start the child on `job_path`; refused while one is running."""
        if self.running:
            raise RuntimeError("A training run is already in progress; cancel it first.")
        self.job_path = Path(job_path)
        self.events, self.stderr_text, self.status = [], "", ""
        self._stdout_tail = self._stderr_tail = b""
        self._cancelled = self._ended = False
        argv = [*self.command, str(job_path)] if self.command else train_command(job_path)
        process = QProcess(self)
        process.setProcessEnvironment(self._environment())
        process.setWorkingDirectory(str(self.job_path.parent))
        process.readyReadStandardOutput.connect(self._read_stdout)
        process.readyReadStandardError.connect(self._read_stderr)
        process.finished.connect(self._on_finished)
        process.errorOccurred.connect(self._on_error)
        process.started.connect(self._lower_priority)
        self.process = process
        process.start(argv[0], argv[1:])

    @staticmethod
    def _environment() -> QProcessEnvironment:
        """The viewer's environment, plus: this checkout first on the path, unbuffered, one
        core fewer than the machine has for torch (the viewer keeps one)."""
        env = QProcessEnvironment.systemEnvironment()
        paths = [str(package_root()), os.environ.get("PYTHONPATH", "")]
        env.insert("PYTHONPATH", os.pathsep.join(p for p in paths if p))
        env.insert("PYTHONUNBUFFERED", "1")
        if not env.contains("OMP_NUM_THREADS"):  # leave the viewer a core of its own
            env.insert("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 2) - 1)))
        return env

    def _lower_priority(self) -> None:
        """Training gets the CPU the viewer leaves: on a laptop with few cores a child at the
        same priority delays repaints by 100+ ms. Set as soon as it starts, so torch's worker
        threads (made later) inherit it."""
        if self.process is None or not hasattr(os, "setpriority") or CHILD_NICE <= 0:
            return
        try:
            os.setpriority(os.PRIO_PROCESS, int(self.process.processId()), CHILD_NICE)
        except OSError as exc:  # gone already, or not allowed: it only costs smoothness
            log.debug("could not lower the training child's priority: %s", exc)

    def cancel(self) -> None:
        """Terminate the child (SIGTERM, then kill after KILL_AFTER_MS): status "cancelled"."""
        if not self.running:
            return
        self._cancelled = True
        assert self.process is not None
        self.process.terminate()
        self._kill_timer.start(KILL_AFTER_MS)

    def wait(self, msecs: int = 5000) -> bool:
        """Block until the child has ended (closing the window; tests)."""
        return self.process is None or self.process.state() == QProcess.ProcessState.NotRunning \
            or self.process.waitForFinished(msecs)

    def _kill(self) -> None:
        if self.running:
            assert self.process is not None
            self.process.kill()

    # ----------------------------------------------------------------- output
    def _read_stdout(self) -> None:
        assert self.process is not None
        data = self._stdout_tail + bytes(self.process.readAllStandardOutput().data())
        *lines, self._stdout_tail = data.split(b"\n")  # the last piece may be half a line
        for line in lines:
            self._line(line)

    def _read_stderr(self) -> None:
        assert self.process is not None
        data = self._stderr_tail + bytes(self.process.readAllStandardError().data())
        *lines, self._stderr_tail = data.split(b"\n")
        for line in lines:
            self._stderr_line(line)

    def _stderr_line(self, raw: bytes) -> None:
        text = raw.decode("utf-8", "replace").rstrip("\r")
        self.stderr_text = (self.stderr_text + text + "\n")[-STDERR_KEEP:]
        if text.strip():
            self.sigStderr.emit(text)

    def _line(self, raw: bytes) -> None:
        text = raw.decode("utf-8", "replace").strip()
        if not text:
            return
        try:
            event = json.loads(text)
        except ValueError:
            event = None
        if not isinstance(event, dict) or "event" not in event:
            event = {"event": "log", "level": "info", "message": text, "noise": True}
        self.events.append(event)
        self.sigEvent.emit(event)

    # ----------------------------------------------------------------- the end
    def _on_finished(self, exit_code: int, exit_status: Any = None) -> None:
        if self._ended:
            return
        self._ended = True
        self._crashed = exit_status == QProcess.ExitStatus.CrashExit
        self._kill_timer.stop()
        self._read_stdout()
        self._read_stderr()
        if self._stdout_tail:  # a last line without its newline
            self._line(self._stdout_tail)
        if self._stderr_tail:
            self._stderr_line(self._stderr_tail)
        self._stdout_tail = self._stderr_tail = b""
        self._end(exit_code)

    def _end(self, exit_code: int) -> None:
        done = any(e.get("event") == "done" for e in self.events)
        if self._cancelled:
            self.status = CANCELLED
        elif exit_code == 0 and done:
            self.status = FINISHED
        else:
            self.status = FAILED
            self.sigFailed.emit(self.failure_text(exit_code))
        self.sigFinished.emit(exit_code, self.status)

    def failure_text(self, exit_code: int) -> str:
        """The child's own error sentence, else the last line of its stderr, else the code."""
        errors = [str(e.get("message")) for e in self.events if e.get("event") == "error"]
        if errors:
            return errors[-1]
        lines = [line for line in self.stderr_text.splitlines() if line.strip()]
        if lines:
            return lines[-1].strip()
        if self._crashed:
            return ("The training process was killed before it finished (by the system, e.g. "
                    "out of memory, or by another program). Nothing was published; try a "
                    "smaller batch size.")
        if exit_code == 0:
            return "The training process ended without finishing its run (no 'done' event)."
        return f"The training process ended with exit code {exit_code} and no message."

    def _on_error(self, error: QProcess.ProcessError) -> None:
        if error != QProcess.ProcessError.FailedToStart or self._ended:
            return  # crashes and kills also arrive as `finished`
        self._ended = True
        self.status = FAILED
        assert self.process is not None
        self.sigFailed.emit(f"Could not start the training process: "
                            f"{self.process.errorString()}")
        self.sigFinished.emit(-1, FAILED)
