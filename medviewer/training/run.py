"""One training job from start to candidate: `medviewer train JOB.json`.

load the job -> find the baseline model (its active version) -> build the data -> train ->
reload the best weights -> export the candidate (ONNX, parity-checked, atomic) -> evaluate
current and candidate through ONNX Runtime on the same validation split -> compare.json.

Progress is one JSON object per line on stdout (and in <run_dir>/events.jsonl). Nothing is
published: the candidate waits in the run folder until the user picks "Use this version", so
a run that is cancelled or fails leaves the model store as it was.
Exit codes: 0 done, 1 the run failed, 2 a bad job (file, model or data), 130 / 143 cancelled
(a "cancelled" event, not an error).
"""

from __future__ import annotations

import json
import signal
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from medviewer.core.atomic import write_text_atomic
from medviewer.inference.errors import ModelError
from medviewer.inference.manifest import Manifest, load_manifest
from medviewer.inference.versions import active_version, next_version
from medviewer.training.errors import TrainingCancelled, TrainingError
from medviewer.training.job import Job, load_job

EXIT_FAILED, EXIT_BAD_JOB, EXIT_INTERRUPTED, EXIT_TERMINATED = 1, 2, 130, 143


class Reporter:
    """Events as JSON lines on `stream` and in events.jsonl; silent on ranks other than 0."""

    def __init__(self, stream: IO[str] | None) -> None:
        self.stream, self.file, self.pending = stream, None, []

    def open(self, run_dir: Path) -> None:
        """events.jsonl, held for this run (rundir.py: a second run in the folder is a bad
        job; a killed run's leftovers and half line are removed first)."""
        if self.stream is None:
            return
        from medviewer.training import rundir

        self.file = rundir.open_events(run_dir)
        for line in self.pending:
            self.file.write(line)
        self.file.flush()
        self.pending = []

    def __call__(self, event: dict[str, Any]) -> None:
        if self.stream is None:
            return
        from medviewer.training.evaluate import json_safe

        line = json.dumps(json_safe(event)) + "\n"
        self.stream.write(line)
        self.stream.flush()
        if self.file is not None:
            self.file.write(line)
            self.file.flush()
        else:
            self.pending.append(line)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


@dataclass
class Prepared:
    job: Job
    manifest: Manifest
    data: Any  # datasets.TrainingData
    run_dir: Path
    built: Any = None  # recipes.Built: the model, made before anything is written


def resolve_model(job: Job) -> Manifest:
    """The baseline: a model folder, or the ACTIVE version of a model id."""
    try:
        if Path(job.model).is_dir():
            return load_manifest(job.model, verify=True)
        return load_manifest(active_version(job.model).folder, verify=True)
    except ModelError as exc:
        raise TrainingError(job.path, f"Model {job.model!r} cannot be used: {exc.reason} "
                            "Pick an installed model id (`medviewer models`) or a model "
                            "folder.") from exc


def default_run_dir(model_id: str, runs_dir: Path | None = None) -> Path:
    """A free `<data_dir>/runs/<model>-<YYYYmmdd-HHMMSS>` (a suffix when two share a second);
    named, not made: only the leading rank makes it."""
    from medviewer.core.demo import data_dir

    runs_dir = data_dir() / "runs" if runs_dir is None else Path(runs_dir)
    base = runs_dir / f"{Path(model_id).name}-{datetime.now():%Y%m%d-%H%M%S}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def prepare(job_path: str | Path, world: Any) -> Prepared:
    """Everything that makes a job "bad" (exit 2) is found here, before any training."""
    from medviewer.training import distributed
    from medviewer.training.datasets import build_data

    job = load_job(job_path)
    manifest = resolve_model(job)
    _check_device(job)
    built = build_baseline(job, manifest)  # damaged weights are a bad model (exit 2)
    data = build_data(job, manifest)
    if len(data.train) == 0:
        raise TrainingError(job.path, "The job's data gave no training samples; add "
                            "annotated series or demo cases.")
    run_dir = Path(job.out) if job.out else default_run_dir(manifest.id)
    run_dir = Path(distributed.share(str(run_dir), world))
    return Prepared(job, manifest, data, run_dir, built)


