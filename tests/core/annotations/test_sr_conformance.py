"""The SR this viewer writes, on every kind of source a scanner or PACS gives: single-frame CT
and MR, Enhanced CT and MR (one multi-frame file, frames stored out of spatial order), legacy
multi-frame Secondary Capture and MR, DX, a CR whose PixelSpacing is 0\\0 and one with no
spacing at all, and pydicom's bundled CT_small / MR_small.

Each is annotated on a slice that is not the first (a box, a ruler, a rectangle and an
ellipse ROI, a slice class, a series class), saved the way Ctrl+S saves it (the workspace),
then checked with the reference tools: dciodvfy finds nothing the source does not already
carry, highdicom reads every reference back with the right image AND frame, the procedure
and the label codes are standard ones, and the SR alone (no JSON sidecar) puts everything back
on the slice it was drawn on, in the unit the viewer showed.
"""

from __future__ import annotations

import functools
import math
import shutil
from types import SimpleNamespace

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.multival import MultiValue
from pydicom.sr.codedict import codes
from pydicom.uid import ComputedRadiographyImageStorage

from medviewer.core import synthetic
from medviewer.core.annotations.boxes import (
    ELLIPSE,
    MM,
    PX,
    RECT,
    SLICE,
    AnnotatedBox,
    BoxSet,
    ClassLabel,
    area_measurement,
    distance_line,
    slice_uid,
)
from medviewer.core.annotations.sr import (
    SINGLE_FRAME_CLASSES,
    read_sr,
    sidecar_path_for,
    write_sr,
)
from medviewer.core.annotations.sr_codes import PRIVATE_SCHEME
from medviewer.core.annotations.workspace import Workspace
from medviewer.core.dicom import load_series, scan
from tests.core.annotations.reference_tools import dciodvfy

# --- the sources ---------------------------------------------------------------------------------

def _ct(folder):
    voxels, _ = synthetic.ct_chest_phantom((5, 32, 32), (5.0, 5.0, 5.0))
    synthetic.write_series(folder, voxels, spacing=(5.0, 5.0, 5.0), shuffle_names=True)


def _mr(folder):
    synthetic.write_mr_series(folder, shape=(4, 32, 32), spacing=(5.0, 4.0, 4.0))


def _enhanced(modality):
    def write(folder):
        voxels = np.random.default_rng(3).integers(0, 1000, (5, 32, 32)).astype(np.int16)
        options = {"rescale": None} if modality == "MR" else {}
        synthetic.write_multiframe(folder, voxels, spacing=(5.0, 4.0, 4.0), modality=modality,
                                   shuffle_frames=True, seed=7, **options)
    return write


def _legacy_multiframe(folder):
    voxels = np.random.default_rng(4).integers(0, 1000, (5, 32, 32)).astype(np.uint16)
    synthetic.write_multiframe(folder, voxels, spacing=(5.0, 4.0, 4.0), modality="OT",
                               rescale=None, enhanced=False)


def _legacy_mr(folder):
    """An MR Image with NumberOfFrames and no functional groups, as pydicom's emri_small.dcm
    (not bundled): the frames of a single-frame MR series in one file."""
    paths = synthetic.write_mr_series(folder / "frames", shape=(4, 32, 32),
                                      spacing=(5.0, 4.0, 4.0), seed=6)
    ds = pydicom.dcmread(paths[0])
    ds.NumberOfFrames = len(paths)
    ds.PixelData = np.stack([pydicom.dcmread(p).pixel_array for p in paths]).tobytes()
    shutil.rmtree(folder / "frames")
    ds.save_as(folder / "emri.dcm")


def _dx(folder):
    synthetic.write_chest_xray(folder, size=64)


def _cr(spacing):
    """A CR made from the DX phantom: PixelSpacing 0\\0 as some digitisers write, or none."""
    def write(folder):
        path, _ = synthetic.write_chest_xray(folder, size=64, seed=5)
        ds = pydicom.dcmread(path)
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = ComputedRadiographyImageStorage
        ds.Modality = "CR"
        del ds.ImagerPixelSpacing
        if spacing is None:
            del ds.PixelSpacing
        else:
            ds.PixelSpacing = spacing
        ds.save_as(path)
    return write


def _bundled(name):
    def write(folder):
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(get_testdata_file(name), folder / name)
    return write


