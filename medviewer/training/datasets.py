"""Training data for a model: its workspace annotations and its lab's demo phantoms, by patient.

    data = build_data(job, manifest)   # TrainingData: train / validation datasets, split.json

Every image goes through the model plugin's own `preprocess` (the viewer's code, called with
no ONNX session), so training sees exactly the numbers the viewer feeds the model. The truth:
- segmentation (lab 4): the SEG saved in the series' workspace; segments are matched to the
  model's labels by name or code, or as the job's data.segment_labels maps them
  (`training.labels`); a segment with voxels that none takes stops the job, excluded ones are
  ignored (no loss, no score), never background. Only annotated slices are used (see SLICES).
- detection (lab 5): the SR's accepted and hand-drawn boxes; proposed and rejected ones are
  no findings. Labels by name; box labels are 1-based as the detector counts them.
- classification (labs 1, 2): the SR's slice class labels, a series label for every slice
  without its own; fusion (lab 3): the series label, one sample per series.
Demo phantoms come from the labs' own generators, with seeds (DEMO_SEED_BASE + i) that none
of the shipped models was validated on: lab 2 validated on phantom seeds 9000-9011, lab 5 on
films 20000-20063, labs 3 and 4 on phantoms drawn from the "validation" seed range (here the
"train" range), lab 1 on the held-out digits the demo study shows (here only training digits).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from medviewer.inference.errors import ModelError
from medviewer.inference.manifest import Manifest
from medviewer.training.augment import Augment
from medviewer.training.errors import TrainingError
from medviewer.training.labels import (
    IGNORE,
    Segment,
    check_mapping,
    target_value,
    unmapped_text,
)
from medviewer.training.split import split_patients, split_record

TASKS = {"classification": "classification", "fusion": "classification",
         "segmentation": "segmentation", "detection": "detection"}
SLICES = {
    "segmentation": "annotated slices only: a SEG stores no frame for an empty slice, so an "
                    "empty slice cannot be told from one never annotated, and training it as "
                    "background would teach the model to miss structures",
    "detection": "films with at least one accepted or hand-drawn box (proposed and rejected "
                 "boxes are left out)",
    "classification": "slices with a class label in the SR (a series label counts for every "
                      "slice without one of its own)",
    "fusion": "one sample per series with a series class label",
}


@dataclass
class TrainingData:
    task: str  # "classification" | "segmentation" | "detection" (fusion trains as a classifier)
    train: Dataset
    validation: Dataset
    labels: list[str]  # manifest label names: index = class / label value
    split: dict[str, Any]  # what split.json holds
    collate: Callable[[list[dict]], Any]
    augment: Callable[[dict], dict] | None = None  # applied to training items only


@dataclass
class Case:
    """One series or phantom as model samples; `slices` -1 for a whole-series sample."""

    case: str
    patient: str
    source: str  # "workspace:<annotation file>" | "demo:<seed>"
    images: np.ndarray  # (n, *model input) float32 (or float16 to halve a large set)
    targets: list[Any]  # int | (H, W) int64 | {"boxes", "labels"} per sample
    slices: list[int]
    extras: np.ndarray | None = None  # (n, k) float32

    @property
    def nbytes(self) -> int:
        return self.images.nbytes + sum(getattr(t, "nbytes", 8) for t in self.targets)


class CaseDataset(Dataset):
    """The samples of some cases; `augment` (training only) makes a new item per access."""

    def __init__(self, cases: Sequence[Case], augment: Callable[[dict], dict] | None = None
                 ) -> None:
        self.cases = list(cases)
        self.index = [(c, i) for c in self.cases for i in range(len(c.targets))]
        self.augment = augment

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, Any]:
        case, k = self.index[i]
        target = case.targets[k]
        # float16 storage (a large phantom set) comes out float32, as the models take it
        item = {"image": torch.from_numpy(case.images[k]).float(), "target": _tensor(target),
                "case": case.case, "patient": case.patient, "slice": case.slices[k]}
        if case.extras is not None:
            item["extras"] = torch.from_numpy(case.extras[k])
        return self.augment(item) if self.augment is not None else item


def _tensor(target: Any) -> Any:
    if isinstance(target, dict):
        return {"boxes": torch.from_numpy(target["boxes"]),
                "labels": torch.from_numpy(target["labels"])}
    if isinstance(target, np.ndarray):  # a label map: int64, as the losses index with it
        return torch.from_numpy(target).long()
    return torch.tensor(int(target), dtype=torch.int64)


def collate_detection(batch: list[dict]) -> list[dict]:
    """Detection batches stay a list of items: each film has its own number of boxes."""
    return list(batch)


# --- the entry point --------------------------------------------------------------------------

def build_data(job: Any, manifest: Manifest) -> TrainingData:
    """Cases from the job's series and demo phantoms, split by patient (see module doc)."""
    where = getattr(job, "path", None)
    ctx = _Context(manifest, where)
    data = job.data
    ctx.segment_labels = dict(data.get("segment_labels") or {})
    wrong = check_mapping(ctx.segment_labels, manifest.label_names)
    if wrong:
        raise TrainingError(where, wrong)
    warnings: list[str] = []
    from medviewer.training.phantoms import demo_case  # it builds on this module's Case

    cases = _workspace_cases(_chosen_series(data.get("series") or ()), ctx, warnings)
    cases += [demo_case(ctx, i) for i in range(int(data.get("demo") or 0))]
    cases = _capped(cases, data.get("max_cases"), warnings)
    if not cases:
        raise TrainingError(where, f"The job gives {manifest.id} no cases: list annotated "
                            "series under data.series, or ask for demo cases (data.demo).")
    val_fraction, seed = float(data.get("val_fraction", 0.25)), int(data.get("split_seed", 0))
    owners = {c.case: c.patient for c in cases}
    train, validation = split_patients(owners, val_fraction, seed, where=where)
    record = split_record(owners, {c.case: c.source for c in cases}, train, validation,
                          val_fraction, seed, slices=SLICES[manifest.task],
                          samples={c.case: len(c.targets) for c in cases},
                          warnings=list(dict.fromkeys(ctx.warnings + warnings)))
    augment = _augment(job, manifest)
    chosen = set(train)
    return TrainingData(
        ctx.task, CaseDataset([c for c in cases if c.patient in chosen], augment),
        CaseDataset([c for c in cases if c.patient not in chosen]), manifest.label_names,
        record, collate_detection if ctx.task == "detection" else default_collate, augment)