def build_baseline(job: Job, manifest: Manifest) -> Any:
    """The model to train: the baseline's architecture and, for "current", its weights (a
    file that does not load is a TrainingError naming the model and the file)."""
    import torch

    from medviewer.training import recipes

    torch.manual_seed(job.seed)  # the same fresh weights for the same seed
    return recipes.build_model(manifest, job.init, job.path, job.backbone_weights)


def _check_device(job: Job) -> None:
    import torch

    if job.device == "cuda" and not torch.cuda.is_available():
        raise TrainingError(job.path, 'The job asks for "device": "cuda" but torch sees no '
                            'CUDA GPU here; use "auto" or "cpu".')


def open_run_dir(p: Prepared, emit: Reporter) -> None:
    """Make the run folder and its first files; an unwritable "out" is a bad job (exit 2).
    What killed runs left in it and in the runs folder is removed first (rundir.py)."""
    from medviewer.core.demo import data_dir
    from medviewer.training import rundir

    try:
        p.run_dir.mkdir(parents=True, exist_ok=True)
        emit.open(p.run_dir)  # held from here: no other run writes this folder
        write_run_files(p)
    except OSError as exc:
        raise TrainingError(p.job.path, f"The run folder {p.run_dir} cannot be written "
                            f"({exc.strerror or exc}); set \"out\" to a folder you can write "
                            "to.") from exc
    rundir.tidy_runs(data_dir() / "runs")


def write_run_files(p: Prepared) -> None:
    job = {**p.job.to_dict(), "source": p.job.path, "baseline": str(p.manifest.folder)}
    write_text_atomic(p.run_dir / "job.json", json.dumps(job, indent=2) + "\n")
    write_text_atomic(p.run_dir / "split.json", json.dumps(p.data.split, indent=2) + "\n")


def split_summary(data: Any) -> dict[str, Any]:
    """Counts of the split for events and compare.json (split.json holds the full record)."""
    split = data.split
    cases = split.get("cases", {})
    val_patients = set(split.get("validation", []))
    val_cases = sum(1 for patient in cases.values() if patient in val_patients)
    return {"seed": split.get("seed"), "val_fraction": split.get("val_fraction"),
            "train_patients": len(split.get("train", [])),
            "validation_patients": len(val_patients), "train_cases": len(cases) - val_cases,
            "validation_cases": val_cases, "train_samples": len(data.train),
            "validation_samples": len(data.validation)}


# --- training, export, comparison ---------------------------------------------------------

def pick_device(job: Job, world: Any) -> Any:
    import torch

    if job.device == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", world.local_rank if world.size > 1 else 0)


def make_setup(p: Prepared, world: Any, built: Any, device: Any) -> Any:
    """The loop's Setup: loaders, DDP-wrapped objective, optimiser, schedule."""
    from torch.utils.data import DataLoader

    from medviewer.training import distributed, loop, recipes

    job, task = p.job, recipes.task_of(p.manifest)
    model = built.model.to(device)
    objective = distributed.wrap(recipes.Objective(model, built.arch, task), device, world)
    loader, sampler = loop.make_loader(p.data.train, p.data.collate, job.batch_size, job.seed,
                                       world.size, world.rank)
    steps = loop.steps_per_epoch(loader, job.max_steps_per_epoch)
    optimizer = recipes.make_optimizer(model, job.optimizer, job.lr, task)
    validation = (DataLoader(p.data.validation, batch_size=job.batch_size, shuffle=False,
                             collate_fn=p.data.collate, num_workers=0)
                  if len(p.data.validation) else None)
    stop = job.early_stopping
    return loop.Setup(
        model=model, objective=objective, arch=built.arch, task=task,
        labels=list(p.manifest.label_names), optimizer=optimizer,
        schedule=recipes.make_schedule(optimizer, job.schedule, job.epochs, steps),
        loader=loader, steps=steps, validation=validation, device=device, epochs=job.epochs,
        patience=stop.patience if stop else None, min_delta=stop.min_delta if stop else 0.0,
        run_dir=p.run_dir, keep_best=world.leader, world_size=world.size, sampler=sampler)


def start_event(p: Prepared, built: Any, setup: Any, world: Any) -> dict[str, Any]:
    summary = split_summary(p.data)
    return {"event": "start", "model": p.manifest.id, "from_version": p.manifest.version,
            "init": built.init, "message": built.message, "run_dir": str(p.run_dir),
            "epochs": p.job.epochs, "steps_per_epoch": setup.steps,
            **{k: summary[k] for k in ("train_cases", "validation_cases", "train_samples",
                                       "validation_samples")},
            "device": setup.device.type, "world_size": world.size}


