"""The dataset export with de-identification: pseudonyms for names, a table kept apart, the
de-identified DICOM copy still referencing itself, the same bytes again with the same key."""

from __future__ import annotations

import gzip
import json

import pydicom
import pytest

from medviewer.core import synthetic
from medviewer.core.dataset.export import (
    ExportError,
    ExportOptions,
    annotated_series,
    dataset_folder,
    export_dataset,
)
from medviewer.core.dicom import scan
from tests.core.dataset.studies import check_nnunet_raw

IDENTITY = ("PAT-7731", "PAT-9182", "Doe", "Jane", "Roe", "Richard", "19600101", "20240311")


def _export(studies, out, **options):
    items = annotated_series(scan(studies.data, cache=False))
    options = {"formats": ("nnunet", "monai"), "key": "site secret"} | options
    return export_dataset(items, ExportOptions(out, **options))


def _contents(path):
    data = path.read_bytes()
    return gzip.decompress(data) if path.name.endswith(".gz") else data


def _identity_left(folder):
    found = []
    for path in folder.rglob("*"):
        text = str(path.relative_to(folder)).encode() + (
            _contents(path) if path.is_file() else b"")
        found += [f"{word} in {path.name}" for word in IDENTITY if word.encode() in text]
    return found


def test_case_names_are_pseudonyms_and_no_identity_is_left(studies, tmp_path):
    report = _export(studies, studies.out)
    assert len(report.cases) == 2
    assert all(c["case"].startswith("ANON-") for c in report.cases)
    assert _identity_left(studies.out) == []
    table = studies.out.with_name("export-pseudonyms.csv")
    assert report.pseudonym_table == table
    text = table.read_text()
    assert "PAT-7731" in text and "Doe^Jane" in text
    assert report.cases[0]["case"].split("_")[0] in text


def test_the_same_key_gives_the_same_bytes_and_another_key_other_names(studies, tmp_path):
    one = _export(studies, tmp_path / "one", formats=("nnunet", "monai", "dicom"))
    _export(studies, tmp_path / "two", formats=("nnunet", "monai", "dicom"))
    files = {p.relative_to(tmp_path / "one"): p.read_bytes()
             for p in (tmp_path / "one").rglob("*") if p.is_file()}
    again = {p.relative_to(tmp_path / "two"): p.read_bytes()
             for p in (tmp_path / "two").rglob("*") if p.is_file()}
    assert files.keys() == again.keys()
    assert [k for k in files if files[k] != again[k]] == []
    other = _export(studies, tmp_path / "three", key="another secret")
    assert {c["case"] for c in other.cases}.isdisjoint({c["case"] for c in one.cases})


def test_the_dicom_copy_keeps_its_references_and_loses_the_identity(studies, tmp_path):
    out = tmp_path / "dicom-export"
    report = _export(studies, out, formats=("dicom",), dates="remove")
    written = 6 + 6 + 2 + 1  # images, SEGs, SR
    assert report.deidentification["written"] == report.deidentification["datasets"] == written
    assert _identity_left(out) == []
    found = scan(out / "dicom", cache=False)
    uids = {s.series_instance_uid for s in found.all_series()}
    for path in (out / "dicom").rglob("*.dcm"):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if ds.Modality == "SEG":
            assert {str(s.SeriesInstanceUID) for s in ds.ReferencedSeriesSequence} <= uids
            assert ds.PatientIdentityRemoved == "YES"
    assert "Removed" in report.text()


def test_a_series_that_may_carry_burned_in_text_is_refused_or_warned(studies, tmp_path):
    import numpy as np

    from medviewer.core.annotations import Workspace
    from medviewer.core.dicom import load_series

    folder = studies.data / "PAT-9182" / "burned"
    synthetic.write_series(folder, np.ones((2, 8, 8), np.int16), seed=9,
                           PatientID="PAT-9182", BurnedInAnnotation="YES")
    volume = load_series(scan(folder, cache=False).all_series()[0])
    Workspace.for_series(volume).save_seg(np.ones((2, 8, 8), np.uint8), volume,
                                          ["background", "region"])
    report = _export(studies, tmp_path / "refused")
    assert len(report.cases) == 2
    assert any("burned-in" in s for s in report.skipped)
    warned = _export(studies, tmp_path / "warned", burned_in="warn")
    assert len(warned.cases) == 3
    assert any("burned-in" in p for p in warned.deidentification["could_not_clean"])


