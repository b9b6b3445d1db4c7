"""DICOM SEG writer/reader: label map -> SEG -> label map on the small synthetic chest CT."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from medviewer.core.annotations import AnnotationError, read_seg, write_seg
from medviewer.core.dicom import load_series, scan

LABELS = ["background", "lung", "nodule", "spine", "body"]  # the last one stays empty
COLOURS = ["#000000", "#2080ff", "#ff2020", "#ffffff", "#ffa000"]


@pytest.fixture(scope="module")
def volume(ct_series):
    series = scan(ct_series.folder, cache=False).all_series()
    assert len(series) == 1
    return load_series(series[0])


def _label_map(volume) -> np.ndarray:
    """Lung by HU, a block 'nodule' on a few slices, 'spine' by HU: 3 labels, some slices empty."""
    hu = volume.voxels
    out = np.zeros(hu.shape, np.uint8)
    out[(hu < -500) & (hu > -950)] = 1
    out[hu > 300] = 3
    out[8:11, 20:26, 14:20] = 2
    out[:2] = 0  # empty slices: highdicom leaves their frames out
    return out


def test_round_trip_is_identical_and_an_empty_label_is_left_out(volume, tmp_path):
    labels = _label_map(volume)
    assert set(np.unique(labels)) == {0, 1, 2, 3}
    path = write_seg(labels, volume, LABELS, tmp_path / "out" / "seg.dcm", colours=COLOURS,
                     algorithm=("test-model", "1.2.0"), series_description="AI lungs")
    back, names = read_seg(path, volume)
    assert back.dtype == np.uint8 and back.shape == labels.shape
    np.testing.assert_array_equal(back, labels)
    assert names == LABELS[:-1]  # 'body' has no voxels: no segment without frames
    assert [p.name for p in path.parent.iterdir()] == ["seg.dcm"]  # no temporary file left


def test_a_single_segment_round_trips(volume, tmp_path):
    """One segment: highdicom moves the segment number into the shared functional groups."""
    labels = (_label_map(volume) == 1).astype(np.uint8)
    back, names = read_seg(write_seg(labels, volume, LABELS[:2], tmp_path / "s.dcm"), volume)
    np.testing.assert_array_equal(back, labels)
    assert names == LABELS[:2]


def test_highdicom_reads_it_and_it_references_the_source_series(volume, tmp_path):
    import highdicom as hd

    labels = _label_map(volume)
    path = write_seg(labels, volume, LABELS, tmp_path / "seg.dcm", colours=COLOURS,
                     algorithm=("test-model", "1.2.0"))
    seg = hd.seg.segread(path)
    assert seg.SegmentationType == "BINARY" and seg.Modality == "SEG"
    assert [int(s.SegmentNumber) for s in seg.SegmentSequence] == [1, 2, 3]  # not 'body'
    ref = seg.ReferencedSeriesSequence[0]
    assert ref.SeriesInstanceUID == volume.series.series_instance_uid
    uids = [s.sop_instance_uid for s in volume.sources]
    assert {r.ReferencedSOPInstanceUID for r in ref.ReferencedInstanceSequence} == set(uids)
    # sparse: frames only where a segment is present (slices 0-1 and the empty label have none)
    present = sum(int((labels == v).any(axis=(1, 2)).sum()) for v in range(1, 4))
    assert seg.NumberOfFrames == present
    # highdicom's own reader agrees with ours
    peer = seg.get_pixels_by_source_instance(uids, combine_segments=True)
    np.testing.assert_array_equal(peer, labels)


def test_segments_carry_algorithm_and_snomed_codes(volume, tmp_path):
    path = write_seg(_label_map(volume), volume, LABELS, tmp_path / "seg.dcm",
                     algorithm=("lab4-unet", "2.0.1"))
    segments = pydicom.dcmread(path).SegmentSequence
    by_label = {s.SegmentLabel: s for s in segments}
    assert all(s.SegmentAlgorithmType == "AUTOMATIC" for s in segments)
    algo = segments[0].SegmentationAlgorithmIdentificationSequence[0]
    assert (algo.AlgorithmName, algo.AlgorithmVersion) == ("lab4-unet", "2.0.1")
    kind = {k: s.SegmentedPropertyTypeCodeSequence[0].CodeMeaning for k, s in by_label.items()}
    assert kind["lung"] == "Lung" and kind["nodule"] == "Nodule"
    assert "body" not in kind  # no voxels: left out
    other = write_seg((_label_map(volume) > 0).astype(np.uint8), volume, ["background", "body"],
                      tmp_path / "body.dcm")
    body = pydicom.dcmread(other).SegmentSequence[0]
    assert body.SegmentedPropertyTypeCodeSequence[0].CodeMeaning == "Tissue"  # no SNOMED name
    category = by_label["nodule"].SegmentedPropertyCategoryCodeSequence[0].CodeMeaning
    assert category == "Morphologically Abnormal Structure"


def test_only_the_segmented_slices_are_referenced(volume, tmp_path):
    labels = _label_map(volume)
    chosen = [8, 9, 10, 11]
    path = write_seg(labels, volume, LABELS, tmp_path / "seg.dcm", slices=chosen)
    ds = pydicom.dcmread(path)
    referenced = {r.ReferencedSOPInstanceUID
                  for r in ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced == {volume.sources[k].sop_instance_uid for k in chosen}
    back, _ = read_seg(path, volume)
    expected = np.zeros_like(labels)
    expected[chosen] = labels[chosen]
    np.testing.assert_array_equal(back, expected)


def test_frames_without_references_are_placed_by_position(volume, tmp_path):
    """A SEG made elsewhere may not name its source images: ImagePositionPatient places it."""
    labels = _label_map(volume)
    path = write_seg(labels, volume, LABELS, tmp_path / "seg.dcm")
    ds = pydicom.dcmread(path)
    for item in ds.PerFrameFunctionalGroupsSequence:
        del item.DerivationImageSequence
    ds.save_as(path)
    back, _ = read_seg(path, volume)
    np.testing.assert_array_equal(back, labels)


def test_a_seg_of_another_series_is_refused(volume, tmp_path):
    path = write_seg(_label_map(volume), volume, LABELS, tmp_path / "seg.dcm")
    shifted = load_series(volume.sources[0].path)  # one slice: frames elsewhere match nothing
    shifted.sources[0].sop_instance_uid = "1.2.3"
    shifted.affine = shifted.affine.copy()
    shifted.affine[2, 3] += 1000.0
    with pytest.raises(AnnotationError, match="another series"):
        read_seg(path, shifted)


def test_a_seg_of_another_series_at_the_same_positions_is_refused(volume, tmp_path):
    """Frames that name other images are not placed by position: a second acquisition at
    the same table positions is still another series."""
    import copy

    path = write_seg(_label_map(volume), volume, LABELS, tmp_path / "seg.dcm")
    twin = copy.copy(volume)  # same grid and positions, other instances
    twin.sources = [copy.copy(s) for s in volume.sources]
    for k, source in enumerate(twin.sources):
        source.sop_instance_uid = f"1.2.3.{k}"
    with pytest.raises(AnnotationError, match="another series"):
        read_seg(path, twin)


def test_bad_label_maps_are_refused_with_a_reason(volume, tmp_path):
    labels = _label_map(volume)
    with pytest.raises(AnnotationError, match="made on another series"):
        write_seg(labels[:, :10], volume, LABELS, tmp_path / "a.dcm")
    with pytest.raises(AnnotationError, match="only 3 labels"):
        write_seg(labels, volume, LABELS[:3], tmp_path / "b.dcm")
    assert not list(tmp_path.iterdir())


def test_a_corrected_segmentation_names_its_annotator(tmp_path, volume):
    import highdicom as hd

    labels = np.zeros(volume.voxels.shape, np.uint8)
    labels[2, 10:20, 10:20] = 1
    path = write_seg(labels, volume, ["background", "lesion"], tmp_path / "s.dcm",
                     algorithm=("lab4-chest-unet", "1.0.0"), annotator="Doe^Jane")
    seg = hd.seg.segread(path)
    assert str(seg.ContentCreatorName) == "Doe^Jane"
    # who saved it is not how it was made: a model's labels without an edit stay AUTOMATIC
    assert seg.SegmentSequence[0].SegmentAlgorithmType == "AUTOMATIC"
    corrected = hd.seg.segread(write_seg(
        labels, volume, ["background", "lesion"], tmp_path / "c.dcm", annotator="Doe^Jane",
        origins={1: ("SEMIAUTOMATIC", ("lab4-chest-unet", "1.0.0"))}))
    assert corrected.SegmentSequence[0].SegmentAlgorithmType == "SEMIAUTOMATIC"
    manual = hd.seg.segread(write_seg(labels, volume, ["background", "lesion"],
                                      tmp_path / "a.dcm"))
    assert manual.SegmentSequence[0].SegmentAlgorithmType == "MANUAL"
    assert "SegmentationAlgorithmIdentificationSequence" not in manual.SegmentSequence[0]
    login = hd.seg.segread(write_seg(labels, volume, ["background", "lesion"],
                                     tmp_path / "l.dcm", annotator="jdoe"))
    assert str(login.ContentCreatorName) == "jdoe^"  # an OS login: one name component


def test_colours_and_codes_come_back_in_the_label_table(volume, tmp_path):
    from medviewer.core.annotations import LabelTable, read_seg_table

    table = LabelTable()
    table.add("lung", "#2080ff")
    table.add("nodule", "#ff2020")
    custom = (("SCT", "49755003", "Morphologically abnormal structure"),
              ("SCT", "27925004", "Nodule"))
    table.labels[2].category, table.labels[2].type = custom
    labels = _label_map(volume).clip(0, 2)
    path = write_seg(labels, volume, table.seg_names(), tmp_path / "seg.dcm",
                     colours=table.seg_colours(), codes=table.seg_codes())
    back, again = read_seg_table(path, volume)
    np.testing.assert_array_equal(back, labels)
    assert [(lab.value, lab.name, lab.colour) for lab in again] == \
        [(1, "lung", "#2080ff"), (2, "nodule", "#ff2020")]
    assert (again[2].category, again[2].type) == custom


def _overlapping_seg(volume, tmp_path, names):
    """A SEG as other tools write it: two segments whose masks overlap on the same slices."""
    import highdicom as hd

    from medviewer.core.annotations.seg import segment_descriptions

    datasets = [pydicom.dcmread(s.path) for s in volume.sources]
    first = np.zeros((len(datasets), *volume.voxels.shape[1:], 2), bool)
    first[6:12, 10:30, 10:30, 0] = True  # a big "lung" square
    first[8:10, 15:22, 15:22, 1] = True  # a "nodule" inside it: its voxels are in both
    seg = hd.seg.Segmentation(
        source_images=datasets, pixel_array=first,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segment_descriptions(["background", *names], None, ("x", "1")),
        series_instance_uid=hd.UID(), series_number=5, sop_instance_uid=hd.UID(),
        instance_number=1, manufacturer="other", manufacturer_model_name="other",
        software_versions="1", device_serial_number="1")
    path = tmp_path / "foreign.dcm"
    seg.save_as(path)
    return path, first


def test_overlapping_segments_put_several_frames_on_a_slice_and_the_higher_number_wins(
        volume, tmp_path):
    path, masks = _overlapping_seg(volume, tmp_path, ["lung", "nodule"])
    frames = pydicom.dcmread(path).PerFrameFunctionalGroupsSequence
    referenced = [f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
                  for f in frames]
    assert len(referenced) > len(set(referenced))  # two frames (segments) on one slice
    back, names = read_seg(path, volume)
    expected = np.where(masks[..., 1], 2, np.where(masks[..., 0], 1, 0)).astype(np.uint8)
    np.testing.assert_array_equal(back, expected)
    assert names == ["background", "lung", "nodule"]
    again = write_seg(back, volume, names, tmp_path / "again.dcm")  # and round-trips as read
    np.testing.assert_array_equal(read_seg(again, volume)[0], back)


def test_a_foreign_seg_repeating_a_segment_name_still_gets_a_table(volume, tmp_path):
    from medviewer.core.annotations import read_seg_table

    path, _ = _overlapping_seg(volume, tmp_path, ["Lesion", "lesion"])
    _, table = read_seg_table(path, volume)
    assert [lab.name for lab in table] == ["Lesion", "lesion (2)"]
    assert all(lab.colour.startswith("#") for lab in table)


def test_a_legacy_multi_frame_source_is_refused_with_the_reason(tmp_path):
    import shutil

    from pydicom.data import get_testdata_file

    shutil.copy(get_testdata_file("rtdose.dcm"), tmp_path / "rtdose.dcm")
    volume = load_series(scan(tmp_path, cache=False).all_series()[0])
    labels = np.zeros(volume.voxels.shape, np.uint8)
    labels[1, 2:5, 2:5] = 1
    with pytest.raises(AnnotationError, match="legacy multi-frame RTDOSE"):
        write_seg(labels, volume, ["background", "dose"], tmp_path / "out" / "seg.dcm")
    assert not (tmp_path / "out" / "seg.dcm").exists()
