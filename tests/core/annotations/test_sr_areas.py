"""Area ROIs (rectangle, ellipse) in the SR: TID 1500 groups with area, mean, SD, min, max,
round trips through the SR alone, the sidecar and the autosave, and the reference validators."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess

import pytest

from medviewer.core.annotations import AnnotationError
from medviewer.core.annotations.autosave import autosaved_areas, save_autosave
from medviewer.core.annotations.boxes import (
    PX2,
    SLICE,
    AnnotatedBox,
    AreaMeasurement,
    BoxSet,
    ClassLabel,
    area_measurement,
    distance_line,
    slice_uid,
)
from medviewer.core.annotations.sr import read_sr, sidecar_path_for, write_sr
from medviewer.core.annotations.workspace import Workspace
from medviewer.core.dicom import load_series, scan

MEAN, SD, MINIMUM, MAXIMUM = "373098007", "386136009", "255605001", "56851009"


@pytest.fixture(scope="module")
def volume(ct_series):
    return load_series(scan(ct_series.folder, cache=False).all_series()[0])


def _areas(volume) -> list[AreaMeasurement]:
    return [area_measurement(volume, 5, "rect", (20.5, 30.0), (10.0, 12.25), label="liver"),
            area_measurement(volume, 6, "ellipse", (12.0, 20.0), (40.0, 30.5))]


def _everything(volume, tmp_path, name="a.dcm"):
    """An SR with a box, a ruler, a series and a slice class, and both kinds of area ROI."""
    boxes = BoxSet([AnnotatedBox(3, 4, 9, 9, 2, "mass", sop_instance_uid=slice_uid(volume, 2))])
    boxes.set_class(ClassLabel("normal"))
    boxes.set_class(ClassLabel("pneumonia", scope=SLICE, slice_index=3,
                               sop_instance_uid=slice_uid(volume, 3)))
    lines = [distance_line(volume, 4, (10, 10), (20, 14.5))]
    areas = _areas(volume)
    path = write_sr(tmp_path / name, volume, boxes, lines, annotator="Jane Doe",
                    model="model:det@1", areas=areas)
    return path, boxes, lines, areas


def test_area_statistics_are_those_of_the_pixels_inside(volume):
    rect, ellipse = _areas(volume)
    inside = volume.voxels[5, 12:30, 10:20]  # pixel centres in [10, 20.5) x [12.25, 30)
    row_mm, col_mm = volume.spacing[1:]
    assert rect.corners == (10.0, 12.25, 20.5, 30.0)  # top-left, bottom-right
    assert rect.area == pytest.approx(inside.size * row_mm * col_mm)
    assert (rect.mean, rect.minimum, rect.maximum) == pytest.approx(
        (inside.mean(), inside.min(), inside.max()))
    assert rect.sd == pytest.approx(inside.std(ddof=1))
    assert (rect.units, rect.area_unit, rect.sop_instance_uid) == ("HU", "mm2",
                                                                  slice_uid(volume, 5))
    assert ellipse.kind == "ellipse" and ellipse.area < 28 * 10.5 * row_mm * col_mm


@pytest.mark.parametrize("change, match", [
    ({"kind": "polygon"}, "rect"), ({"p1": (10.0, 40.0)}, "corners"),
    ({"mean": float("nan")}, "numbers"), ({"area_unit": "cm2"}, "mm2"), ({"label": ""}, "label"),
])
def test_an_area_roi_checks_its_values(change, match):
    fields = {"slice_index": 0, "kind": "rect", "p0": (10.0, 2.0), "p1": (4.0, 8.0),
              "area": 36.0, **change}
    with pytest.raises(AnnotationError, match=match):
        AreaMeasurement(**fields)


def test_both_kinds_round_trip_through_the_sidecar_exactly(volume, tmp_path):
    path, boxes, lines, areas = _everything(volume, tmp_path)
    back = read_sr(path)
    assert back.areas == areas and back.lines == lines and back.boxes == list(boxes.boxes)
    record = json.loads(sidecar_path_for(path).read_text())
    assert [a["kind"] for a in record["areas"]] == ["rect", "ellipse"]


def test_the_sr_alone_gives_the_areas_back(volume, tmp_path):
    path, boxes, lines, areas = _everything(volume, tmp_path)
    sidecar_path_for(path).unlink()
    back = read_sr(path, volume)
    assert len(back.boxes) == 1 and len(back.lines) == 1 and len(back.class_labels) == 2
    assert back.areas == areas  # corners fit float32; values come back from the SR's FD
    assert [(a.kind, a.uid, a.units, a.label) for a in back.areas] == \
        [("rect", areas[0].uid, "HU", "liver"), ("ellipse", areas[1].uid, "HU", "area")]


def test_without_pixel_size_or_modality_units_the_units_say_so(volume, tmp_path):
    unknown = dataclasses.replace(volume, modality="OT", spacing_known=False)
    colour = AreaMeasurement(7, "ellipse", (1.0, 1.0), (5.0, 9.0), 12.0,
                             sop_instance_uid=slice_uid(volume, 7))  # no statistics
    areas = [area_measurement(unknown, 5, "rect", (2, 3), (12, 9)), colour]
    assert (areas[0].area_unit, areas[0].units, areas[0].area) == (PX2, "", 60.0)
    path = write_sr(tmp_path / "a.dcm", unknown, BoxSet(), annotator="J", areas=areas)
    sidecar_path_for(path).unlink()
    assert read_sr(path, unknown).areas == areas


def test_highdicom_finds_the_measurement_groups_with_their_values(volume, tmp_path):
    import highdicom as hd
    import pydicom

    path, _, _, areas = _everything(volume, tmp_path)
    sr = hd.sr.Comprehensive3DSR.from_dataset(pydicom.dcmread(path))
    groups = {str(g.tracking_uid): g for g in hd.sr.MeasurementReport.from_sequence([sr])
              .get_planar_roi_measurement_groups()}
    rect, ellipse = groups[areas[0].uid], groups[areas[1].uid]
    assert rect.roi.graphic_type == hd.sr.GraphicTypeValues.POLYLINE
    assert rect.roi.value.tolist() == [[10, 12.25], [20.5, 12.25], [20.5, 30], [10, 30],
                                       [10, 12.25]]
    assert ellipse.roi.graphic_type == hd.sr.GraphicTypeValues.ELLIPSE
    assert ellipse.roi.value.tolist() == [[12, 25.25], [40, 25.25], [26, 20], [26, 30.5]]
    assert ellipse.roi.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID \
        == slice_uid(volume, 6)
    (area,) = rect.get_measurements(name=hd.sr.CodedConcept("42798000", "SCT", "Area"))
    assert (area.value, area.unit.value) == (pytest.approx(areas[0].area), "mm2")
    stats = {m.derivation.value: m for m in rect.get_measurements() if m.derivation}
    assert {k: stats[k].value for k in (MEAN, SD, MINIMUM, MAXIMUM)} == pytest.approx(
        {MEAN: areas[0].mean, SD: areas[0].sd, MINIMUM: areas[0].minimum,
         MAXIMUM: areas[0].maximum})
    assert {(m.name.value, m.unit.value) for m in stats.values()} == \
        {("112031", "[hnsf'U]")}  # Attenuation Coefficient in HU


def test_an_ohif_style_sr_with_statistics_named_mean_is_read(volume, tmp_path):
    """dcmjs names a statistic by its own code (NUM "Mean") instead of a Derivation."""
    import pydicom

    path, *_ = _everything(volume, tmp_path)
    sidecar_path_for(path).unlink()
    ds = pydicom.dcmread(path)
    for item in _walk(ds):
        mods = [c for c in getattr(item, "ContentSequence", []) if c.ValueType == "CODE"
                and c.ConceptNameCodeSequence[0].CodeValue == "121401"]
        if item.get("ValueType") == "NUM" and mods:
            item.ConceptNameCodeSequence = mods[0].ConceptCodeSequence
            del item.ContentSequence
    ds.save_as(path)
    back = read_sr(path, volume).areas
    assert [v for a in back for v in (a.mean, a.maximum)] == pytest.approx(
        [v for a in _areas(volume) for v in (a.mean, a.maximum)])


def _walk(item):
    for child in getattr(item, "ContentSequence", []):
        yield child
        yield from _walk(child)


def test_an_older_sidecar_without_areas_still_opens(volume, tmp_path):
    path, boxes, *_ = _everything(volume, tmp_path)
    sidecar = sidecar_path_for(path)
    record = json.loads(sidecar.read_text())
    del record["areas"]
    sidecar.write_text(json.dumps(record))
    back = read_sr(path)
    assert back.areas == [] and back.boxes == list(boxes.boxes)


def test_areas_round_trip_through_the_autosave(ct_series_dir):
    volume = load_series(scan(ct_series_dir, cache=False).all_series()[0])
    areas = _areas(volume)
    path = save_autosave(Workspace.for_series(volume), None, None, areas=iter(areas))
    back = autosaved_areas(path)
    assert back == areas and isinstance(back[0].p0, tuple)
    older = save_autosave(Workspace.for_series(volume), None, None)
    assert autosaved_areas(older) == []


# --- the reference tools -----------------------------------------------------------------------

def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not on PATH (apt-get install dicom3tools dcmtk)")
    return found


def test_dciodvfy_finds_no_error(volume, tmp_path):
    path, *_ = _everything(volume, tmp_path)
    run = subprocess.run([_tool("dciodvfy"), str(path)], capture_output=True, text=True,
                         timeout=60)
    said = (run.stdout + run.stderr).splitlines()
    assert "Comprehensive3DSR" in said
    assert not [line for line in said if line.startswith("Error")], said
    # the one warning: our private coding scheme for free-text labels ('99' = local, legal)
    assert {line for line in said if line.startswith("Warning")} <= {
        "Warning - Unrecognized defined term <99MEDVIEWER> for value 1 of attribute "
        "<Coding Scheme Designator>"}


def test_dcmtk_reads_the_measurement_tree(volume, tmp_path):
    path, *_ = _everything(volume, tmp_path)
    run = subprocess.run([_tool("dsrdump"), str(path)], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    assert "(ELLIPSE," in run.stdout and '"Attenuation Coefficient"' in run.stdout
    assert run.stdout.count('(373098007,SCT,"Mean")') == 2
    dump = subprocess.run([_tool("dcmdump"), str(path)], capture_output=True, text=True,
                          timeout=60)
    assert dump.returncode == 0 and "E:" not in dump.stderr and "ELLIPSE" in dump.stdout


def test_a_damaged_area_in_the_sidecar_is_an_annotation_error(volume, tmp_path):
    path, *_ = _everything(volume, tmp_path)
    sidecar = sidecar_path_for(path)
    record = json.loads(sidecar.read_text())
    record["areas"][0]["kind"] = "triangle"
    sidecar.write_text(json.dumps(record))
    with pytest.raises(AnnotationError, match="damaged"):
        read_sr(path)
