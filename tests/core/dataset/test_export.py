"""Dataset export (nnU-Net v2 raw / MONAI): layout, geometry, split, reproducibility, Cancel."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from medviewer.core.dataset.export import (
    ExportError,
    ExportOptions,
    annotated_series,
    dataset_folder,
    export_dataset,
)
from medviewer.core.dicom import load_series, scan
from tests.core.dataset.studies import check_nnunet_raw


def _items(studies):
    return annotated_series(scan(studies.data, cache=False))


def _export(studies, out=None, **options):
    options = {"formats": ("nnunet", "monai"), "deidentify": False} | options
    return export_dataset(_items(studies), ExportOptions(out or studies.out, **options))


def test_only_annotated_series_are_chosen(studies):
    items = _items(studies)
    assert sorted(i.patient_id for i in items) == ["PAT-7731", "PAT-9182"]  # not the MR


def test_nnunet_raw_layout_and_dataset_json(studies):
    report = _export(studies)
    root = dataset_folder(ExportOptions(studies.out))
    assert root.name == "Dataset001_MedViewer"
    meta = check_nnunet_raw(root)
    assert meta["labels"] == {"background": 0, "lung": 1, "nodule": 2}
    assert meta["channel_names"] == {"0": "CT"} and meta["numTraining"] == 2
    assert len(report.cases) == 2 and not report.skipped
    datalist = json.loads((root / "datalist.json").read_text())
    assert {e["image"] for e in datalist["training"]} == {
        f"imagesTr/{c['case']}_0000.nii.gz" for c in report.cases}
    assert all((root / e["label"]).is_file() for e in datalist["training"])
    assert not list(studies.out.rglob("*.tmp"))


def test_the_label_map_lands_on_the_patient_coordinates_of_the_dicom(studies):
    report = _export(studies)
    root = dataset_folder(ExportOptions(studies.out))
    meta = json.loads((root / "dataset.json").read_text())
    for case, pid in zip(report.cases, ["PAT-7731", "PAT-9182"], strict=True):
        volume = load_series(studies.folders[pid])
        label = nib.load(root / case["label"])
        data = np.asarray(label.dataobj)
        mask = studies.masks[pid]
        saved = studies.labels[pid]
        assert set(np.unique(data)) == {meta["labels"][n] for n in saved}
        for source_value, name in enumerate(saved[1:], start=1):
            ijk = np.argwhere(data == meta["labels"][name])  # (column, row, slice)
            ras = (label.affine @ np.c_[ijk, np.ones(len(ijk))].T)[:3].T
            krc = np.argwhere(mask == source_value)  # (slice, row, column) in the source
            lps = (volume.affine @ np.c_[krc[:, ::-1], np.ones(len(krc))].T)[:3].T
            assert len(ras) == len(lps) > 0
            np.testing.assert_allclose(sorted(map(tuple, np.round(ras * [-1, -1, 1], 3))),
                                       sorted(map(tuple, np.round(lps, 3))), atol=2e-3)


def test_boxes_come_out_per_case_in_pixels_and_millimetres(studies):
    report = _export(studies)
    root = dataset_folder(ExportOptions(studies.out))
    with_boxes = [c for c in report.cases if "boxes" in c]
    assert len(with_boxes) == 1
    record = json.loads((root / with_boxes[0]["boxes"]).read_text())
    (box,) = record["boxes"]
    assert box["label"] == "nodule" and box["slice"] == 4
    assert box["pixel_xyxy"] == [2.0, 3.0, 10.0, 8.0]
    volume = load_series(studies.folders["PAT-7731"])
    expected = (volume.affine @ [2 - 0.5, 3 - 0.5, 4, 1])[:3]  # the corner, not a centre
    np.testing.assert_allclose(box["lps_mm"][0], expected, atol=1e-3)
    np.testing.assert_allclose(box["ras_mm"][0], expected * [-1, -1, 1], atol=1e-3)


def test_a_training_split_is_kept_in_the_monai_datalist(studies):
    split = {"train": ["PAT-7731"], "validation": ["PAT-9182"]}
    report = _export(studies, split=split, formats=("monai",))
    root = dataset_folder(ExportOptions(studies.out))
    datalist = json.loads((root / "datalist.json").read_text())
    assert [e["image"] for e in datalist["validation"]] == [
        f"imagesTr/{report.cases[1]['case']}_0000.nii.gz"]
    assert len(datalist["training"]) == 1
    assert not (root / "dataset.json").exists()  # monai only
    assert not (root / "splits_final.json").exists()


def test_a_training_split_is_kept_for_nnunet_as_one_fold(studies):
    split = {"train": ["PAT-7731"], "validation": ["PAT-9182"]}
    report = _export(studies, split=split, formats=("nnunet",))
    root = dataset_folder(ExportOptions(studies.out))
    cases = {c["case"]: c for c in report.cases}
    [fold] = json.loads((root / "splits_final.json").read_text())
    assert fold == {"train": [report.cases[0]["case"]], "val": [report.cases[1]["case"]]}
    for name in fold["train"] + fold["val"]:  # names nnU-Net finds in labelsTr
        assert (root / "labelsTr" / f"{name}.nii.gz").is_file() and name in cases
    _export(studies, formats=("nnunet",))  # no split this time: no stale fold left behind
    assert not (root / "splits_final.json").exists()


def test_a_second_export_is_byte_identical(studies, tmp_path):
    _export(studies, tmp_path / "one")
    _export(studies, tmp_path / "two")
    one = {p.relative_to(tmp_path / "one"): p.read_bytes()
           for p in (tmp_path / "one").rglob("*") if p.is_file()}
    two = {p.relative_to(tmp_path / "two"): p.read_bytes()
           for p in (tmp_path / "two").rglob("*") if p.is_file()}
    assert one.keys() == two.keys() and len(one) >= 7
    report = next(k for k in one if k.name == "export_report.json")
    assert {k for k in one if one[k] != two[k]} <= {report}
    assert json.loads(one[report])["cases"] == json.loads(two[report])["cases"]


def _state(folder):
    """Every path under `folder` with its modification time: a file made and removed again
    (a write probe) still changes its folder's time."""
    return {p: p.stat().st_mtime_ns for p in [folder, *folder.rglob("*")]}


