"""`medviewer models` and `medviewer infer`: model listing and headless batch inference."""

from __future__ import annotations

import argparse
import json

from medviewer.cli_export import add_export_parser, fail


def add_model_parsers(sub) -> None:
    m = sub.add_parser("models", help="installed models, plugins and ONNX Runtime providers")
    m.add_argument("--json", action="store_true", help="machine-readable output")
    m.add_argument("--versions", metavar="ID", help="every version of one model, * = in use")
    m.add_argument("--publish", metavar="FOLDER",
                   help="add a trained candidate (run folder's candidate/) as a new version "
                   "in the user's model store and use it")
    m.add_argument("--use", nargs=2, metavar=("ID", "VERSION"),
                   help="use this version of a model (roll back or forward)")
    m.set_defaults(func=_cmd_models)
    i = sub.add_parser("infer", help="run a model over a series, a folder or a DICOMDIR",
                       description="Writes per series: DICOM SEG + JSON (segmentation; with "
                       "a lesion label also <series>_lesions.csv, one row per lesion), CSV + "
                       "JSON (classification, fusion, detection). Never beside the source.")
    i.add_argument("path", help="series folder, folder of studies, DICOMDIR or file")
    i.add_argument("--model", required=True, help="model id (see `medviewer models`) or folder")
    i.add_argument("--out", required=True, help="folder for the result files")
    i.add_argument("--slices", help="slice range a:b (0-based, b excluded) or one index")
    i.add_argument("--provider", choices=("cpu", "cuda"), help="default: the best that works")
    i.add_argument("--threads", type=int, help="ONNX Runtime threads (default: all cores)")
    i.add_argument("--backend", metavar="RUNTIME[,PRECISION]",
                   help="onnxruntime or openvino, fp32 or int8 (e.g. openvino,int8; default: "
                   "the model's own choice, else $MEDVIEWER_BACKEND); int8 needs the model's "
                   "int8 file (python -m medviewer.inference.quantize MODEL)")
    i.add_argument("--truth", metavar="SEG",
                   help="a DICOM SEG, or a folder of them, to score each segmentation against "
                   "(the SEG of the series it references): Dice, IoU, precision, recall, "
                   "boundary F1 at 2 mm and HD95 in mm per label, printed and written as "
                   "<series>_vs_truth.json")
    i.set_defaults(func=_cmd_infer)
    add_export_parser(sub)



def _cmd_models(ns: argparse.Namespace) -> int:
    if ns.versions or ns.publish or ns.use:
        return _cmd_versions(ns)
    from medviewer.inference import list_models, list_plugins, provider_status, working_providers
    from medviewer.inference.backends import describe

    models, problems = list_models()
    out = {"models": [{"id": m.id, "version": m.version, "lab": m.lab, "task": m.task,
                       "title": m.title, "arch": m.arch, "plugin": m.plugin,
                       "metrics": m.metrics, "runtime": describe(m), "folder": str(m.folder)}
                      for m in models],
           "plugins": [{"name": p.name, "value": p.value, "distribution": p.distribution}
                       for p in list_plugins()],
           "providers": list(working_providers()), "provider_status": provider_status(),
           "problems": [{"path": p.path, "reason": p.reason} for p in problems]}
    if ns.json:
        print(json.dumps(out, indent=2, default=str))
        return 0
    print("Models:" if models else "Models: none installed")
    for m in out["models"]:
        print(f"  {m['id']} {m['version']}  lab {m['lab']} {m['task']}  {m['title']}"
              f"{_metric_text(m['metrics'])}\n      runs on {m['runtime']}; {m['folder']}")
    print("Plugins:")
    for p in out["plugins"]:
        print(f"  {p['name']:8} {p['value']}  ({p['distribution']})")
    for p in out["problems"]:
        print(f"unreadable model: {p['path']}: {p['reason']}")
    print(f"{out['provider_status']}; providers that work here: {', '.join(out['providers'])}")
    return 0


