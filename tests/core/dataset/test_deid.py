"""De-identification of the demo study with a SEG and an SR saved on it (issue 16, items 1 and
4): nothing of the patient survives anywhere, the references still resolve (highdicom and our
own readers on the de-identified series), dciodvfy finds no new error, the same key gives the
same output and another key another one.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pydicom
import pytest
from pydicom.multival import MultiValue

from medviewer.core.annotations.boxes import AnnotatedBox, BoxSet, distance_line, slice_uid
from medviewer.core.annotations.seg import write_seg
from medviewer.core.annotations.seg_read import read_seg
from medviewer.core.annotations.sr import write_sr
from medviewer.core.annotations.sr_read import read_sr
from medviewer.core.dataset.deid import Deidentifier, DeidOptions, deidentify_files
from medviewer.core.dataset.deidentifier import CODED
from medviewer.core.dicom import load_series

DCIODVFY = shutil.which("dciodvfy")
KEY = "a site secret"


@pytest.fixture(scope="module")
def exported(demo_study: Path, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """The demo MR head with a SEG and an SR saved on it, and the chest DX, de-identified."""
    mr = load_series(demo_study / "DEMO-0003" / "MR_HEAD")
    saved = tmp_path_factory.mktemp("annotations")
    labels = np.zeros(mr.voxels.shape, np.uint8)
    labels[5:8, 100:140, 90:150] = 1
    seg = write_seg(labels, mr, ["background", "lesion"], saved / "seg.dcm",
                    annotator="Doe^Jane")
    box = AnnotatedBox(10, 12, 40, 44, 6, "mass", sop_instance_uid=slice_uid(mr, 6))
    line = distance_line(mr, 7, (10, 10), (50, 60))
    sr = write_sr(saved / "sr.dcm", mr, BoxSet([box]), [line], annotator="Doe^Jane")
    sources = [*sorted((demo_study / "DEMO-0003" / "MR_HEAD").glob("*.dcm")),
               *sorted((demo_study / "DEMO-0001" / "DX_CHEST").glob("*.dcm")), seg, sr]
    out = tmp_path_factory.mktemp("export")
    deid = Deidentifier(DeidOptions(key=KEY))
    report = deidentify_files(sources, out, deid)
    header = pydicom.dcmread(sources[0], stop_before_pixels=True)
    return SimpleNamespace(mr=mr, mr_series=str(header.SeriesInstanceUID),
                           mr_frame=str(header.FrameOfReferenceUID), labels=labels, box=box,
                           line=line, seg=seg, sr=sr, sources=sources, out=out, deid=deid,
                           report=report)


def _elements(ds: pydicom.Dataset):
    """Every element of a dataset and its file meta, sequences (the SR content tree) walked."""
    yield from ds.file_meta
    yield from ds.iterall()


def _values(elem) -> list[str]:
    if elem.VR == "SQ" or isinstance(elem.value, bytes) or elem.value is None:
        return []
    values = elem.value if isinstance(elem.value, MultiValue) else [elem.value]
    return [str(v) for v in values if str(v)]


def _identity(paths) -> tuple[set[str], set[str]]:
    """What would identify the patients: names, IDs, dates, instance UIDs; and name parts."""
    found: set[str] = set()
    parts: set[str] = set()
    for path in paths:
        for elem in _elements(pydicom.dcmread(path)):
            for value in _values(elem):
                if elem.VR == "PN":
                    found.add(value)
                    parts |= {p for p in value.split("^") if len(p) > 2}
                elif elem.VR in ("DA", "DT"):
                    found.add(value[:8])
                elif elem.keyword in ("PatientID", "AccessionNumber", "OtherPatientIDs"):
                    found.add(value)
                elif elem.VR == "UI" and not value.startswith("1.2.840.10008."):
                    found.add(value)
    return found, parts - found


def _written(out: Path) -> list[Path]:
    return sorted(out.rglob("*.dcm"))


def _by_class(out: Path, sop_class_prefix: str) -> Path:
    return next(p for p in _written(out)
                if str(pydicom.dcmread(p, stop_before_pixels=True).SOPClassUID)
                .startswith(sop_class_prefix))


def test_every_file_is_written_under_its_pseudonym_and_new_uids(exported):
    assert exported.report.written == len(exported.sources) and not exported.report.skipped
    table = {row["pseudonym"]: row for row in exported.deid.pseudonym_table()}
    assert {r["patient_id"]: r["patient_name"] for r in table.values()} == {
        "DEMO-0003": "DEMO^MR", "DEMO-0001": "DEMO^CHEST"}
    for path in _written(exported.out):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert path.relative_to(exported.out).parts == (
            ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID, f"{ds.SOPInstanceUID}.dcm")
        assert ds.PatientID in table and ds.PatientName == ds.PatientID.replace("-", "^")
        assert ds.PatientIdentityRemoved == "YES"
        assert [c.CodeValue for c in ds.DeidentificationMethodCodeSequence] == [
            "113100", "113105", "113107"]  # basic profile, clean descriptors, modified dates


def test_no_original_name_id_date_or_uid_survives_anywhere(exported):
    identity, name_parts = _identity(exported.sources)
    assert {"DEMO^MR", "DEMO-0003", "DEMO-0001", "20240220", "19870630"} <= identity
    assert {"DEMO", "CHEST", "GREY", "MEREDITH"} <= name_parts
    for path in _written(exported.out):
        ds = pydicom.dcmread(path)
        # a name part may be a coded word too (DEMO^CHEST; Body Part Examined CHEST, code
        # meaning 'Chest'): name parts are looked for in free text only, the rest everywhere
        left = {v for elem in _elements(ds) for v in _values(elem)
                for secret in identity | (set() if elem.VR == "CS" or elem.keyword in CODED
                                          else name_parts)
                if secret.upper() in v.upper()}
        assert not left, f"{path.name} still holds {sorted(left)}"
        raw = path.read_bytes()
        for secret in identity:
            assert secret.encode() not in raw, f"{secret} in the bytes of {path.name}"


def test_seg_and_sr_reference_the_new_image_uids(exported):
    import highdicom as hd

    images = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)
              for p in _written(exported.out)}
    seg = hd.seg.segread(_by_class(exported.out, "1.2.840.10008.5.1.4.1.1.66.4"))
    referenced = {str(item.DerivationImageSequence[0].SourceImageSequence[0]
                      .ReferencedSOPInstanceUID) for item in seg.PerFrameFunctionalGroupsSequence}
    assert referenced and referenced <= images
    series = exported.deid.uid(exported.mr_series)
    assert str(seg.ReferencedSeriesSequence[0].SeriesInstanceUID) == series
    assert str(seg.FrameOfReferenceUID) == exported.deid.uid(exported.mr_frame)
    sr = hd.sr.srread(_by_class(exported.out, "1.2.840.10008.5.1.4.1.1.88"))
    evidence = {str(i.ReferencedSOPInstanceUID)
                for s in sr.CurrentRequestedProcedureEvidenceSequence
                for r in s.ReferencedSeriesSequence for i in r.ReferencedSOPSequence}
    assert evidence and evidence <= images


def test_our_readers_reopen_seg_and_sr_on_the_deidentified_series(exported):
    mr_uid = exported.deid.uid(exported.mr_series)
    folder = next(p for p in exported.out.rglob(mr_uid) if p.is_dir())
    volume = load_series(folder)
    assert volume.voxels.shape == exported.mr.voxels.shape
    np.testing.assert_array_equal(volume.voxels, exported.mr.voxels)  # pixels untouched
    np.testing.assert_allclose(volume.affine, exported.mr.affine)
    back, names = read_seg(_by_class(exported.out, "1.2.840.10008.5.1.4.1.1.66.4"), volume)
    np.testing.assert_array_equal(back, exported.labels)
    assert names[1:] == ["lesion"]
    # no sidecar travels with the export: the SR alone places the box and the ruler
    annotations = read_sr(_by_class(exported.out, "1.2.840.10008.5.1.4.1.1.88"), volume)
    (box,) = annotations.boxes
    assert (box.slice_index, box.label) == (6, "mass")
    assert (box.x0, box.y0, box.x1, box.y1) == pytest.approx((10, 12, 40, 44))
    assert box.sop_instance_uid == slice_uid(volume, 6)
    (line,) = annotations.lines
    assert line.slice_index == 7 and line.length_mm == pytest.approx(exported.line.length_mm)


def _dciodvfy(path: Path) -> set[str]:
    run = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, timeout=120)
    return {line.split(" - ", 1)[-1] for line in (run.stdout + run.stderr).splitlines()
            if line.startswith(("Error", "Warning"))}


def _new_findings(sources, out: Path) -> dict[str, list[str]]:
    """dciodvfy's errors and warnings on each copy that its source does not already have."""
    copies = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPClassUID): p
              for p in _written(out)}
    found = {}
    for source in sources:
        sop_class = str(pydicom.dcmread(source, stop_before_pixels=True).SOPClassUID)
        found[source.name] = sorted(_dciodvfy(copies[sop_class]) - _dciodvfy(source))
    return found


