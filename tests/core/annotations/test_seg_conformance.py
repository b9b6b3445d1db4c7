"""Every SEG the project writes, on every kind of source a scanner or PACS sends, is valid DICOM
(dciodvfy), reads back with highdicom on the right source frames, and comes back through our
own reader: CT, MR, Enhanced CT, multi-frame MR, DX, CR (with and without a usable spacing),
a CT series with gaps, and pydicom's own CT and MR files.

The SEG is written the way Ctrl+S writes it (`Workspace.save_labels` with the label table), from
a label map with a drawn label, a model's label and an empty label between them (left out, so
the model's label becomes segment 2).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medviewer.core import synthetic as syn
from medviewer.core.annotations import LabelTable, read_seg_table
from medviewer.core.annotations.workspace import Workspace
from medviewer.core.dicom import load_series, scan

DCIODVFY = shutil.which("dciodvfy")
MODEL = ("lab-test-seg", "2.1.0")


def _ct(folder: Path) -> None:
    voxels, _ = syn.ct_chest_phantom((6, 32, 32), (2.5, 1.0, 1.0))
    syn.write_series(folder, voxels, spacing=(2.5, 1.0, 1.0), shuffle_names=True)


def _mr(folder: Path) -> None:
    syn.write_mr_series(folder, shape=(5, 32, 32), spacing=(4.0, 2.0, 2.0))


def _enhanced_ct(folder: Path) -> None:
    voxels, _ = syn.ct_chest_phantom((6, 32, 32), (2.5, 1.0, 1.0))
    syn.write_multiframe(folder, voxels, spacing=(2.5, 1.0, 1.0))


def _multiframe_mr(folder: Path) -> None:
    geometry = syn.Geometry((5, 32, 32), (3.0, 2.0, 2.0), syn.AXIAL)
    syn.write_multiframe(folder, syn.mr_head_phantom(geometry), spacing=(3.0, 2.0, 2.0),
                         modality="MR", rescale=None, shuffle_frames=True)


def _dx(folder: Path) -> None:
    syn.write_chest_xray(folder, size=64)


def _cr(folder: Path, spacing: str = "kept") -> None:
    """A CR as CR readers write it (no frame of reference), from the DX phantom; spacing
    'zero' writes PixelSpacing 0\\0, 'none' leaves the spacing out."""
    path, _ = syn.write_chest_xray(folder, size=64, filename="CR00001.dcm")
    ds = pydicom.dcmread(path)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = \
        pydicom.uid.ComputedRadiographyImageStorage
    ds.Modality = "CR"
    for keyword in ("PresentationIntentType", "DetectorType", "FrameOfReferenceUID"):
        delattr(ds, keyword)
    if spacing == "zero":
        ds.PixelSpacing = ds.ImagerPixelSpacing = [0, 0]
    elif spacing == "none":
        del ds.PixelSpacing, ds.ImagerPixelSpacing
    ds.save_as(path, enforce_file_format=True)


def _gaps(folder: Path) -> None:
    """Nine 2.5 mm positions with four left out (steps 2.5, 5, 5 and 7.5 mm), each file
    still saying SpacingBetweenSlices 2.5, as the scanner planned them."""
    voxels, _ = syn.ct_chest_phantom((9, 32, 32), (2.5, 1.0, 1.0))
    syn.write_series(folder, voxels, spacing=(2.5, 1.0, 1.0), skip_slices=(2, 4, 6, 7))


def _bundled(name: str):
    def write(folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(Path(pydicom.__file__).parent / "data" / "test_files" / name, folder / name)
    return write


SOURCES = {
    "CT": _ct, "MR": _mr, "Enhanced CT": _enhanced_ct, "multi-frame MR": _multiframe_mr,
    "DX": _dx, "CR": _cr, "CR spacing 0\\0": lambda f: _cr(f, "zero"),
    "CR without spacing": lambda f: _cr(f, "none"), "CT with gaps": _gaps,
    "pydicom CT_small": _bundled("CT_small.dcm"), "pydicom MR_small": _bundled("MR_small.dcm"),
}


@pytest.fixture(scope="module", params=list(SOURCES))
def saved(request, tmp_path_factory):
    """(volume, label map, SEG path) of one source kind, saved as Ctrl+S saves it."""
    folder = tmp_path_factory.mktemp("seg-source")
    SOURCES[request.param](folder)
    volume = load_series(scan(folder, cache=False).all_series()[0])
    table = LabelTable()
    table.add("lung")
    table.add("empty")  # no voxels: left out of the SEG
    table.add("nodule", algorithm_type="AUTOMATIC", algorithm=MODEL)
    grid = volume.voxels.shape[-3:] if volume.voxels.ndim >= 3 else (1, *volume.voxels.shape)
    labels = np.zeros(grid, np.uint8)
    labels[:, 4:12, 5:20] = 1
    labels[-1, 20:26, 18:24] = 3
    path, notes = Workspace.for_series(volume).save_labels(labels, volume, table,
                                                           annotator="Doe^Jane")
    assert notes == ["'empty' not saved: no voxels"]
    return request.param, volume, labels, path


# dciodvfy warnings about attributes the SEG copies, as it must, from the source's patient and
# study: pydicom's CT_small has PatientWeight 0, MR_small a retired PN form of the reading
# physician. Nothing else may be warned about.
SOURCE_WARNINGS = {"pydicom CT_small": "<Patient's Weight>",
                   "pydicom MR_small": "Name of Physician(s) Reading Study"}


def _dciodvfy(path: Path) -> list[str]:
    if DCIODVFY is None:
        pytest.skip("dciodvfy (dicom3tools) is not installed")
    report = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, timeout=60)
    return (report.stdout + report.stderr).splitlines()


def test_dciodvfy_finds_no_error_in_the_seg(saved):
    kind, _, _, path = saved
    errors = [line for line in _dciodvfy(path) if line.startswith("Error")]
    assert errors == [], kind


def test_dciodvfy_warns_only_about_what_the_source_itself_holds(saved):
    kind, _, _, path = saved
    warnings = [line for line in _dciodvfy(path) if line.startswith("Warning")
                and not (kind in SOURCE_WARNINGS and SOURCE_WARNINGS[kind] in line)]
    assert warnings == [], kind


def test_highdicom_reads_the_frames_on_the_source_frames_they_reference(saved):
    import highdicom as hd

    kind, volume, labels, path = saved
    seg = hd.seg.segread(path)
    segments = {int(s.SegmentNumber): str(s.SegmentLabel) for s in seg.SegmentSequence}
    assert segments == {1: "lung", 2: "nodule"}, kind  # numbered 1, 2: 'empty' left out
    value_of = {1: 1, 2: 3}
    slice_of = {(s.sop_instance_uid, s.frame + 1): k for k, s in enumerate(volume.sources)}
    frames = seg.pixel_array.reshape(-1, *labels.shape[1:])
    placed = set()
    for i, item in enumerate(seg.PerFrameFunctionalGroupsSequence):
        number = int((item.get("SegmentIdentificationSequence") or
                      seg.SharedFunctionalGroupsSequence[0].SegmentIdentificationSequence)[0]
                     .ReferencedSegmentNumber)
        source = item.DerivationImageSequence[0].SourceImageSequence[0]
        frame = int(source.get("ReferencedFrameNumber", 1))
        k = slice_of[(str(source.ReferencedSOPInstanceUID), frame)]
        np.testing.assert_array_equal(frames[i] > 0, labels[k] == value_of[number])
        placed.add((k, number))
    expected = {(k, n) for k in range(labels.shape[0]) for n, v in value_of.items()
                if (labels[k] == v).any()}
    assert placed == expected, kind  # every labelled slice has its frame, no empty one


def test_our_reader_gives_back_the_map_the_names_and_how_each_was_made(saved):
    kind, volume, labels, path = saved
    back, table = read_seg_table(path, volume)
    np.testing.assert_array_equal(back, np.where(labels == 3, 2, labels), err_msg=kind)
    assert [(lab.value, lab.name, lab.algorithm_type, lab.algorithm) for lab in table] == [
        (1, "lung", "MANUAL", None), (2, "nodule", "AUTOMATIC", MODEL)]


def test_geometry_is_what_the_source_planes_are(saved):
    kind, volume, _, path = saved
    seg = pydicom.dcmread(path)
    shared = seg.SharedFunctionalGroupsSequence[0]
    measures = shared.get("PixelMeasuresSequence")
    if not volume.has_geometry:  # projection: frames lie on the referenced image
        assert "PlaneOrientationSequence" not in shared
        first = pydicom.dcmread(volume.sources[0].path, stop_before_pixels=True)
        assert list(seg.PatientOrientation or []) == list(first.get("PatientOrientation")
                                                           or [])
        assert measures is None or "SliceThickness" in measures[0]
        return
    assert float(measures[0].SliceThickness) > 0
    spacing = measures[0].get("SpacingBetweenSlices")
    positions = np.array([volume.affine @ [0, 0, k, 1] for k in range(len(volume.sources))])
    if kind == "CT with gaps" or len(volume.sources) == 1:
        assert spacing is None, kind  # uneven steps, or one plane: no spacing to claim
    else:
        step = float(np.linalg.norm(positions[1] - positions[0]))
        assert spacing is not None and float(spacing) == pytest.approx(step, rel=1e-3), kind


def _ct_with(folder: Path, **change) -> object:
    """The small CT with header values changed in every file (None deletes), loaded."""
    _ct(folder)
    for path in folder.glob("*.dcm"):
        ds = pydicom.dcmread(path)
        for keyword, value in change.items():
            if value is None:
                delattr(ds, keyword)
            else:
                setattr(ds, keyword, value)
        ds.save_as(path)
    return load_series(scan(folder, cache=False).all_series()[0])


def _lesion(volume) -> tuple[np.ndarray, LabelTable]:
    table = LabelTable()
    table.add("lesion")
    labels = np.zeros(volume.voxels.shape, np.uint8)
    labels[2, 5:12, 5:12] = 1
    return labels, table


def test_an_empty_slice_thickness_gets_the_slice_step(tmp_path):
    volume = _ct_with(tmp_path / "ct", SliceThickness="")  # Type 2: present, empty
    labels, table = _lesion(volume)
    path, _ = Workspace.for_series(volume).save_labels(labels, volume, table)
    measures = pydicom.dcmread(path).SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    assert float(measures.SliceThickness) == pytest.approx(2.5)
    np.testing.assert_array_equal(read_seg_table(path, volume)[0], labels)


@pytest.mark.parametrize("spacing", [[0, 0], None])
def test_a_cross_sectional_series_without_a_pixel_size_is_refused_with_the_reason(
        tmp_path, spacing):
    from medviewer.core.annotations import AnnotationError

    volume = _ct_with(tmp_path / "ct", PixelSpacing=spacing)
    labels, table = _lesion(volume)
    workspace = Workspace.for_series(volume)
    with pytest.raises(AnnotationError, match="PixelSpacing") as refused:
        workspace.save_labels(labels, volume, table)
    assert "0.0\\0.0" in refused.value.reason if spacing else "no PixelSpacing" in \
        refused.value.reason
    assert not workspace.seg_path.exists()
