"""DICOM SR (TID 1500) + JSON sidecar: boxes, distance lines and class labels round trip."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest

from medviewer.core.annotations import AnnotationError
from medviewer.core.annotations.boxes import (
    SLICE,
    AnnotatedBox,
    BoxSet,
    ClassLabel,
    boxes_from_model,
    distance_line,
    model_source,
    slice_uid,
)
from medviewer.core.annotations.sr import (
    read_provenance,
    read_sr,
    sidecar_path_for,
    write_sr,
)
from medviewer.core.dicom import load_series, scan

MODEL = model_source("lung-det", "1.2.0")


@pytest.fixture(scope="module")
def volume(ct_series):
    return load_series(scan(ct_series.folder, cache=False).all_series()[0])


def _annotations(volume):
    detections = [SimpleNamespace(x0=10.3, y0=12.1, x1=20.7, y1=30.2, label="nodule",
                                  score=0.91, slice_index=5),
                  SimpleNamespace(x0=1, y0=2, x1=5, y1=6, label="nodule", score=0.2,
                                  slice_index=7),
                  SimpleNamespace(x0=40, y0=40, x1=50, y1=52, label="nodule", score=0.6,
                                  slice_index=9)]
    boxes = boxes_from_model(detections, volume, source=MODEL)
    boxes.accept(boxes.boxes[0].uid)
    boxes.reject(boxes.boxes[1].uid)  # boxes[2] stays proposed
    boxes.add(AnnotatedBox(3, 4, 9, 9, 2, "mass", sop_instance_uid=slice_uid(volume, 2)))
    boxes.set_class(ClassLabel("pneumonia", scope=SLICE, slice_index=3,
                               sop_instance_uid=slice_uid(volume, 3)))
    boxes.set_class(ClassLabel("normal", source=model_source("cls", "2"), score=0.75))
    return boxes, [distance_line(volume, 4, (10, 10), (20, 14.5))]


def test_round_trip_is_identical(volume, tmp_path):
    boxes, lines = _annotations(volume)
    path = write_sr(tmp_path / "a.dcm", volume, boxes, lines, annotator="Jane Doe",
                    model=MODEL)
    back, labels, measured, areas = read_sr(path)
    assert areas == []
    assert back == list(boxes.boxes) and labels == list(boxes.class_labels)
    assert measured == lines
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.dcm", "a.json"]


def test_highdicom_reads_it_and_it_references_the_source_series(volume, tmp_path):
    import highdicom as hd
    from pydicom.sr.codedict import codes

    boxes, lines = _annotations(volume)
    sr = hd.sr.srread(write_sr(tmp_path / "a.dcm", volume, boxes, lines, annotator="J"))
    assert sr.StudyInstanceUID == volume.series.study_instance_uid
    series = {s[1] for s in sr.get_evidence()}
    assert series == {volume.series.series_instance_uid}
    report = hd.sr.MeasurementReport.from_sequence([sr])
    rois = report.get_planar_roi_measurement_groups()
    assert len(rois) == 4  # 3 boxes not rejected + 1 line
    box = next(g for g in rois if g.finding_type == codes.SCT.Mass)  # the label "mass"
    assert box.roi.graphic_type == hd.sr.GraphicTypeValues.POLYLINE
    assert box.roi.value.tolist() == [[3, 4], [9, 4], [9, 9], [3, 9], [3, 4]]
    source = box.roi.ContentSequence[0].ReferencedSOPSequence[0]
    assert source.ReferencedSOPInstanceUID == slice_uid(volume, 2)


def test_without_the_sidecar_the_sr_alone_gives_the_findings(volume, tmp_path):
    boxes, lines = _annotations(volume)
    path = write_sr(tmp_path / "a.dcm", volume, boxes, lines, annotator="J")
    sidecar_path_for(path).unlink()
    with pytest.raises(AnnotationError):
        read_sr(path)  # without the series the images cannot be placed
    back, labels, measured, _ = read_sr(path, volume)
    kept = [b for b in boxes if b.state != "rejected"]
    assert [(b.uid, b.label, b.slice_index, b.sop_instance_uid, b.source) for b in back] == \
        [(b.uid, b.label, b.slice_index, b.sop_instance_uid, b.source) for b in kept]
    assert [b.x0 for b in back] == pytest.approx([b.x0 for b in kept])  # float32 in SR
    assert [(c.label, c.scope, c.slice_index, c.source) for c in labels] == \
        [(c.label, c.scope, c.slice_index, c.source) for c in boxes.class_labels]
    assert measured[0].length_mm == pytest.approx(lines[0].length_mm)


def test_a_stale_sidecar_is_ignored(volume, tmp_path):
    boxes, _ = _annotations(volume)
    write_sr(tmp_path / "a.dcm", volume, boxes, annotator="J")
    old_sidecar = (tmp_path / "a.json").read_text()
    write_sr(tmp_path / "a.dcm", volume, BoxSet(), annotator="J")
    (tmp_path / "a.json").write_text(old_sidecar)  # e.g. a crash between the two renames
    assert read_sr(tmp_path / "a.dcm", volume) == ([], [], [], [])


def test_provenance_records_annotator_time_and_model(volume, tmp_path):
    when = dt.datetime(2024, 5, 6, 7, 8, 9).astimezone()
    path = write_sr(tmp_path / "a.dcm", volume, BoxSet(), annotator="Jane Doe", model=MODEL,
                    saved_at=when)
    found = read_provenance(path)
    assert (found.annotator, found.model) == ("Jane Doe", MODEL)
    assert found.saved_at == "2024-05-06T07:08:09"


def test_a_killed_save_leaves_the_previous_file_intact(volume, tmp_path, monkeypatch):
    import highdicom as hd

    boxes, lines = _annotations(volume)
    path = write_sr(tmp_path / "a.dcm", volume, boxes, lines, annotator="J")
    before = path.read_bytes(), sidecar_path_for(path).read_bytes()

    def half_a_file(self, f, **kw):
        f.write(b"\0" * 200)
        raise OSError("disk full")

    monkeypatch.setattr(hd.sr.Comprehensive3DSR, "save_as", half_a_file)
    with pytest.raises(OSError):
        write_sr(path, volume, BoxSet(), annotator="J")
    assert (path.read_bytes(), sidecar_path_for(path).read_bytes()) == before
    assert read_sr(path)[0] == list(boxes.boxes)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.dcm", "a.json"]


@pytest.mark.parametrize("content", [b"", b"not dicom at all" * 20])
def test_a_corrupt_file_is_an_annotation_error_and_left_alone(tmp_path, content):
    path = tmp_path / "a.dcm"
    path.write_bytes(content)
    with pytest.raises(AnnotationError):
        read_sr(path)
    assert path.read_bytes() == content


def test_a_foreign_dicom_file_is_an_annotation_error(ct_series, tmp_path):
    image = ct_series.paths[0]  # a CT image, not an SR
    content = image.read_bytes()
    with pytest.raises(AnnotationError):
        read_sr(image)
    assert image.read_bytes() == content


def test_a_foreign_sidecar_is_an_annotation_error_and_left_alone(volume, tmp_path):
    path = write_sr(tmp_path / "a.dcm", volume, BoxSet(), annotator="J")
    sidecar_path_for(path).write_text('{"format": "something else"}')
    with pytest.raises(AnnotationError):
        read_sr(path, volume)
    assert sidecar_path_for(path).read_text() == '{"format": "something else"}'


def test_an_sr_of_another_series_is_refused(volume, tmp_path):
    boxes, _ = _annotations(volume)
    path = write_sr(tmp_path / "a.dcm", volume, boxes, annotator="J")
    sidecar_path_for(path).unlink()
    other = SimpleNamespace(sources=[SimpleNamespace(sop_instance_uid="1.2.3", path="")])
    with pytest.raises(AnnotationError, match="another series"):
        read_sr(path, other)


def test_an_item_highdicom_refuses_is_an_annotation_error_and_nothing_is_written(
        volume, tmp_path, monkeypatch):
    import highdicom as hd

    def refuse(*args, **kwargs):
        raise TypeError("no frame numbers for this SOP class")

    monkeypatch.setattr(hd.sr, "ImageRegion", refuse)
    boxes, lines = _annotations(volume)
    with pytest.raises(AnnotationError, match="cannot be encoded as DICOM SR .no frame"):
        write_sr(tmp_path / "a.dcm", volume, boxes, lines, annotator="J")
    assert list(tmp_path.iterdir()) == []
