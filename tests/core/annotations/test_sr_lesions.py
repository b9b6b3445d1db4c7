"""A segmentation's lesions in the SR: one TID 1500 volumetric group each, valid for dciodvfy,
read back by highdicom with their measurements, codes and tracking identifiers, and the same
lesion keeps its Tracking UID when the SR is saved again."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.sr.codedict import codes

from medviewer.core import synthetic
from medviewer.core.annotations.sr import write_sr
from medviewer.core.annotations.sr_lesions import read_lesions, track_against
from medviewer.core.dicom import load_series
from medviewer.core.lesions import find_lesions, keep_tracking
from tests.core.annotations.reference_tools import dciodvfy

LABELS = ["background", "body", "lung", "nodule"]
MODEL = "model:lab4-chest-unet@1.0.0"


@pytest.fixture(scope="module")
def volume(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ct")
    voxels, _ = synthetic.ct_chest_phantom((12, 64, 64), (2.5, 1.5, 1.5), noise_hu=0)
    synthetic.write_series(folder, voxels, spacing=(2.5, 1.5, 1.5))
    return load_series(folder)


def _label_map(volume, extra: bool = False):
    z, r, c = np.mgrid[:12, :64, :64]
    label_map = np.full((12, 64, 64), 2, np.uint8)  # all lung, for the finding site
    right = ((z - 5) * 2.5) ** 2 + ((r - 30) * 1.5) ** 2 + ((c - 18) * 1.5) ** 2 <= 36
    left = ((z - 7) * 2.5) ** 2 + ((r - 34) * 1.5) ** 2 + ((c - 46) * 1.5) ** 2 <= 16
    label_map[right | left] = 3
    if extra:
        label_map[1:3, 50:54, 30:34] = 3
    return label_map


def _save(volume, path, extra=False):
    lesions = keep_tracking(find_lesions(_label_map(volume, extra), volume, LABELS), [])
    lesions = track_against(path, lesions)
    write_sr(path, volume, [], annotator="Jane Doe", model=MODEL, lesions=lesions)
    return lesions


def test_dciodvfy_finds_nothing_new_in_an_sr_with_lesions(volume, tmp_path):
    _save(volume, tmp_path / "lesions.dcm")
    write_sr(tmp_path / "plain.dcm", volume, [], annotator="Jane Doe", model=MODEL)
    said, plain = dciodvfy(tmp_path / "lesions.dcm"), set(dciodvfy(tmp_path / "plain.dcm"))
    assert [line for line in said if line not in plain] == []
    assert not [line for line in said if line.startswith("Error")]


def test_highdicom_reads_each_lesion_group_back(volume, tmp_path):
    import highdicom as hd

    saved = _save(volume, tmp_path / "lesions.dcm")
    report = hd.sr.MeasurementReport.from_sequence([hd.sr.srread(tmp_path / "lesions.dcm")])
    groups = report.get_volumetric_roi_measurement_groups()
    assert len(groups) == len(saved) == 2
    for lesion in saved:
        (group,) = [g for g in groups if str(g.tracking_uid) == lesion.tracking_uid]
        assert str(group.tracking_identifier) == lesion.name
        assert group.finding_type.value == codes.SCT.Nodule.value
        (site,) = group.finding_sites
        assert site.ConceptCodeSequence[0].CodeValue == codes.SCT.Lung.value
        side = codes.SCT.Left if lesion.centre_lps[0] > 0 else codes.SCT.Right
        assert site.laterality.value == side.value
        values = {m.name.value: (float(m.value), m.unit.value) for m in group.get_measurements()}
        assert values[codes.SCT.Volume.value] == pytest.approx((lesion.volume_ml, "ml"))
        assert values[codes.SCT.LongAxis.value] == pytest.approx((lesion.long_axis_mm, "mm"))
        assert values[codes.SCT.ShortAxis.value][0] == pytest.approx(lesion.short_axis_mm)
        mean = values[codes.DCM.AttenuationCoefficient.value]
        assert mean == pytest.approx((lesion.mean_value, "[hnsf'U]"), abs=1e-3)
        surface = group.roi
        assert surface.graphic_type.value == "POINT"
        assert np.allclose(surface.graphic_data.reshape(-1), lesion.centre_lps, atol=1e-3)
        (source,) = surface.source_images_for_segmentation
        assert source.referenced_sop_instance_uid == \
            volume.sources[lesion.slice_index].sop_instance_uid
    back = {les.tracking_uid: les for les in read_lesions(tmp_path / "lesions.dcm")}
    assert {uid: les.label for uid, les in back.items()} == {
        les.tracking_uid: "nodule" for les in saved}


def test_saving_again_keeps_each_lesions_tracking_uid(volume, tmp_path):
    path = tmp_path / "lesions.dcm"
    first = _save(volume, path)
    again = _save(volume, path, extra=True)  # a new run: new UIDs, matched to the saved ones
    old = {les.tracking_uid: les.tracking_id for les in first}
    kept = [les for les in again if les.tracking_uid in old]
    assert len(kept) == 2 and all(old[les.tracking_uid] == les.tracking_id for les in kept)
    (new,) = [les for les in again if les.tracking_uid not in old]
    assert new.tracking_uid and new.slice_index in (1, 2)
    assert {les.tracking_uid for les in read_lesions(path)} == {les.tracking_uid for les in again}