SOURCES = {"CT": _ct, "MR": _mr, "Enhanced CT": _enhanced("CT"), "Enhanced MR": _enhanced("MR"),
           "legacy multi-frame": _legacy_multiframe, "legacy multi-frame MR": _legacy_mr,
           "DX": _dx, "CR 0\\0": _cr([0, 0]),
           "CR no spacing": _cr(None), "CT_small": _bundled("CT_small.dcm"),
           "MR_small": _bundled("MR_small.dcm")}
PROCEDURE = {"CT": "25045-6", "MR": "25056-3", "DX": "43468-8", "CR": "43468-8",
             "OT": "363679005"}  # CID 100: LOINC "<modality> unspecified body region"


@pytest.fixture(scope="module", params=list(SOURCES))
def saved(request, tmp_path_factory):
    """A source, annotated on its last slice (and a box on its first), saved as Ctrl+S does."""
    folder = tmp_path_factory.mktemp("source")
    SOURCES[request.param](folder)
    volume = load_series(scan(folder, cache=False).all_series()[0])
    k = volume.slice_count - 1
    uid = slice_uid(volume, k)
    boxes = BoxSet([AnnotatedBox(2, 3, 10, 12, k, "nodule", sop_instance_uid=uid),
                    AnnotatedBox(4, 4, 9, 9, 0, "mass", sop_instance_uid=slice_uid(volume, 0))])
    boxes.set_class(ClassLabel("cardiomegaly", scope=SLICE, slice_index=k,
                               sop_instance_uid=uid))
    boxes.set_class(ClassLabel("normal"))
    lines = [distance_line(volume, k, (1.0, 1.0), (20.0, 13.0))]
    areas = [area_measurement(volume, k, RECT, (2, 2), (12, 14)),
             area_measurement(volume, k, ELLIPSE, (3, 2), (17, 10), label="nodule")]
    path = Workspace.for_series(volume).save_sr(volume, boxes, lines, annotator="Jane Doe",
                                                areas=areas)
    return SimpleNamespace(name=request.param, folder=folder, volume=volume, k=k, path=path,
                           boxes=boxes, lines=lines, areas=areas)


def _image_ref(volume, k):
    """(SOP Instance UID, frame number or None) that names slice k's image: no frame number
    for a storage class without frames (an MR Image holding several, against its IOD)."""
    source = volume.sources[k]
    multi = sum(s.path == source.path for s in volume.sources) > 1
    framed = multi and pydicom.dcmread(source.path, stop_before_pixels=True).SOPClassUID \
        not in SINGLE_FRAME_CLASSES
    return source.sop_instance_uid, (source.frame + 1 if framed else None)


def _placed(volume, k):
    """The slice the SR alone puts slice k's findings on: its own, or for a frame of a file
    whose class has no frames, the slice of that file's first frame."""
    uid, frame = _image_ref(volume, k)
    if frame is not None or sum(s.sop_instance_uid == uid for s in volume.sources) == 1:
        return k
    return next(j for j, s in enumerate(volume.sources) if s.sop_instance_uid == uid
                and s.frame == 0)


def _frames(item):
    value = item.get("ReferencedFrameNumber")
    if value is None:
        return None
    return [int(v) for v in value] if isinstance(value, MultiValue) else [int(value)]


# --- the reference tools ---------------------------------------------------------------------

def test_dciodvfy_finds_nothing_the_source_does_not_carry(saved):
    """The SR copies the patient and study attributes of its source (CT_small's zero Patient's
    Weight, MR_small's retired PN form): those are the source's findings, nothing else is,
    also on an MR Image holding several frames against its IOD (no frame number for it)."""
    said = dciodvfy(saved.path)
    source = set()
    for path in sorted({s.path for s in saved.volume.sources}):
        source |= set(dciodvfy(path))
    assert [line for line in said if line not in source] == []
    assert not [line for line in said if PRIVATE_SCHEME in line]


def test_highdicom_reads_every_reference_with_its_image_and_frame(saved):
    import highdicom as hd

    sr = hd.sr.srread(saved.path)
    report = hd.sr.MeasurementReport.from_sequence([sr])
    last, first = _image_ref(saved.volume, saved.k), _image_ref(saved.volume, 0)
    rois = report.get_planar_roi_measurement_groups()
    assert len(rois) == 5  # 2 boxes, 1 ruler, 2 ROIs
    placed = []
    for group in rois:
        ref = group.roi.ContentSequence[0].ReferencedSOPSequence[0]
        placed.append((str(ref.ReferencedSOPInstanceUID),
                       None if _frames(ref) is None else _frames(ref)[0]))
    assert sorted(placed, key=str) == sorted([last] * 4 + [first], key=str)
    image_groups = report.get_image_measurement_groups()
    (slice_class,) = [g for g in image_groups if g.source_images]
    source = slice_class.source_images[0]
    assert source.referenced_sop_instance_uid == last[0]
    assert (source.referenced_frame_numbers or [None])[0] == last[1]
    evidence = {uid for _study, _series, uid, _class in sr.get_evidence()}
    assert evidence == {last[0], first[0]}


