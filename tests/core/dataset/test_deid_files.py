"""De-identification edge cases: burned-in pixels refused or warned about, private tags and
overlays gone, descriptors cleaned or emptied, a cut-short file reported and skipped, the export
never inside the sources, Cancel leaves whole files only, the pseudonym table kept apart."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import pydicom
import pytest

from medviewer.core.dataset.deid import (
    Deidentifier,
    DeidError,
    DeidOptions,
    deidentify_files,
    write_pseudonym_table,
)

KEY = "another site secret"


def _mr_files(demo_study: Path) -> list[Path]:
    return sorted((demo_study / "DEMO-0003" / "MR_HEAD").glob("*.dcm"))


def _digits_files(demo_study: Path) -> list[Path]:
    return sorted((demo_study / "DEMO-0004" / "DIGITS").glob("*.dcm"))[:2]


def _written(out: Path) -> list[Path]:
    return sorted(out.rglob("*.dcm"))


def _edited(source: Path, target: Path, edit) -> Path:
    ds = pydicom.dcmread(source)
    edit(ds)
    target.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(target, enforce_file_format=True)
    return target


def test_secondary_capture_is_refused_by_default_and_warned_about_on_request(demo_study,
                                                                             tmp_path):
    digits = _digits_files(demo_study)  # OT / Secondary Capture: often burned-in text
    refused = deidentify_files(digits, tmp_path / "refused", DeidOptions(key=KEY))
    assert refused.written == 0 and not _written(tmp_path / "refused")
    assert len(refused.skipped) == 2 and "burned-in" in refused.skipped[0][1]
    warned = deidentify_files(digits, tmp_path / "warned", DeidOptions(key=KEY,
                                                                       burned_in="warn"))
    assert warned.written == 2
    assert all(pydicom.dcmread(p).PatientIdentityRemoved == "NO"
               for p in _written(tmp_path / "warned"))
    assert len(warned.problems) == 1 and "burned-in" in warned.problems[0]  # once, not per file


def test_burned_in_annotation_yes_is_refused_on_any_modality(demo_study):
    ds = pydicom.dcmread(_mr_files(demo_study)[0])
    ds.BurnedInAnnotation = "YES"
    with pytest.raises(DeidError, match="burned-in annotation"):
        Deidentifier(DeidOptions(key=KEY)).dataset(ds)
    assert Deidentifier(DeidOptions(key=KEY, burned_in="warn")).dataset(ds) \
        .PatientIdentityRemoved == "NO"


def test_check_refuses_like_dataset_and_fills_the_table_without_counting(demo_study):
    deid = Deidentifier(DeidOptions(key=KEY))
    with pytest.raises(DeidError, match="burned-in"):
        deid.check(pydicom.dcmread(_digits_files(demo_study)[0], stop_before_pixels=True))
    deid.check(pydicom.dcmread(_mr_files(demo_study)[0], stop_before_pixels=True))
    assert [(r["patient_id"], r["patient_name"]) for r in deid.pseudonym_table()] == [
        ("DEMO-0003", "DEMO^MR")]
    assert deid.report.datasets == 0 and not deid.report.changed


def test_private_tags_overlays_and_unknown_elements_are_gone(demo_study, tmp_path):
    def add(ds):
        block = ds.private_block(0x0011, "ACME SCANNER", create=True)
        block.add_new(0x01, "LO", "DEMO-0003 scanned by GREY")
        item = pydicom.Dataset()
        item.PatientName = "DEMO^MR"
        block.add_new(0x02, "SQ", [item])
        ds.add_new(0x60003000, "OB", b"\x00" * 8)  # an overlay plane's bits
        ds.add_new(0x60000010, "US", 8)
        ds.add_new(0x00189999, "UN", b"DEMO^MR")  # a public tag of unknown VR
    source = _edited(_mr_files(demo_study)[0], tmp_path / "src" / "a.dcm", add)
    report = deidentify_files([source], tmp_path / "out", DeidOptions(key=KEY))
    ds = pydicom.dcmread(_written(tmp_path / "out")[0])
    assert not [e for e in ds.iterall() if e.tag.is_private or e.tag.group == 0x6000]
    assert 0x00189999 not in ds
    assert report.removed["private tags"] >= 3 and report.removed["overlays and curves"] == 2
    assert any("unknown value representation" in p for p in report.problems)


def test_descriptors_are_cleaned_or_emptied(demo_study, tmp_path):
    def comment(ds):
        ds.ImageComments = "Mrs DEMO^MR (DEMO-0003), seen 20240220: follow up"
    source = _edited(_mr_files(demo_study)[0], tmp_path / "src" / "a.dcm", comment)
    deid = Deidentifier(DeidOptions(key=KEY))
    clean = deid.dataset(pydicom.dcmread(source))
    assert clean.SeriesDescription == "T1 SE AX"  # kept: nothing of the patient in it
    assert "DEMO" not in clean.ImageComments and "20240220" not in clean.ImageComments
    assert "follow up" in clean.ImageComments
    emptied = Deidentifier(DeidOptions(key=KEY, clean_descriptors=False)).dataset(
        pydicom.dcmread(source))
    assert not emptied.SeriesDescription and not emptied.ImageComments
    assert "SeriesDescription" in emptied and "113105" not in {
        c.CodeValue for c in emptied.DeidentificationMethodCodeSequence}


def test_text_names_and_dates_deep_in_a_content_tree_are_cleaned(demo_study):
    ds = pydicom.dcmread(_mr_files(demo_study)[0])
    text, when, who, inner = (pydicom.Dataset() for _ in range(4))
    text.ValueType, text.TextValue = "TEXT", "Seen DEMO^MR (DEMO-0003) 2024-02-20, DEMO MR stable"
    when.ValueType, when.Date = "DATE", "20240220"
    who.ValueType, who.PersonName = "PNAME", "DEMO^MR"
    inner.ValueType, inner.ContentSequence = "CONTAINER", [text, when, who]
    ds.ContentSequence = [inner]
    clean = Deidentifier(DeidOptions(key=KEY)).dataset(ds)
    text, when, who = clean.ContentSequence[0].ContentSequence
    assert text.TextValue == "Seen () , stable"
    assert when.Date == clean.StudyDate != "20240220"  # shifted with the rest
    assert "DEMO" not in str(who.PersonName)


def test_patient_characteristics_go_unless_kept(demo_study):
    source = pydicom.dcmread(_mr_files(demo_study)[0])
    plain = Deidentifier(DeidOptions(key=KEY)).dataset(source)
    assert "PatientAge" not in plain and not plain.PatientSex
    kept = Deidentifier(DeidOptions(key=KEY, patient_characteristics=True)).dataset(source)
    assert (kept.PatientAge, kept.PatientSex) == (source.PatientAge, source.PatientSex)
    assert "113108" in {c.CodeValue for c in kept.DeidentificationMethodCodeSequence}
    assert source.PatientName == "DEMO^MR"  # the input is untouched


def test_an_unreadable_date_is_emptied_and_reported(demo_study):
    ds = pydicom.dcmread(_mr_files(demo_study)[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the bad date it is given
        ds.AcquisitionDate = "20241399"
    deid = Deidentifier(DeidOptions(key=KEY))
    clean = deid.dataset(ds)
    assert not clean.AcquisitionDate and clean.StudyDate != ds.StudyDate
    assert any("Acquisition Date" in p for p in deid.report.problems)


def test_a_cut_short_file_is_reported_and_the_rest_written(demo_study, tmp_path):
    good, bad = _mr_files(demo_study)[:2]
    cut = tmp_path / "src" / "cut.dcm"
    cut.parent.mkdir()
    cut.write_bytes(bad.read_bytes()[:len(bad.read_bytes()) // 2])
    junk = tmp_path / "src" / "notes.dcm"
    junk.write_text("not a DICOM file")
    no_uid = _edited(good, tmp_path / "src" / "no_uid.dcm", lambda ds: delattr(ds, "SOPClassUID"))
    seen = []
    report = deidentify_files([good, cut, junk, no_uid], tmp_path / "out", DeidOptions(key=KEY),
                              progress=lambda done, total: seen.append((done, total)))
    assert report.written == 1 and len(_written(tmp_path / "out")) == 1
    reasons = dict(report.skipped)
    assert "truncated" in reasons[str(cut)] and "DICOM" in reasons[str(junk)]
    assert "no SOP Class" in reasons[str(no_uid)]
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert str(cut) not in report.text() and str(cut) in report.text(sources=True)
    assert json.dumps(report.to_dict(sources=True))  # serialisable for the export's report


def test_an_export_inside_a_source_folder_is_refused(demo_study):
    files = _mr_files(demo_study)[:1]
    before = sorted(files[0].parent.iterdir())
    for inside in (files[0].parent, files[0].parent / "export"):
        with pytest.raises(DeidError, match="inside a source folder"):
            deidentify_files(files, inside, DeidOptions(key=KEY))
    assert sorted(files[0].parent.iterdir()) == before  # nothing written there


def test_cancel_stops_between_files_and_leaves_only_whole_ones(demo_study, tmp_path):
    files = _mr_files(demo_study)[:5]
    calls = iter([False, False, True])
    report = deidentify_files(files, tmp_path / "out", DeidOptions(key=KEY),
                              cancelled=lambda: next(calls))
    assert report.cancelled and report.written == 2
    written = list((tmp_path / "out").rglob("*"))
    assert len([p for p in written if p.is_file()]) == 2
    assert all(pydicom.dcmread(p).PatientIdentityRemoved == "YES"
               for p in written if p.is_file())


def test_the_pseudonym_table_is_written_apart_from_the_export(demo_study, tmp_path):
    deid = Deidentifier(DeidOptions(key=KEY))
    deidentify_files(_mr_files(demo_study)[:1], tmp_path / "export", deid)
    deid.pseudonym("NIFTI-ONLY-7")  # a case named for the NIfTI export only
    with pytest.raises(DeidError, match="inside the export"):
        write_pseudonym_table(tmp_path / "export" / "pseudonyms.csv", deid)
    table = write_pseudonym_table(tmp_path / "secure" / "pseudonyms.csv", deid)
    rows = list(csv.DictReader(table.open(encoding="utf-8")))
    assert [(r["patient_id"], r["patient_name"]) for r in rows] == [
        ("DEMO-0003", "DEMO^MR"), ("NIFTI-ONLY-7", "")]
    assert rows[0]["pseudonym"] == deid.pseudonym("DEMO-0003")
    assert int(rows[0]["date_shift_days"]) == deid.shift_days("DEMO-0003") < 0
    assert not list((tmp_path / "export").rglob("*.csv"))


@pytest.mark.parametrize("options, words", [
    ({"key": "  "}, "key is needed"), ({"key": "k", "dates": "keep"}, "shifted or removed"),
    ({"key": "k", "burned_in": "ignore"}, "refused or warned")])
def test_bad_options_are_a_sentence(options, words):
    with pytest.raises(DeidError, match=words):
        DeidOptions(**options)