def _cmd_versions(ns: argparse.Namespace) -> int:
    """--publish / --use change which version runs; then the versions of that model."""
    from medviewer.inference import ModelError
    from medviewer.inference import versions as v

    try:
        model_id = ns.versions
        if ns.publish:
            model_id = v.publish(ns.publish).id
        if ns.use:
            model_id = v.set_active(*ns.use).id
        found = v.list_versions(model_id)
    except ModelError as exc:
        return fail("models", exc)
    rows = [{"version": x.version, "active": x.active, "origin": x.origin,
             "folder": str(x.folder), "metrics": x.manifest.metrics} for x in found]
    if ns.json:
        print(json.dumps({"model": model_id, "versions": rows}, indent=2, default=str))
        return 0
    print(f"{model_id}:")
    for r in rows:
        print(f"  {'*' if r['active'] else ' '} {r['version']:10} {r['origin']:8}"
              f"{_metric_text(r['metrics'])}\n      {r['folder']}")
    return 0


def _metric_text(metrics: dict) -> str:
    """The held-out numbers on one line; a segmentation's per-label scores as one average
    each ('dice 0.91 (mean of 4 labels)') when the manifest has no overall one."""
    from medviewer.training.segmentation_metrics import headline_metrics, per_label_table

    keys, table = per_label_table(metrics)
    means = {f"{k} (mean of {len(table)} labels)": sum(s[k] for s in table.values()) / len(table)
             for k in keys if k not in metrics and all(s[k] is not None for s in table.values())}
    metrics = {**headline_metrics(metrics), **means}
    numbers = [f"{k} {v:.3g}" for k, v in metrics.items()
               if isinstance(v, int | float) and not isinstance(v, bool) and k != "n"
               and "train" not in k]  # training-set numbers are no held-out evidence
    n = f", n {metrics['n']}" if "n" in metrics else ""
    return f"  [held-out: {', '.join(numbers)}{n}]" if numbers else ""


def _providers(choice: str | None) -> list[str] | None:
    from medviewer.inference import ModelError, working_providers

    if choice is None:
        return None
    if choice == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in working_providers():
        raise ModelError(None, "The CUDA provider does not work on this machine (no usable "
                         "GPU, or CUDA/cuDNN missing); run with --provider cpu.")
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]


def _cmd_infer(ns: argparse.Namespace) -> int:
    from pathlib import Path

    from medviewer.core.dicom import DicomError, scan
    from medviewer.inference import ModelError, open_model

    try:
        model = open_model(ns.model, _providers(ns.provider), ns.threads, ns.backend)
        found = scan(ns.path)
        truths = _truth_segs(ns.truth, model.manifest) if ns.truth else None
    except (ModelError, DicomError) as exc:
        return fail("infer", exc)
    for problem in found.problems:
        print(f"unreadable: {problem.path}: {problem.reason}")
    wanted = model.manifest.input.modalities
    series = [s for s in found.all_series() if not wanted or s.modality in wanted]
    for s in found.all_series():
        if all(s is not t for t in series):
            print(f"not for this model: {_series_name(s)} ({s.modality or 'no modality'})")
    if not series:
        return fail("infer", f"no series in {ns.path} that {model.manifest.id} reads "
                     f"({'/'.join(wanted) or 'any'} images)", 1)
    out = Path(ns.out).resolve()
    sources = {Path(i.path).resolve().parent for s in series for i in s.instances}
    if out in sources:
        return fail("infer", f"--out {ns.out} holds the source images; results never go "
                     "beside or over the source data: pick another folder")
    session = model.session
    print(f"{model.manifest.id} {model.manifest.version} on {_short(model.provider)}, "
          f"{session.backend_label}: {len(series)} series -> {out}")
    if session.note:
        print(session.note)
    failed = sum(not _infer_series(model, s, out, ns.slices, truths) for s in series)
    if failed:
        print(f"{failed} of {len(series)} series failed")
    return 1 if failed else 0


def _short(provider: str) -> str:
    from medviewer.inference.providers import SHORT

    return SHORT.get(provider, provider)