def _augment(job: Any, manifest: Manifest) -> Augment | None:
    """Augment when the job asks; a model's manifest may tune it (options.augment, e.g. flip)."""
    if not getattr(job, "augment", False):
        return None
    try:
        return Augment(size=tuple(manifest.input.size), **manifest.options.get("augment", {}))
    except TypeError as exc:
        raise TrainingError(manifest.folder, f"The manifest's options.augment is not understood "
                            f"({exc}); it takes intensity, scale, shift and flip.") from exc


def _capped(cases: list[Case], cap: Any, warnings: list[str]) -> list[Case]:
    if cap is None or len(cases) <= int(cap):
        return cases
    warnings.append(f"max_cases {cap}: {len(cases) - int(cap)} of {len(cases)} cases left "
                    "out (workspace series come first, then demo cases)")
    return cases[:int(cap)]


# --- the model's side: task, preprocessing, label names -----------------------------------------

class _Context:
    """What every case needs from the model: its pipeline, input name and label indices."""

    def __init__(self, manifest: Manifest, where: Any) -> None:
        from medviewer.inference.registry import load_plugin

        self.manifest, self.where, self.warnings = manifest, where, []
        if manifest.task not in TASKS:
            raise TrainingError(manifest.folder, f"MedViewer cannot train {manifest.id}: its "
                                f"task {manifest.task!r} is none of {', '.join(TASKS)}.")
        self.task = TASKS[manifest.task]
        try:
            self.pipeline = load_plugin(manifest.plugin).pipeline_for(manifest, None)
        except ModelError as exc:
            raise TrainingError(manifest.folder, exc.reason) from exc
        self.key = next(n for n in manifest.onnx_inputs if n != "extras")
        self.index = {n.strip().lower(): i for i, n in enumerate(manifest.label_names)}
        self.segment_labels: dict[str, str | None] = {}  # the job's data.segment_labels

    def label(self, name: str, what: str, fate: str = "left out") -> int | None:
        """The model's index of a label name (any case); None plus a warning when unknown."""
        k = self.index.get(str(name).strip().lower())
        if k is None:
            self.warnings.append(f"{what}: {name!r} is not a label of {self.manifest.id} "
                                 f"({', '.join(self.manifest.label_names)}); {fate}")
        return k

    def demo_label(self, name: str) -> int:
        k = self.index.get(name.lower())
        if k is None:
            raise TrainingError(self.manifest.folder, f"The lab {self.manifest.lab} demo "
                                f"phantoms are labelled {name!r}, which {self.manifest.id} "
                                "does not know; train it on annotated series instead.")
        return k

    def inputs(self, voxels: np.ndarray, indices: list[int], volume: Any
               ) -> tuple[np.ndarray, np.ndarray | None]:
        """(images, extras) of the samples at `indices`, as the plugin prepares them."""
        if self.pipeline.series_level:
            out = self.pipeline.preprocess(voxels, list(range(len(voxels))), volume)
            return _float32(out[self.key]), _float32(out.get("extras"))
        step = max(1, int(self.pipeline.batch_size))
        parts = [self.pipeline.preprocess(voxels, indices[i:i + step], volume)
                 for i in range(0, len(indices), step)]
        extras = [p["extras"] for p in parts if "extras" in p]
        return (_float32(np.concatenate([p[self.key] for p in parts])),
                _float32(np.concatenate(extras)) if extras else None)

    def case(self, name: str, patient: str, source: str, voxels: np.ndarray,
             indices: list[int], targets: list[Any], volume: Any) -> Case:
        images, extras = self.inputs(voxels, indices, volume)
        slices = [-1] if self.pipeline.series_level else [int(k) for k in indices]
        return Case(name, patient, source, images, targets, slices, extras)


