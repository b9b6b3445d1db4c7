"""AI ▸ Export Results…: what the models said, as CSV (one row per finding) or JSON.

No Qt: rows come from the `AiOutput` on the document. Classification gives a row per slice
(predicted label, its probability, every label's probability), detection a row per box in
pixel coordinates of its slice, segmentation a row per label (voxels, mL), fusion a row per
method. Every row names the series and, where there is one, the SOP instance of its slice,
so a finding can be traced to its image. Files are written atomically (temporary file in the
same folder, fsync, rename).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medviewer.core.atomic import write_text_atomic
from medviewer.inference.outputs import box_rows, csv_text
from medviewer.inference.results import Explanation, Result
from medviewer.ui.document.ai_state import AiOutput

FORMATS = ("csv", "json")


def result_rows(output: AiOutput) -> list[dict[str, Any]]:
    """Flat rows for a CSV: one per slice, box, label or method, as the task is."""
    rows: list[dict[str, Any]] = []
    for result in output.results:
        base = {"model": result.model_id, "version": result.model_version,
                "task": result.task, "series_instance_uid": result.series_instance_uid}
        if output.scope == "compare" or (result.scores is not None and not result.slice_indices):
            rows.extend({**base, **row} for row in verdict_rows(result))
        elif result.scores is not None:
            rows.extend({**base, **row} for row in _slice_rows(result))
        if result.boxes:
            rows.extend({**base, **row} for row in box_rows(result))
        if result.label_map is not None:
            rows.extend({**base, **row} for row in _label_rows(result, output))
    return rows


def verdict_rows(result: Result) -> list[dict[str, Any]]:
    """A series-level verdict: method, predicted label, its probability, every label's."""
    label, probability = result.predicted(0)
    scores = {f"p_{name}": round(float(p), 6)
              for name, p in zip(result.labels, result.scores[0], strict=True)}
    return [{"method": result.title or result.model_id, "label": label,
             "probability": round(probability, 6), **scores}]


def _slice_rows(result: Result) -> list[dict[str, Any]]:
    rows = []
    for row, k in enumerate(result.slice_indices):
        label, probability = result.predicted(row)
        scores = {f"p_{name}": round(float(p), 6)
                  for name, p in zip(result.labels, result.scores[row], strict=True)}
        rows.append({"slice": k, "sop_instance_uid": _sop(result, row), "label": label,
                     "probability": round(probability, 6), **scores})
    return rows


def _label_rows(result: Result, output: AiOutput) -> list[dict[str, Any]]:
    rows = []
    for i, name in enumerate(result.labels):
        if i == 0 or i >= len(output.label_voxels):
            continue  # 0 is "nothing found" (and the slices not run)
        voxels = output.label_voxels[i]
        ml = round(voxels * output.voxel_ml, 3) if output.voxel_ml else ""
        rows.append({"label": name, "voxels": voxels, "volume_ml": ml,
                     "slices_run": len(result.slice_indices)})
    return rows


def _sop(result: Result, row: int) -> str:
    uids = result.sop_instance_uids
    return uids[row] if row < len(uids) else ""


def to_json(output: AiOutput, explanation: Explanation | None = None) -> dict[str, Any]:
    """Everything but the arrays themselves (the label map goes out as DICOM SEG through
    `medviewer infer`; here its per-label volumes)."""
    return {
        "scope": output.scope,
        "results": [{"model": r.model_id, "version": r.model_version, "title": r.title,
                     "task": r.task, "provider": r.provider, "labels": r.labels,
                     "series_instance_uid": r.series_instance_uid,
                     "slices": r.slice_indices,
                     "timings_s": {k: round(v, 6) for k, v in r.timings.items()}}
                    for r in output.results],
        "findings": result_rows(output),
        "failures": list(output.failures),
        "explanation": None if explanation is None else {
            "method": explanation.method, "model": explanation.model_id,
            "slice": explanation.slice_index, "target": explanation.target,
            "seconds": round(explanation.seconds, 3), "notes": explanation.notes},
    }


def write_results(output: AiOutput, path: str | Path,
                  explanation: Explanation | None = None) -> Path:
    """CSV or JSON by the file's suffix (CSV when it has neither)."""
    path = Path(path)
    if path.suffix.lower() not in (".csv", ".json"):
        path = path.with_name(path.name + ".csv")
    if path.suffix.lower() == ".json":
        text = json.dumps(to_json(output, explanation), indent=2) + "\n"
    else:
        text = csv_text(result_rows(output))
    return write_text_atomic(path, text)


def write_verdict_csv(result: Result, path: str | Path) -> Path:
    """One fusion method's verdict as CSV, in lab 3's verdict format."""
    from medviewer.labs.lab3.plugin import write_verdicts_csv  # numpy only, no model code

    return write_verdicts_csv([result], path)