def _series_name(s) -> str:
    number = s.series_number if s.series_number is not None else "-"
    return f"{s.patient_key.split('|')[0] or '(no id)'} #{number} {s.description}".rstrip()


def _series_stem(s, model_id: str) -> str:
    import re

    patient = s.patient_key.split("|")[0] or "anon"
    stack = f"-stack{s.stack_index + 1}" if s.stack_count > 1 else ""
    raw = f"{patient}_{s.modality}{s.series_number or 0}_{s.series_instance_uid[-8:]}{stack}"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", f"{raw}_{model_id}")


def _infer_series(model, series, out, slices_text: str | None,
                  truths: dict[str, list] | None = None) -> bool:
    """Load, run and write one series; report a failure and return False instead of raising."""
    import time

    from medviewer.core.annotations import AnnotationError
    from medviewer.core.dicom import DicomError, load_series
    from medviewer.inference import ModelError

    name = _series_name(series)
    t0 = time.perf_counter()
    try:
        volume = load_series(series)
        t1 = time.perf_counter()
        result = model.run(volume, _slice_range(slices_text, volume.slice_count))
        t2 = time.perf_counter()
        stem = _series_stem(series, model.manifest.id)
        files = _write_outputs(model, result, volume, out, stem)
        scored, lines = ([], []) if truths is None else _score_against_truth(
            result, volume, truths.get(series.series_instance_uid, []),
            out / f"{stem}_vs_truth.json")
        files += scored
    except (DicomError, ModelError, AnnotationError, ValueError, OSError) as exc:
        print(f"FAILED {name}: {exc}")
        return False
    except Exception as exc:  # noqa: BLE001 - a plugin's bug must not stop the other series
        print(f"FAILED {name}: {type(exc).__name__} in the model's plugin: {exc}")
        return False
    t3 = time.perf_counter()
    stages = ", ".join(f"{k} {v:.2f}" for k, v in result.timings.items() if k != "total")
    print(f"{name}: {_verdict(result)} | load {t1 - t0:.2f} s, run {t2 - t1:.2f} s ({stages}), "
          f"save {t3 - t2:.2f} s on {_short(result.provider)} | {', '.join(f.name for f in files)}")
    for line in lines:
        print(line)
    return True


def _slice_range(text: str | None, count: int) -> list[int] | None:
    """'a:b' (Python slice, b excluded, either may be omitted) or 'k' -> slice indices."""
    if not text:
        return None
    try:
        if ":" in text:
            a, b = (int(p) if p.strip() else None for p in text.split(":", 1))
            chosen = list(range(count))[slice(a, b)]
        else:
            chosen = [int(text)]
    except ValueError:
        raise ValueError(f"--slices {text!r} is not a range like 10:20") from None
    if not chosen or not all(0 <= k < count for k in chosen):
        raise ValueError(f"--slices {text} selects no slice of this series (0..{count - 1})")
    return chosen


def _truth_segs(path: str, manifest) -> dict[str, list]:
    """{referenced series UID: [SEG files]} of a SEG file or a folder of DICOM files."""
    from pathlib import Path

    import pydicom

    from medviewer.inference import ModelError

    if manifest.task != "segmentation":
        raise ModelError(path, f"--truth scores segmentations; {manifest.id} is a "
                         f"{manifest.task} model.")
    root = Path(path)
    if not root.exists():
        raise ModelError(path, "The --truth path does not exist.")
    found: dict[str, list] = {}
    for f in sorted(root.rglob("*") if root.is_dir() else [root]):
        if not f.is_file():
            continue
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - pydicom raises many types; not a SEG then
            ds = None
        if ds is None or ds.get("Modality") != "SEG":
            if not root.is_dir():
                raise ModelError(path, "The --truth file is not a DICOM SEG.")
            continue
        for item in ds.get("ReferencedSeriesSequence", []):
            found.setdefault(str(item.SeriesInstanceUID), []).append(f)
    if not found:
        raise ModelError(path, "No DICOM SEG in the --truth folder references a series.")
    return found