def _float32(x: Any) -> np.ndarray | None:
    return None if x is None else np.ascontiguousarray(x, np.float32)


def resize_labels(labels: np.ndarray, size: tuple[int, int], count: int) -> np.ndarray:
    """(n, rows, cols) label maps at the model's `size` as int64, like lab4.data does.

    Integer shrink factors take each block's majority (ties to the higher, rarer label: a
    nodule's edge pixel stays nodule; IGNORE, excluded voxels, wins its ties too); other
    factors take the nearest label.
    """
    from medviewer.inference import preprocess as pp

    n, rows, cols = labels.shape
    fr, fc = rows / size[0], cols / size[1]
    if (rows, cols) == tuple(size):
        return labels.astype(np.int64)
    if fr >= 1 and fc >= 1 and fr == int(fr) and fc == int(fc):
        values = np.array([*range(count), *([IGNORE] if (labels == IGNORE).any() else [])])
        blocks = labels.reshape(n, size[0], int(fr), size[1], int(fc))
        votes = np.stack([(blocks == v).sum(axis=(2, 4), dtype=np.int32) for v in values],
                         axis=-1)
        votes = votes * (len(values) + 1) + np.arange(len(values))  # ties: the later wins
        return values[votes.argmax(axis=-1)].astype(np.int64)
    return np.asarray(pp.resize(labels, tuple(size), order=0), np.int64)


# --- workspace series ----------------------------------------------------------------------------

_NEEDS = {"segmentation": ("seg", "a saved segmentation (SEG)", "segment it"),
          "detection": ("sr", "saved boxes (SR)", "accept or draw boxes"),
          "classification": ("sr", "saved class labels (SR)", "label its slices"),
          "fusion": ("sr", "a saved series class label (SR)", "label the series")}


def _chosen_series(entries: Any) -> dict[str, set[str] | None]:
    """folder -> the SeriesInstanceUIDs chosen in it (None: every annotated series), from
    job.data.series (folders as text, or {"folder", "uid"} entries / SeriesRef)."""
    chosen: dict[str, set[str] | None] = {}
    for entry in entries:
        if isinstance(entry, str | Path):
            chosen[str(entry)] = None
            continue
        folder, uid = str(entry["folder"]), str(entry["uid"])
        if chosen.get(folder, set()) is not None:
            chosen[folder] = (chosen.get(folder) or set()) | {uid}
    return chosen


def _workspace_cases(chosen: dict[str, set[str] | None], ctx: _Context, warnings: list[str]
                     ) -> list[Case]:
    """The annotated series under each path (only the chosen ones where the job names
    series); a path with none is an error (a slip, not data)."""
    kind, needs, how = _NEEDS[ctx.manifest.task]
    cases: list[Case] = []
    for path, uids in chosen.items():
        scanned = _scanned(path)
        if uids is not None:
            missing = uids - {s.series_instance_uid for s in scanned}
            if missing:
                raise TrainingError(path, f"There is no series {sorted(missing)[0]} here; "
                                    "check the job's data.series.")
            scanned = [s for s in scanned if s.series_instance_uid in uids]
        found = [case for series in scanned
                 if (case := _series_case(series, kind, ctx)) is not None]
        if not found:
            raise TrainingError(path, f"No series here has {needs} in its workspace, so it "
                                f"gives {ctx.manifest.id} nothing to learn from; {how} and "
                                "save (Annotate -> Save), or leave it out of the job.")
        cases += found
    names = [c.case for c in cases]
    for i, c in enumerate(cases):  # two series may share patient and number: keep ids unique
        if names.count(c.case) > 1:
            c.case = f"{c.case} #{names[:i].count(c.case) + 1}"
    if any(c.patient.startswith("UNKNOWN-") for c in cases):
        warnings.append("some series have no PatientID: each study counts as its own patient")
    return cases


def _scanned(path: str) -> list[Any]:
    from medviewer.core.dicom import DicomError, scan

    if not Path(path).exists():
        raise TrainingError(path, "This series folder does not exist; check the job's "
                            "data.series.")
    try:
        return scan(path, workers=1).all_series()
    except DicomError as exc:
        raise TrainingError(path, exc.reason) from exc