def test_the_export_never_writes_into_a_source_folder(studies):
    before = _state(studies.data)
    with pytest.raises(ExportError, match="inside the source folder"):
        _export(studies, studies.folders["PAT-9182"] / "out")
    with pytest.raises(ExportError, match="inside the source folder"):
        _export(studies, studies.folders["PAT-7731"])
    _export(studies)  # choosing the series and exporting them leave the data as it was
    assert _state(studies.data) == before


def test_cancel_leaves_only_whole_files_and_no_dataset_json(studies):
    seen = []

    def cancelled():
        return len(seen) >= 1

    report = export_dataset(_items(studies), ExportOptions(studies.out, deidentify=False),
                            progress=lambda done, total: seen.append(done),
                            cancelled=cancelled)
    root = dataset_folder(ExportOptions(studies.out))
    assert report.cancelled
    assert not (root / "dataset.json").exists()
    assert not [p for p in studies.out.rglob("*") if p.name.startswith(".")]
    for path in root.rglob("*.nii.gz"):
        nib.load(path).get_fdata()  # each one whole


def test_bad_choices_get_a_sentence(studies):
    with pytest.raises(ExportError, match="needs a key"):
        _export(studies, deidentify=True, key="")
    with pytest.raises(ExportError, match="Unknown export format"):
        _export(studies, formats=("nifti",))
    with pytest.raises(ExportError, match="nothing to export"):
        export_dataset([], ExportOptions(studies.out, deidentify=False))
    with pytest.raises(ExportError, match="DICOM export is the de-identified copy"):
        _export(studies, formats=("dicom",))
