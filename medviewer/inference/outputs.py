"""A model's Result as files a spreadsheet or a script reads: CSV rows and a JSON summary.

    write_result_files(result, out_dir, stem, spacing=None) -> [paths]

classification: `stem.csv` one row per slice (slice, SOP Instance UID, then the class-score
columns below) + `stem.json`. fusion: the same with one row per series verdict. detection:
`stem.csv` one row per box (slice, SOP Instance UID, label, score, x0 y0 x1 y1 in the slice's
pixels, x1/y1 exclusive; then a row per measurement such as lab 5's cardiothoracic ratio:
measurement, value, unit, verdict, method) + `stem.json`. segmentation: `stem.json` with
voxel counts and volumes per label (the mask itself goes to DICOM SEG, see
medviewer.core.annotations). numpy, csv and json only; every file is written atomically.

Class scores have one column convention in every CSV MedViewer writes (these files, lab 3's
verdicts, the viewer's AI > Export Results): `label` is the top class, `score` its
probability (as `score` is a box's confidence in detection rows), then `score_<label>` per
label in the manifest's label order, probabilities rounded to 6 decimals (`class_scores`).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from medviewer.core.atomic import write_text_atomic
from medviewer.inference.results import Result


def write_result_files(result: Result, out_dir: str | Path, stem: str, *,
                       spacing: tuple[float, float, float] | None = None) -> list[Path]:
    """Write the result's CSV / JSON files into `out_dir`; `spacing` (slice, row, column mm)
    turns segmentation voxel counts into millilitres."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = result_summary(result)
    written: list[Path] = []
    if result.task == "segmentation":
        summary["labels"] = label_volumes(result, spacing)
    elif result.task == "detection":
        rows = box_rows(result)
        summary["boxes"] = rows
        summary["measurements"] = measurement_rows(result)
        written.append(_write_csv(out / f"{stem}.csv", rows + summary["measurements"]))
    else:
        rows = score_rows(result)
        summary["rows"] = rows
        written.append(_write_csv(out / f"{stem}.csv", rows))
    written.insert(0, write_text_atomic(out / f"{stem}.json", json.dumps(summary, indent=2) + "\n"))
    return written


def result_summary(result: Result) -> dict[str, Any]:
    """What every result file starts with: which model, which series, how long, where and
    on what it ran (the runtime and precision: int8 results are not fp32's)."""
    return {"model_id": result.model_id, "model_version": result.model_version,
            "title": result.title, "task": result.task, "provider": result.provider,
            "runtime": result.runtime, "series_instance_uid": result.series_instance_uid,
            "slices": len(result.slice_indices),
            "slice_range": ([min(result.slice_indices), max(result.slice_indices)]
                            if result.slice_indices else None),
            "label_names": list(result.labels),
            "timings_s": {k: round(float(v), 6) for k, v in result.timings.items()}}


def _uid_of(result: Result) -> dict[int, str]:
    return dict(zip(result.slice_indices, result.sop_instance_uids, strict=False))


SCORE_PREFIX = "score_"


def class_scores(labels: list[str], probs: Any) -> dict[str, Any]:
    """The class-score columns of one row: `label`, `score`, `score_<label>` per label."""
    probs = np.asarray(probs, np.float64).reshape(-1)
    k = int(np.argmax(probs))
    return {"label": labels[k], "score": round(float(probs[k]), 6),
            **{f"{SCORE_PREFIX}{name}": round(float(p), 6)
               for name, p in zip(labels, probs, strict=False)}}


def score_rows(result: Result) -> list[dict[str, Any]]:
    """One row per slice (classification) or per series verdict (fusion, no slice indices)."""
    if result.scores is None:
        return []
    scores = np.asarray(result.scores, np.float64).reshape(len(result.scores), -1)
    uids = _uid_of(result)
    per_slice = len(result.slice_indices) == len(scores)
    rows = []
    for i, probs in enumerate(scores):
        row: dict[str, Any] = ({"slice": result.slice_indices[i],
                                "sop_instance_uid": uids.get(result.slice_indices[i], "")}
                               if per_slice else
                               {"series_instance_uid": result.series_instance_uid})
        rows.append({**row, **class_scores(result.labels, probs)})
    return rows


def box_rows(result: Result) -> list[dict[str, Any]]:
    uids = _uid_of(result)
    return [{"slice": b.slice_index, "sop_instance_uid": uids.get(b.slice_index, ""),
             "label": b.label, "score": round(float(b.score), 6),
             "x0": round(float(b.x0), 2), "y0": round(float(b.y0), 2),
             "x1": round(float(b.x1), 2), "y1": round(float(b.y1), 2)}
            for b in sorted(result.boxes, key=lambda b: (b.slice_index, -b.score))]


def measurement_rows(result: Result) -> list[dict[str, Any]]:
    """One row per measurement of the result (lab 5's cardiothoracic ratio per film)."""
    uids = _uid_of(result)
    return [{"slice": m.slice_index, "sop_instance_uid": uids.get(m.slice_index, ""),
             "measurement": m.name, "value": round(float(m.value), 4), "unit": m.unit,
             "verdict": m.verdict, "method": m.method} for m in result.measurements]


def label_volumes(result: Result, spacing: tuple[float, float, float] | None
                  ) -> list[dict[str, Any]]:
    """Per label (background excluded): voxels, millilitres, and the slices it appears on."""
    if result.label_map is None:
        return []
    lm = result.label_map
    # slices that were not run stay 0: count only the ones that were
    indices = np.asarray(sorted(result.slice_indices) or range(lm.shape[0]), int)
    size = max(len(result.labels), int(lm.max(initial=0)) + 1)
    per_slice = np.stack([np.bincount(lm[k].ravel(), minlength=size) for k in indices])
    counts = per_slice.sum(axis=0)
    voxel_ml = float(np.prod(spacing)) / 1000.0 if spacing is not None else None
    out = []
    for value, name in enumerate(result.labels):
        if value == 0:
            continue
        on = indices[per_slice[:, value] > 0]
        voxels = int(counts[value])
        out.append({"value": value, "name": name, "voxels": voxels,
                    "volume_ml": None if voxel_ml is None else round(voxels * voxel_ml, 4),
                    "slice_count": len(on),
                    "slices": [int(on[0]), int(on[-1])] if len(on) else None})
    return out


def csv_text(rows: list[dict[str, Any]], empty_columns: tuple[str, ...] = ()) -> str:
    """Rows with the union of their columns in first-seen order (`empty_columns` when there
    is no row, so an empty result still has a header)."""
    columns: dict[str, None] = dict.fromkeys(empty_columns) if not rows else {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    return write_text_atomic(path, csv_text(rows, ("slice", "label", "score")))