def train_and_export(p: Prepared, world: Any, emit: Reporter) -> None:
    from medviewer.training import distributed, loop

    built = p.built or build_baseline(p.job, p.manifest)
    setup = make_setup(p, world, built, pick_device(p.job, world))
    emit(start_event(p, built, setup, world))
    for warning in p.data.split.get("warnings", []):  # e.g. a segment named like no label
        emit({"event": "log", "level": "warning", "message": str(warning)})
    outcome = loop.fit(setup, emit)
    distributed.write_digest(built.model, p.run_dir, world)
    if not world.leader:
        return
    from medviewer.training.export import load_weights

    best = p.run_dir / loop.BEST_FILE
    model = load_weights(built.model.cpu(), best) if best.is_file() else built.model.cpu()
    candidate = export_candidate(p, model, built, outcome)
    emit({"event": "export", "folder": str(candidate.folder),
          "parity": candidate.provenance.get("parity_max_relative_error")})
    compared = compare(p, candidate, emit)
    record_baseline(candidate, compared)
    emit(compared)
    emit({"event": "done", "candidate": str(candidate.folder), "run_dir": str(p.run_dir),
          "seconds": round(outcome.seconds, 1)})


def export_inputs(p: Prepared, arch: Any, task: str) -> tuple:
    """Real validation (or training) items: the parity check compares real outputs."""
    from medviewer.training import recipes

    source = p.data.validation if len(p.data.validation) else p.data.train
    items = [source[i] for i in range(min(2, len(source)))]
    if task == "detection":
        return (items[0]["image"][None],)
    batch = p.data.collate(items)
    return tuple(t.cpu().float() for t in recipes.model_inputs(arch, batch))


def export_candidate(p: Prepared, model: Any, built: Any, outcome: Any) -> Manifest:
    import warnings

    import torch

    from medviewer.training import recipes
    from medviewer.training.export import export_model

    fields = p.manifest.to_dict()
    for key in ("format", "files", "onnx_inputs", "onnx_outputs", "lab", "task", "arch"):
        fields.pop(key, None)
    best = outcome.history[outcome.best_epoch - 1] if outcome.best_epoch else {}
    fields["version"] = next_version(p.manifest.id)  # 1.0.0 -> 1.1.0, the next free one
    summary = split_summary(p.data)
    fields["metrics"] = {**best.get("metrics", {}), "n": summary["validation_samples"],
                         "split": f"validation split of training run {p.run_dir.name}: "
                         f"{summary['validation_cases']} cases of "
                         f"{summary['validation_patients']} patients (split.json)"}
    fields["provenance"] = {
        "command": f"medviewer train {p.job.path}", "job": p.job.to_dict(),
        "init": built.init, "from": f"{p.manifest.id} {p.manifest.version}",
        "data": split_summary(p.data), "epochs": outcome.epochs_run,
        "best_epoch": outcome.best_epoch, "train_seconds": round(outcome.seconds, 1),
        "torch": torch.__version__}
    inputs = export_inputs(p, built.arch, recipes.task_of(p.manifest))
    with warnings.catch_warnings():  # the tracer's warnings about Faster R-CNN are expected
        warnings.simplefilter("ignore")
        return export_model(model.eval(), built.arch, p.run_dir / "candidate", fields, inputs)


def _evaluate(p: Prepared, manifest: Manifest, emit: Reporter) -> dict[str, Any]:
    from medviewer.training import evaluate, recipes

    entry = {"version": manifest.version, "folder": str(manifest.folder)}
    try:
        scores = evaluate.json_safe(evaluate.evaluate_folder(
            manifest, p.data.validation, p.data.collate, recipes.task_of(manifest),
            manifest.label_names, p.job.batch_size))
    except (ModelError, ValueError) as exc:
        emit({"event": "log", "level": "warning",
              "message": f"{manifest.id} {manifest.version} could not be evaluated: {exc}"})
        return {**entry, "metrics": {}, "per_case": None, "roc": None, "confusion": None}
    numbers, details = evaluate.split_details(scores)
    return {**entry, "metrics": numbers, **details}