def test_the_pseudonym_table_never_goes_inside_the_export(studies):
    with pytest.raises(ExportError, match="pseudonym table"):
        _export(studies, studies.out, pseudonym_table=studies.out / "table.csv")
    assert not dataset_folder(ExportOptions(studies.out)).exists()


def test_a_training_split_still_applies_after_de_identification(studies, tmp_path):
    report = _export(studies, tmp_path / "split", formats=("monai",),
                     split={"train": ["PAT-7731"], "validation": ["PAT-9182"]})
    datalist = json.loads((dataset_folder(ExportOptions(tmp_path / "split"))
                           / "datalist.json").read_text())
    assert len(datalist["validation"]) == 1 and len(datalist["training"]) == 1
    assert datalist["validation"][0]["image"].endswith(f"{report.cases[1]['case']}_0000.nii.gz")


def test_exporting_again_into_the_same_folder_replaces_the_earlier_cases(studies):
    first = _export(studies, studies.out)
    second = _export(studies, studies.out, key="another secret")
    root = dataset_folder(ExportOptions(studies.out))
    assert second.stale_removed == 5  # the first key's 2 images, 2 label maps, 1 boxes JSON
    assert {p.name.split("_")[0] for p in (root / "imagesTr").iterdir()} == {
        c["case"].split("_")[0] for c in second.cases}
    assert check_nnunet_raw(root)["numTraining"] == 2
    assert first.cases != second.cases


def test_a_folder_holding_other_files_is_refused(studies):
    studies.out.mkdir()
    (studies.out / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="already holds other files"):
        _export(studies, studies.out)
    assert sorted(p.name for p in studies.out.iterdir()) == ["notes.txt"]


def test_progress_counts_every_file_and_cancel_stops_the_dicom_copy_between_files(studies,
                                                                                   tmp_path):
    items = annotated_series(scan(studies.data, cache=False))
    seen = []
    options = ExportOptions(tmp_path / "full", formats=("nnunet", "dicom"), key="k")
    export_dataset(items, options, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(n, 2 + 15) for n in range(1, 18)]  # 2 cases, then 15 DICOM files

    seen.clear()
    options = ExportOptions(tmp_path / "cut", formats=("nnunet", "dicom"), key="k")
    report = export_dataset(items, options, progress=lambda d, t: seen.append(d),
                            cancelled=lambda: len(seen) >= 5)
    assert report.cancelled and report.deidentification["cancelled"]
    assert len(list((tmp_path / "cut" / "dicom").rglob("*.dcm"))) == 3
    assert not [p for p in (tmp_path / "cut").rglob("*") if p.name.startswith(".")]
    for path in (tmp_path / "cut" / "dicom").rglob("*.dcm"):
        assert pydicom.dcmread(path).pixel_array.shape == (16, 20)  # whole files only


def test_the_project_reopens_the_copys_segmentations_and_boxes(studies, tmp_path):
    import numpy as np

    from medviewer.core.annotations import read_seg, read_sr
    from medviewer.core.dicom import load_series

    out = tmp_path / "copy"
    _export(studies, out, formats=("dicom",))
    files = [pydicom.dcmread(p, stop_before_pixels=True) for p in (out / "dicom").rglob("*.dcm")]
    images = {s.series_instance_uid: s for s in scan(out / "dicom", cache=False).all_series()
              if s.modality == "CT"}
    segs = [ds for ds in files if ds.Modality == "SEG"]
    assert len(segs) == 2
    reopened = []
    for ds in segs:
        series = images[str(ds.ReferencedSeriesSequence[0].SeriesInstanceUID)]
        volume = load_series(series)
        label_map, names = read_seg(ds.filename, volume)
        reopened.append((names, label_map))
        if len(names) == 3:  # the first patient's: its SR box opens on the copy too
            sr = next(f for f in files if f.Modality == "SR")
            (box,) = read_sr(sr.filename, volume).boxes
            assert (box.label, box.slice_index, box.x0, box.y1) == ("nodule", 4, 2, 8)
    by_names = {tuple(n): m for n, m in reopened}
    for pid, saved in studies.labels.items():
        np.testing.assert_array_equal(by_names[tuple(saved)], studies.masks[pid])