@pytest.mark.skipif(DCIODVFY is None, reason="dciodvfy (dicom3tools) is not installed")
def test_dciodvfy_finds_nothing_new(exported):
    sources = (exported.sources[0], exported.sources[-3], exported.seg, exported.sr)
    assert _new_findings(sources, exported.out) == {s.name: [] for s in sources}


@pytest.mark.skipif(DCIODVFY is None, reason="dciodvfy (dicom3tools) is not installed")
def test_dciodvfy_finds_no_new_error_with_dates_removed(exported, tmp_path):
    sources = (exported.sources[0], exported.seg, exported.sr)
    deidentify_files(sources, tmp_path, DeidOptions(key=KEY, dates="remove"))
    errors = {name: [f for f in found if not f.startswith("Missing attribute or value that "
                                                          "would be needed to build DICOMDIR")]
              for name, found in _new_findings(sources, tmp_path).items()}
    assert errors == {s.name: [] for s in sources}  # no date is what DICOMDIR would miss


def _date(text: str) -> dt.date:
    return dt.datetime.strptime(str(text), "%Y%m%d").date()


def test_dates_move_by_one_offset_per_patient_and_intervals_are_kept(exported):
    shifts = {}
    for source in exported.sources:
        before = pydicom.dcmread(source, stop_before_pixels=True)
        after = pydicom.dcmread(exported.out / exported.deid.pseudonym(before.PatientID) /
                                exported.deid.uid(before.StudyInstanceUID) /
                                exported.deid.uid(before.SeriesInstanceUID) /
                                f"{exported.deid.uid(before.SOPInstanceUID)}.dcm")
        for keyword in ("StudyDate", "ContentDate", "PatientBirthDate"):
            if before.get(keyword):
                shift = _date(after[keyword].value) - _date(before[keyword].value)
                shifts.setdefault(str(before.PatientID), set()).add(shift.days)
        assert after.StudyTime == before.StudyTime  # whole days: the time of day is kept
    assert all(len(days) == 1 for days in shifts.values()), shifts  # intervals kept
    mr, dx = shifts["DEMO-0003"].pop(), shifts["DEMO-0001"].pop()
    assert mr != dx and all(-730 <= d <= -62 for d in (mr, dx))
    assert exported.deid.shift_days("DEMO-0003") == mr