def test_the_procedure_follows_the_modality_and_labels_have_standard_codes(saved):
    import highdicom as hd

    sr = hd.sr.srread(saved.path)
    procedure = next(item for item in sr.ContentSequence
                     if item.ConceptNameCodeSequence[0].CodeValue == "121058")
    assert procedure.ConceptCodeSequence[0].CodeValue == PROCEDURE[saved.volume.modality]
    report = hd.sr.MeasurementReport.from_sequence([sr])
    findings = {g.finding_type for g in report.get_planar_roi_measurement_groups()
                if g.finding_type is not None}
    assert findings == {codes.SCT.Nodule, codes.SCT.Mass}
    classes = {q.value for g in report.get_image_measurement_groups()
               for q in g.get_qualitative_evaluations()}
    assert classes == {codes.SCT.Cardiomegaly, codes.SCT.Normal}
    assert "CodingSchemeIdentificationSequence" not in sr  # no private code used


def test_the_sr_alone_puts_everything_back_on_its_slice_in_its_unit(saved, tmp_path):
    copy = tmp_path / "annotations.dcm"
    shutil.copy(saved.path, copy)  # without its JSON sidecar
    assert not sidecar_path_for(copy).exists()
    boxes, classes, lines, areas = read_sr(copy, saved.volume)
    at = functools.partial(_placed, saved.volume)  # k itself, but on a frameless class
    assert sorted((b.label, b.slice_index, b.uid) for b in boxes) == \
        sorted((b.label, at(b.slice_index), b.uid) for b in saved.boxes)
    assert {(c.label, c.scope, c.slice_index) for c in classes} == \
        {("cardiomegaly", SLICE, at(saved.k)), ("normal", "series", None)}
    (line,) = lines
    written = saved.lines[0]
    assert (line.slice_index, line.label, line.unit) == (at(saved.k), "distance", written.unit)
    assert line.length_mm == pytest.approx(written.length_mm, rel=1e-5)
    assert sorted((a.kind, a.label, a.slice_index, a.area_unit) for a in areas) == \
        sorted((a.kind, a.label, at(a.slice_index), a.area_unit) for a in saved.areas)
    with_sidecar = read_sr(saved.path, saved.volume)  # as the viewer reopens it: all in place
    assert sorted((b.label, b.slice_index) for b in with_sidecar[0]) == \
        sorted((b.label, b.slice_index) for b in saved.boxes)


def test_a_length_without_pixel_spacing_is_in_pixels(saved):
    """The CRs have no usable pixel size: the ruler says px on screen, so the SR says
    {pixels}, with the length in pixels (19 x 12 px here), never '0.0 mm'."""
    import highdicom as hd

    spacing_known = saved.volume.spacing_known
    assert saved.lines[0].unit == (MM if spacing_known else PX)
    report = hd.sr.MeasurementReport.from_sequence([hd.sr.srread(saved.path)])
    units = {m.name.value: (m.unit.value, m.value) for g in
             report.get_planar_roi_measurement_groups() for m in g.get_measurements()}
    unit, value = units["410668003"]  # SCT Length
    if spacing_known:
        assert unit == "mm"
    else:
        assert (unit, float(value)) == ("{pixels}", pytest.approx(math.hypot(19, 12)))
        assert units["42798000"][0] == "{square pixels}"  # SCT Area


def test_a_label_without_a_standard_code_is_declared_as_private(ct_series, tmp_path):
    volume = load_series(scan(ct_series.folder, cache=False).all_series()[0])
    boxes = BoxSet([AnnotatedBox(2, 3, 10, 12, 1, "no nodule >= 10 mm",
                                 sop_instance_uid=slice_uid(volume, 1))])
    path = write_sr(tmp_path / "a.dcm", volume, boxes, annotator="J")
    sr = pydicom.dcmread(path)
    (scheme,) = sr.CodingSchemeIdentificationSequence
    assert scheme.CodingSchemeDesignator == PRIVATE_SCHEME and scheme.CodingSchemeName
    sidecar_path_for(path).unlink()
    assert read_sr(path, volume)[0][0].label == "no nodule >= 10 mm"


