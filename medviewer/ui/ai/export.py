"""AI ▸ Export Results…: what the models said, as CSV (one row per finding) or JSON.

No Qt: rows come from the `AiOutput` on the document, built by the same functions as
`medviewer infer`'s files (`inference.outputs`). Classification gives a row per slice (the
top label, its score, every label's score as `score_<label>`), detection a row per box in
pixel coordinates of its slice (and a row per measurement: lab 5's cardiothoracic ratio with
its verdict), segmentation a row per label (voxels, mL) and one per lesion
(`finding` lesion: diameters, mL, slice, centre in LPS mm, mean value, tracking UID), fusion a
row per method. Every row names the series and, where there is one, the SOP instance of its
slice, so a finding can be traced to its image. Files are written atomically (temporary file in
the same folder, fsync, rename). The lesions also go out as DICOM SR (`write_lesions_sr`: TID
1500, one group per lesion, tracking identifiers kept when the same file is saved again), and
with them lab 5's cardiothoracic ratio (one group per film, see core.annotations.sr_ratios).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medviewer.core.atomic import write_text_atomic
from medviewer.inference.outputs import box_rows, csv_text, measurement_rows, score_rows
from medviewer.inference.results import Explanation, Result
from medviewer.ui.document.ai_state import AiOutput

FORMATS = ("csv", "json", "dcm")


def result_rows(output: AiOutput) -> list[dict[str, Any]]:
    """Flat rows for a CSV: one per slice, box, label or method, as the task is. Class
    scores follow `medviewer infer`'s columns: `label`, `score`, `score_<label>`."""
    rows: list[dict[str, Any]] = []
    for i, result in enumerate(output.results):
        base = {"model": result.model_id, "version": result.model_version,
                "task": result.task, "series_instance_uid": result.series_instance_uid}
        if output.scope == "compare" or (result.scores is not None and not result.slice_indices):
            base["method"] = result.title or result.model_id  # a series-level verdict
        rows.extend({**base, **row} for row in score_rows(result))
        if result.boxes:
            rows.extend({**base, **row} for row in box_rows(result))
        rows.extend({**base, **row} for row in measurement_rows(result))  # e.g. lab 5's CTR
        for label in _label_stats(output, i) if result.label_map is not None else ():
            rows.append({**base, "label": label["name"], "voxels": label["voxels"],
                         "volume_ml": "" if label["volume_ml"] is None else label["volume_ml"],
                         "slices_run": len(result.slice_indices)})
        if result is output.results[0]:  # the lesions are those of the first result's map
            uids = dict(zip(result.slice_indices, result.sop_instance_uids, strict=False))
            rows.extend({**base, "finding": "lesion", **lesion.as_row(),
                         "sop_instance_uid": uids.get(lesion.slice_index, "")}
                        for lesion in output.lesions)
    return rows


def _label_stats(output: AiOutput, index: int) -> tuple[dict, ...]:
    """Label volumes of result `index` (a comparison of segmenters has one set per model)."""
    if index < len(output.stats_by_result):
        return output.stats_by_result[index]
    return output.label_stats


def _against_mask(output: AiOutput, index: int) -> dict[str, Any]:
    """Result `index`'s scores against the series' mask, when a comparison had one."""
    scores = output.scores_by_result
    return {"against_mask": scores[index]} if index < len(scores) and scores[index] else {}


def to_json(output: AiOutput, explanation: Explanation | None = None) -> dict[str, Any]:
    """Everything but the arrays themselves (the label map goes out as DICOM SEG through
    `medviewer infer`; here its per-label volumes)."""
    return {
        "scope": output.scope,
        "results": [{"model": r.model_id, "version": r.model_version, "title": r.title,
                     "task": r.task, "provider": r.provider, "runtime": r.runtime,
                     "labels": r.labels,
                     "series_instance_uid": r.series_instance_uid,
                     "slices": r.slice_indices,
                     "timings_s": {k: round(v, 6) for k, v in r.timings.items()},
                     "measurements": measurement_rows(r), **_against_mask(output, i)}
                    for i, r in enumerate(output.results)],
        "findings": result_rows(output),
        "lesions": [lesion.as_row() for lesion in output.lesions],
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


def write_lesions_sr(output: AiOutput, volume: Any, path: str | Path) -> Path:
    """The lesions of `output` as a DICOM SR (+ its JSON sidecar) at `path`; a lesion that
    the SR already there holds keeps its Tracking Identifier and UID. Measured ratios (lab
    5's cardiothoracic ratio) go in too, one group each."""
    import getpass

    from medviewer.core.annotations.sr import write_sr
    from medviewer.core.annotations.sr_lesions import track_against
    from medviewer.core.annotations.sr_ratios import RatioFinding

    _check_sidecar_is_ours(Path(path))
    result = output.results[0]
    lesions = track_against(path, output.lesions)
    ratios = [RatioFinding(m.name, m.value, m.slice_index, m.lines)  # lab 5's CTR
              for r in output.results for m in r.measurements if m.unit == "ratio"]
    try:
        annotator = getpass.getuser() or "unknown"
    except (KeyError, OSError):
        annotator = "unknown"
    return write_sr(path, volume, [], annotator=annotator, lesions=lesions, ratios=ratios,
                    model=f"model:{result.model_id}@{result.model_version}")


def _check_sidecar_is_ours(path: Path) -> None:
    """The SR's sidecar is `<name>.json`: refuse to replace a JSON there that is no sidecar
    (e.g. the results exported as JSON under the same name)."""
    from medviewer.core.annotations import AnnotationError
    from medviewer.core.annotations.sr import read_sidecar, sidecar_path_for

    sidecar = sidecar_path_for(path)
    if sidecar.exists():
        try:
            read_sidecar(sidecar)
        except AnnotationError:
            raise AnnotationError(sidecar, f"Saving the SR would replace {sidecar.name}, which "
                                  "is not its sidecar; choose another name for the SR.") from None
