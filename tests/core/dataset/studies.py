"""Two patients' small annotated series for the dataset export tests (also used by
tests/ui/dataset: `make_studies`)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np

from medviewer.core import synthetic

SHAPE = (6, 16, 20)
SAVED_LABELS = {"PAT-7731": ["background", "lung", "nodule"], "PAT-9182": ["background", "nodule"]}
PATIENTS = {"PAT-7731": "Doe^Jane", "PAT-9182": "Roe^Richard"}


def _annotate(folder: Path, boxes: bool, seg_labels: list[str]) -> np.ndarray:
    from medviewer.core.annotations import AnnotatedBox, BoxSet, Workspace
    from medviewer.core.dicom import load_series, scan

    volume = load_series(scan(folder, cache=False).all_series()[0])
    ws = Workspace.for_series(volume)
    labels = np.zeros(SHAPE, np.uint8)
    for value, _ in enumerate(seg_labels[1:], start=1):
        labels[value, 3:6 + value, 4:9] = value
    if len(seg_labels) > 1:
        ws.save_seg(labels, volume, seg_labels)
    if boxes:
        from medviewer.core.annotations.boxes import slice_uid

        ws.save_sr(volume, BoxSet([AnnotatedBox(2, 3, 10, 8, 4, "nodule",
                                                sop_instance_uid=slice_uid(volume, 4))]),
                   annotator="Dr Who")
    return labels


def make_studies(tmp_path: Path) -> SimpleNamespace:
    """data/<patient>/ct: an oblique CT with a SEG (lung, nodule) and an SR box for the first
    patient; an axial one with a SEG (nodule) for the second; an unannotated MR for the
    second too."""
    data = tmp_path / "data"
    folders, masks = {}, {}
    for n, (pid, name) in enumerate(PATIENTS.items()):
        folder = data / pid / "ct"
        voxels = (np.arange(np.prod(SHAPE)).reshape(SHAPE) % 900 + n).astype(np.int16)
        synthetic.write_series(folder, voxels, spacing=(2.0, 0.7, 0.8), seed=n,
                               orientation=synthetic.oblique(20 * (1 - n)),
                               PatientName=name, PatientID=pid, PatientBirthDate="19600101",
                               StudyDate="20240311", AccessionNumber=f"ACC{n}")
        folders[pid] = folder
    masks["PAT-7731"] = _annotate(folders["PAT-7731"], True, SAVED_LABELS["PAT-7731"])
    masks["PAT-9182"] = _annotate(folders["PAT-9182"], False, SAVED_LABELS["PAT-9182"])
    synthetic.write_series(data / "PAT-9182" / "mr", np.ones((3, 8, 8), np.int16), modality="MR",
                           seed=5, PatientName="Roe^Richard", PatientID="PAT-9182")
    return SimpleNamespace(data=data, folders=folders, masks=masks, out=tmp_path / "export",
                           labels=SAVED_LABELS)


NNUNET_KEYS = {"channel_names", "labels", "numTraining", "file_ending"}  # nnU-Net v2 required


def check_nnunet_raw(root):
    """What nnU-Net v2's verify_dataset_integrity checks of a raw dataset, as a test."""
    meta = json.loads((root / "dataset.json").read_text())
    assert NNUNET_KEYS <= set(meta)
    assert meta["labels"]["background"] == 0
    assert sorted(meta["labels"].values()) == list(range(len(meta["labels"])))
    labels = sorted(p.name for p in (root / "labelsTr").iterdir())
    assert meta["numTraining"] == len(labels)
    images = sorted(p.name for p in (root / "imagesTr").iterdir())
    channels = [f"_{int(c):04d}{meta['file_ending']}" for c in meta["channel_names"]]
    assert images == sorted(n.replace(meta["file_ending"], c) for n in labels for c in channels)
    for name in labels:
        label = nib.load(root / "labelsTr" / name)
        image = nib.load(root / "imagesTr" / name.replace(".nii.gz", "_0000.nii.gz"))
        assert label.shape == image.shape
        np.testing.assert_allclose(label.affine, image.affine)
        values = set(np.unique(np.asarray(label.dataobj)).tolist())
        assert values <= set(meta["labels"].values())
    return meta