def test_the_procedure_is_the_sources_own_code_when_it_has_one(tmp_path):
    """A PACS's image names its exam (RadLex 'CT CHEST'): the SR reports that procedure,
    body part included, rather than 'CT unspecified body region'; dciodvfy accepts it."""
    from pydicom.dataset import Dataset

    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = \
        "RPID16", "RADLEX", "CT CHEST"
    voxels, _ = synthetic.ct_chest_phantom((3, 32, 32), (5.0, 5.0, 5.0))
    synthetic.write_series(tmp_path / "ct", voxels, spacing=(5.0, 5.0, 5.0),
                           ProcedureCodeSequence=[code])
    volume = load_series(scan(tmp_path / "ct", cache=False).all_series()[0])
    path = write_sr(tmp_path / "a.dcm", volume, BoxSet(), annotator="J")
    sr = pydicom.dcmread(path)
    (procedure,) = [item for item in sr.ContentSequence
                    if item.ConceptNameCodeSequence[0].CodeValue == "121058"]
    reported = procedure.ConceptCodeSequence[0]
    assert (reported.CodingSchemeDesignator, reported.CodeValue, reported.CodeMeaning) == \
        ("RADLEX", "RPID16", "CT CHEST")
    if shutil.which("dciodvfy"):
        assert not [line for line in dciodvfy(path) if line.startswith("Error")]


def test_a_reference_to_a_whole_multiframe_file_lands_on_its_first_frame(tmp_path):
    """An SR made elsewhere may name the multi-frame image without a frame: its finding goes
    on the slice of frame 1 (here not the first slice: the frames are stored shuffled)."""
    _enhanced("CT")(tmp_path / "ect")
    volume = load_series(scan(tmp_path / "ect", cache=False).all_series()[0])
    first_frame = next(k for k, s in enumerate(volume.sources) if s.frame == 0)
    k = (first_frame + 2) % volume.slice_count
    boxes = BoxSet([AnnotatedBox(2, 3, 10, 12, k, "nodule")])
    path = write_sr(tmp_path / "a.dcm", volume, boxes, annotator="J")
    sidecar_path_for(path).unlink()
    assert read_sr(path, volume)[0][0].slice_index == k  # with its frame number
    ds = pydicom.dcmread(path)

    def strip(item):
        item.pop("ReferencedFrameNumber", None)
        for element in item:
            for child in element.value if element.VR == "SQ" else []:
                strip(child)
    strip(ds)
    ds.save_as(path)
    assert "ReferencedFrameNumber" not in str(pydicom.dcmread(path))
    assert read_sr(path, volume)[0][0].slice_index == first_frame


def test_a_label_has_the_same_code_in_the_sr_as_in_the_seg(ct_series, tmp_path):
    """'nodule' and 'lung' are SNOMED's Nodule and Lung in the SEG's segments and in the SR's
    findings alike (the SR used to code them privately)."""
    import highdicom as hd

    from medviewer.core.annotations.seg import write_seg

    volume = load_series(scan(ct_series.folder, cache=False).all_series()[0])
    names = ["background", "nodule", "lung"]
    labels = np.zeros(volume.voxels.shape, np.uint8)
    labels[4, 10:20, 10:20], labels[4, 30:40, 30:40] = 1, 2
    seg = pydicom.dcmread(write_seg(labels, volume, names, tmp_path / "seg.dcm"))
    in_seg = {item.SegmentLabel: item.SegmentedPropertyTypeCodeSequence[0]
              for item in seg.SegmentSequence}
    boxes = BoxSet([AnnotatedBox(2, 3, 10, 12, 4, "nodule", sop_instance_uid=slice_uid(volume, 4)),
                    AnnotatedBox(20, 3, 30, 12, 4, "lung", sop_instance_uid=slice_uid(volume, 4))])
    sr = pydicom.dcmread(write_sr(tmp_path / "sr.dcm", volume, boxes, annotator="J"))
    report = hd.sr.MeasurementReport.from_sequence([hd.sr.Comprehensive3DSR.from_dataset(sr)])
    in_sr = {g.tracking_identifier.removeprefix("box "): g.finding_type
             for g in report.get_planar_roi_measurement_groups()}
    for name in ("nodule", "lung"):
        code = in_seg[name]
        assert (in_sr[name].value, in_sr[name].scheme_designator) == \
            (code.CodeValue, code.CodingSchemeDesignator)