def _score_against_truth(result, volume, segs: list, target) -> tuple[list, list[str]]:
    """(files written, lines to print): the per-label table of the result against each
    truth SEG of the series, the scores as JSON; a SEG that does not fit says why."""
    from medviewer.core.annotations import AnnotationError, read_seg
    from medviewer.core.atomic import write_text_atomic
    from medviewer.inference.metrics import against_mask, text_table

    if not segs:
        return [], ["  no --truth SEG references this series: not scored"]
    spacing = volume.spacing if getattr(volume, "has_geometry", False) else None
    reports, lines = [], []
    for seg in segs:
        try:
            mask, mask_labels = read_seg(seg, volume)
        except AnnotationError as exc:
            lines.append(f"  {seg.name} not scored: {exc.reason}")
            continue
        report = against_mask(result.label_map, result.labels, mask, mask_labels,
                              result.slice_indices or None, spacing)
        if not report["labels"]:
            lines.append(f"  {seg.name} names none of the model's labels: not scored")
            continue
        lines.append(f"  against {seg.name}:\n    " + text_table(report).replace("\n", "\n    "))
        reports.append({"truth": str(seg), **report})
    if not reports:
        return [], lines
    text = json.dumps({"against_truth": reports}, indent=2) + "\n"
    return [write_text_atomic(target, text)], lines


def _write_outputs(model, result, volume, out, stem: str) -> list:
    from medviewer.core.annotations import write_seg
    from medviewer.inference.outputs import write_result_files

    files = []
    # first: it may refuse; a model that found nothing writes no SEG (the JSON says 0 voxels)
    if result.task == "segmentation" and result.label_map is not None and \
            result.label_map.any():
        m = model.manifest
        files.append(write_seg(result.label_map, volume, result.labels, out / f"{stem}.seg.dcm",
                               series_description=f"AI {m.title}", algorithm=(m.id, m.version),
                               colours=result.colours, slices=result.slice_indices or None))
    files += write_result_files(result, out, stem, spacing=volume.spacing)
    if result.task == "segmentation" and result.label_map is not None and volume.has_geometry:
        files += _write_lesions(model, result, volume, out / f"{stem}_lesions.csv")
    from medviewer.inference import load_plugin

    for suffix, writer in load_plugin(model.manifest.plugin).writers.items():
        files.append(writer(result, out / f"{stem}_{suffix}"))
    return files


def _write_lesions(model, result, volume, path) -> list:
    """One row per lesion of the lesion labels (core.lesions: diameters, mL, centre), if any."""
    from medviewer.core.atomic import write_text_atomic
    from medviewer.core.lesions import find_lesions, keep_tracking
    from medviewer.inference.outputs import csv_text

    lesions = find_lesions(result.label_map, volume, result.labels,
                           model.manifest.options.get("lesion_labels"))
    if not lesions:
        return []
    rows = [lesion.as_row() for lesion in keep_tracking(lesions, [])]
    return [write_text_atomic(path, csv_text(rows))]


def _verdict(result) -> str:
    """The answer in a few words: label counts, the series verdict, volumes or boxes."""
    from collections import Counter

    import numpy as np

    if result.task == "segmentation" and result.label_map is not None:
        counts = np.bincount(result.label_map.ravel(), minlength=len(result.labels))
        return ", ".join(f"{n} {counts[v]} vox" for v, n in enumerate(result.labels) if v)
    if result.task == "detection":
        best = max(result.boxes, key=lambda b: b.score, default=None)
        measured = "".join(f", {m.name.lower()} {m.value:.2f}"  # lab 5's CTR
                           for m in result.measurements[:1])
        return f"{len(result.boxes)} boxes" + (f" (best {best.label} {best.score:.2f})"
                                               if best else "") + measured
    if result.scores is None or not len(result.scores):
        return "no scores"
    if result.task == "fusion" or not result.slice_indices:
        label, p = result.predicted(0)
        return f"verdict {label} ({p:.2f})"
    top = Counter(result.predicted(i)[0] for i in range(len(result.scores)))
    return ", ".join(f"{n} {c}" for n, c in top.most_common()) + " slices"