def test_the_same_key_gives_the_same_files_another_key_other_ones(exported, tmp_path):
    first = exported.sources[:2]
    again = deidentify_files(first, tmp_path / "again", DeidOptions(key=KEY))
    assert again.written == 2
    for path in _written(tmp_path / "again"):
        twin = exported.out / path.relative_to(tmp_path / "again")
        assert twin.read_bytes() == path.read_bytes()
    deidentify_files(first, tmp_path / "other", DeidOptions(key="another secret"))
    names = {p.relative_to(tmp_path / "other") for p in _written(tmp_path / "other")}
    assert len(names) == 2
    assert not names & {p.relative_to(exported.out) for p in _written(exported.out)}
    ds = pydicom.dcmread(_written(tmp_path / "other")[0])
    assert ds.PatientID != exported.deid.pseudonym("DEMO-0003")


def test_removed_dates_leave_no_date_at_all(demo_study, tmp_path):
    source = sorted((demo_study / "DEMO-0003" / "MR_HEAD").glob("*.dcm"))[0]
    deidentify_files([source], tmp_path / "out", DeidOptions(key=KEY, dates="remove"))
    (path,) = _written(tmp_path / "out")
    ds = pydicom.dcmread(path)
    dates = [e for e in ds.iterall() if e.VR in ("DA", "DT", "TM")]
    assert dates and all(not e.value for e in dates)
    assert ds.LongitudinalTemporalInformationModified == "REMOVED"
    assert "113107" not in {c.CodeValue for c in ds.DeidentificationMethodCodeSequence}


def test_the_report_counts_per_tag_group_and_names_no_one(exported):
    record = exported.report.to_dict()
    assert record["written"] == len(exported.sources) and record["could_not_clean"] == []
    for group in ("person names", "UIDs", "dates and times", "identifiers"):
        assert record["changed"].get(group, 0) >= len(exported.sources), group
    assert record["removed"].get("patient characteristics", 0) >= 1  # PatientAge
    text = exported.report.text()
    assert "person names" in text and "UIDs" in text
    for secret in ("DEMO", "20240220", exported.mr_series):
        assert secret not in text and secret not in str(record)