def compare(p: Prepared, candidate: Manifest, emit: Reporter) -> dict[str, Any]:
    """Both versions through ONNX Runtime on the same validation split -> compare.json."""
    from medviewer.training import evaluate, recipes
    from medviewer.training.metrics import paired_comparison

    task = recipes.task_of(p.manifest)
    current, new = _evaluate(p, p.manifest, emit), _evaluate(p, candidate, emit)
    main = evaluate.main_metric(task, new["metrics"])
    # the verdict rests on the cases, not on two averages: paired per-case differences and
    # their bootstrap interval; "better" only when the whole interval lies above 0
    paired = {**paired_comparison(current.get("per_case"), new.get("per_case"),
                                  seed=p.job.seed), "per_case_score": evaluate.PER_CASE[task]}
    better = paired["verdict"] == "better"
    record = {"main_metric": main, "split": split_summary(p.data), "current": current,
              "candidate": new, "paired": paired, "better": better}
    path = write_text_atomic(p.run_dir / "compare.json", json.dumps(record, indent=2) + "\n")
    return {"event": "compare", "file": str(path), "main_metric": main,
            "current": {"version": current["version"], "metrics": current["metrics"]},
            "candidate": {"version": new["version"], "metrics": new["metrics"]},
            "paired": {k: paired[k] for k in ("n", "min_cases", "mean_difference", "ci",
                                               "level", "resamples", "verdict",
                                               "per_case_score")},
            "better": better}


def record_baseline(candidate: Manifest, compared: dict[str, Any]) -> None:
    """The candidate's manifest keeps its comparison with the version it was trained from,
    both measured on this run's validation set: the one pair of versions Model > Versions
    can set side by side (numbers on different sets do not compare)."""
    from dataclasses import replace

    from medviewer.inference.manifest import write_manifest

    main, paired = compared["main_metric"], compared["paired"]
    baseline = {"version": compared["current"]["version"], "metric": main,
                "baseline": compared["current"]["metrics"].get(main),
                "candidate": compared["candidate"]["metrics"].get(main),
                "cases": paired["n"], "verdict": paired["verdict"],
                "mean_difference": paired["mean_difference"], "ci": paired["ci"]}
    metrics = {**candidate.metrics, "versus_baseline": baseline}
    write_manifest(replace(candidate, metrics=metrics), candidate.folder)


def run_job(job_path: str | Path, *, stream: IO[str] | None = sys.stdout,
            distributed_run: bool = False) -> int:
    """Run a job, reporting events on `stream`; the exit code."""
    from medviewer.training import distributed

    world = distributed.init(_device_kind(job_path)) if distributed_run else distributed.World()
    emit = Reporter(stream if world.leader else None)
    previous = signal.signal(signal.SIGTERM, _cancel) if _main_thread() else None
    stage = "job"
    try:
        p = prepare(job_path, world)
        if world.leader:
            open_run_dir(p, emit)
        stage = "run"
        train_and_export(p, world, emit)
        return 0
    except TrainingCancelled:
        return _stopped(emit, EXIT_TERMINATED)
    except KeyboardInterrupt:
        return _stopped(emit, EXIT_INTERRUPTED)
    except (TrainingError, ModelError) as exc:
        return _failed(emit, str(exc), EXIT_BAD_JOB if stage == "job" else EXIT_FAILED)
    except Exception as exc:  # noqa: BLE001 - any failure becomes an error event, exit 1
        return _failed(emit, f"Training failed: {type(exc).__name__}: {exc}", EXIT_FAILED)
    finally:
        emit.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if distributed_run:
            distributed.shutdown()


def _device_kind(job_path: str | Path) -> str:
    """Before the job is validated: NCCL only when the job can run on CUDA."""
    import torch

    try:
        wanted = json.loads(Path(job_path).read_text(encoding="utf-8")).get("device", "auto")
    except (OSError, ValueError, AttributeError, RecursionError):
        wanted = "auto"
    return "cuda" if wanted != "cpu" and torch.cuda.is_available() else "cpu"


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _cancel(_signum: int, _frame: Any) -> None:
    raise TrainingCancelled()


def _stopped(emit: Reporter, code: int) -> int:
    """A cancel is what the user asked for, not an error: one "cancelled" event, no stderr."""
    emit({"event": "cancelled", "level": "info",
          "message": "Training was cancelled; no new version was made."})
    return code


def _failed(emit: Reporter, message: str, code: int) -> int:
    emit({"event": "error", "message": message})
    print(message, file=sys.stderr)
    return code
