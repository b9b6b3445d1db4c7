"""The NIfTI layouts of a dataset export: nnU-Net v2 raw and MONAI's datalist.

    write_case(root, name, seg, sr, volume, labels)   imagesTr|imagesTs, labelsTr, boxes/
    nnunet_dataset_json(entries, labels, name)        dataset.json (nnU-Net v2's keys)
    monai_datalist(entries, patients, split)          datalist.json
    nnunet_splits(entries, patients, split)           splits_final.json (a kept split)
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medviewer.core.atomic import write_text_atomic
from medviewer.core.dataset.nifti import NiftiError, box_record, contiguous_labels, write_nifti


def label_names(segs: Sequence[Path]) -> dict[str, int]:
    """Every segment name of the SEGs, numbered 1..K in order of first appearance."""
    import pydicom

    from medviewer.core.annotations.seg_read import _labels_of

    names: dict[str, int] = {}
    for seg in segs:
        for name in _labels_of(pydicom.dcmread(seg, stop_before_pixels=True))[1:]:
            names.setdefault(name, len(names) + 1)
    return names


def write_case(root: Path, name: str, seg: Path | None, sr: Path | None, volume: Any,
               labels: Mapping[str, int]) -> dict[str, Any]:
    """One case's image (imagesTr with a SEG, else imagesTs), label map and boxes under
    `root`; returns its entry (case, modality, image, label, boxes: paths under root)."""
    from medviewer.core.annotations.seg_read import read_seg
    from medviewer.core.annotations.sr_read import read_sr

    if volume.is_4d or volume.is_colour:
        raise NiftiError("a 4D or colour series is not exported as NIfTI (grey-level 3D only)")
    entry: dict[str, Any] = {"case": name, "modality": volume.modality or "image"}
    folder = "imagesTr" if seg is not None else "imagesTs"
    image = f"{folder}/{name}_0000.nii.gz"
    label_map = None
    if seg is not None:  # read before writing anything: a SEG that does not fit skips
        label_map, names = read_seg(seg, volume)
        label_map = contiguous_labels(label_map, names, labels)
    write_nifti(root / image, volume.voxels, volume.affine)
    entry["image"] = image
    if label_map is not None:
        entry["label"] = f"labelsTr/{name}.nii.gz"
        write_nifti(root / entry["label"], label_map, volume.affine)
    if sr is not None:
        found = read_sr(sr, volume)
        entry["boxes"] = f"boxes/{name}.json"
        write_json(root / entry["boxes"], {
            "case": name, "image": image, "pixel_origin": "top-left corner of the "
            "first pixel (a pixel's centre is at +0.5)",
            "boxes": [box_record(b, volume) for b in found.boxes],
            "class_labels": [{"label": c.label, "scope": c.scope, "slice": c.slice_index,
                              "score": c.score, "source": c.source}
                             for c in found.class_labels]})
    return entry


def nnunet_dataset_json(entries: Sequence[dict[str, Any]], labels: Mapping[str, int],
                        name: str) -> dict[str, Any]:
    """nnU-Net v2's dataset.json: channel_names, labels (background 0), numTraining,
    file_ending (the keys nnU-Net's dataset format documentation requires)."""
    modalities = sorted({str(e.get("modality", "")) for e in entries} - {""})
    return {"channel_names": {"0": modalities[0] if len(modalities) == 1 else "image"},
            "labels": {"background": 0, **dict(labels)},
            "numTraining": sum(1 for e in entries if "label" in e),
            "file_ending": ".nii.gz",
            "name": name,
            "description": "Exported by MedViewer (File > Export Dataset)"}


def monai_datalist(entries: Sequence[dict[str, Any]], patients: Mapping[str, str],
                   split: Mapping[str, Any] | None) -> dict[str, Any]:
    """MONAI's datalist: training / validation (a training run's patient split when given:
    a case whose PatientID the run validated on validates here; else everything trains) and
    test (images without a label). `patients`: case name -> PatientID."""
    out: dict[str, list[dict[str, str]]] = {"training": [], "validation": [], "test": []}
    for e in entries:
        out[_side(e, patients, split)].append({k: e[k] for k in ("image", "label") if k in e})
    return out


def nnunet_splits(entries: Sequence[dict[str, Any]], patients: Mapping[str, str],
                  split: Mapping[str, Any]) -> list[dict[str, list[str]]]:
    """nnU-Net v2's splits_final.json for a kept split: one fold, its "train" and "val" case
    names (the labelled cases; the same sides as the MONAI datalist)."""
    fold: dict[str, list[str]] = {"train": [], "val": []}
    for e in entries:
        side = _side(e, patients, split)
        if side != "test":
            fold["val" if side == "validation" else "train"].append(e["case"])
    return [fold]


def _side(entry: Mapping[str, Any], patients: Mapping[str, str],
          split: Mapping[str, Any] | None) -> str:
    """training, validation (the run validated on that patient) or test (no label)."""
    if "label" not in entry:
        return "test"
    held_out = set(split.get("validation", ())) if split else set()
    return "validation" if patients.get(entry["case"]) in held_out else "training"


def write_json(path: Path, record: Any) -> None:
    write_text_atomic(path, json.dumps(record, indent=2, sort_keys=True) + "\n")