def _series_case(series: Any, kind: str, ctx: _Context) -> Case | None:
    """The series' samples when its workspace holds the truth the model needs, else None."""
    from medviewer.core.annotations import AnnotationError, Workspace
    from medviewer.core.dicom import DicomError, load_series

    where = series.instances[0].path if series.instances else None
    try:
        workspace = Workspace.for_series(series)
        if kind not in {f.kind for f in workspace.list_annotations()}:
            return None
        volume = load_series(series)
        voxels = ctx.pipeline.grey_voxels(volume)
        with workspace.reading():  # the whole set of one save, never half of the next
            truth = _READERS[ctx.manifest.task](workspace, volume, voxels, ctx)
    except (AnnotationError, DicomError, ModelError) as exc:
        raise TrainingError(exc.path or where, exc.reason) from exc
    if truth is None:
        return None
    indices, targets, source = truth
    patient = volume.header.get("PatientID") or f"UNKNOWN-{series.study_instance_uid}"
    number = series.series_number if series.series_number is not None else "?"
    name = f"{patient}/{number} {series.description}".strip()
    return ctx.case(name, patient, f"workspace:{source}", voxels, indices, targets, volume)


def _seg_truth(workspace: Any, volume: Any, voxels: np.ndarray, ctx: _Context) -> tuple | None:
    """Segments -> model label values (training.labels); an undecided segment with voxels
    stops the job, excluded voxels become IGNORE, slices without a kept voxel are left out."""
    from medviewer.core.annotations.seg import voxel_counts

    label_map, table = workspace.load_seg_table(volume)
    source = workspace.newest("seg")  # a directory listing: once, not once per segment
    counts = voxel_counts(label_map)  # slice by slice: a whole-map bincount widens it 8x
    lut = np.zeros(256, np.uint8)  # uint8: a full CT stays small
    kept = np.zeros(256, bool)
    undecided = []
    for label in table:
        value = target_value(label.name, label.type, ctx.manifest.label_names,
                             ctx.segment_labels)
        if value is None and counts[label.value]:
            undecided.append(Segment(label.name, int(counts[label.value]), label.type))
        lut[label.value] = value or 0
        kept[label.value] = value is not None and value != IGNORE
    if undecided:
        raise TrainingError(source, unmapped_text(undecided, ctx.manifest.label_names,
                                                  ctx.manifest.id))
    slices = np.flatnonzero(kept[label_map].reshape(len(label_map), -1).any(axis=1))
    if not len(slices):
        return None
    maps = resize_labels(lut[label_map[slices]], ctx.manifest.input.size, len(ctx.index))
    return [int(k) for k in slices], list(maps), source


def _box_truth(workspace: Any, volume: Any, voxels: np.ndarray, ctx: _Context) -> tuple | None:
    from medviewer.core.annotations import ACCEPTED

    boxes = workspace.load_sr(volume).boxes
    rows, cols = voxels.shape[1:3]
    scale = np.array([ctx.manifest.input.size[1] / cols, ctx.manifest.input.size[0] / rows] * 2)
    films: dict[int, list[tuple[list[float], int]]] = {}
    for b in (b for b in boxes if b.state == ACCEPTED):  # proposed / rejected: no finding
        k = ctx.label(b.label, f"box on slice {b.slice_index + 1}")
        if k is not None:
            films.setdefault(b.slice_index, []).append(([b.x0, b.y0, b.x1, b.y1], k + 1))
    targets = [{"boxes": (np.array([xy for xy, _ in films[s]]) * scale).astype(np.float32),
                "labels": np.array([k for _, k in films[s]], np.int64)} for s in sorted(films)]
    return (sorted(films), targets, workspace.newest("sr")) if films else None


def _class_truth(workspace: Any, volume: Any, voxels: np.ndarray, ctx: _Context
                 ) -> tuple | None:
    labels = workspace.load_sr(volume).class_labels
    source = workspace.newest("sr")
    series = next((c.label for c in labels if c.scope == "series"), None)
    if ctx.pipeline.series_level:
        k = None if series is None else ctx.label(series, f"series class in {source}")
        return None if k is None else ([0], [k], source)
    named = {c.slice_index: c.label for c in labels if c.scope == "slice"}
    if series is not None:
        named = {k: named.get(k, series) for k in range(len(voxels))}
    known = {n: ctx.label(n, f"class label in {source}") for n in set(named.values())}
    chosen = {s: known[n] for s, n in sorted(named.items()) if known[n] is not None}
    return (list(chosen), list(chosen.values()), source) if chosen else None


_READERS = {"segmentation": _seg_truth, "detection": _box_truth,
            "classification": _class_truth, "fusion": _class_truth}
