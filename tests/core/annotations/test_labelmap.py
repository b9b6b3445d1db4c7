"""LabelMap / LabelTable: values, colours, SEG codes, spacing from the volume's affine."""

from __future__ import annotations

import numpy as np
import pytest

from medviewer.core.annotations.labelmap import (
    PALETTE,
    Label,
    LabelMap,
    LabelTable,
    spacing_from_affine,
)
from medviewer.core.annotations.seg import AnnotationError


def test_table_gives_lowest_free_value_and_palette_colours():
    table = LabelTable()
    lung = table.add("lung")
    nodule = table.add("Nodule", colour="#FF0000")
    assert (lung.value, nodule.value) == (1, 2)
    assert lung.colour == PALETTE[0] and nodule.colour == "#ff0000"
    table.remove(1)
    assert table.add("liver").value == 1
    assert [lab.name for lab in table] == ["liver", "Nodule"]


def test_names_are_unique_case_insensitive_and_found_by_name():
    table = LabelTable()
    table.add("Lung")
    assert table.by_name(" lung ").value == 1
    with pytest.raises(AnnotationError, match="already"):
        table.add("LUNG")


def test_default_snomed_codes_are_plain_tuples():
    table = LabelTable()
    lung, nodule, other = table.add("lung"), table.add("nodule"), table.add("my blob")
    assert lung.type == ("SCT", "39607008", "Lung")
    assert lung.category[2] == "Anatomical Structure"
    assert nodule.category == ("SCT", "49755003", "Morphologically Abnormal Structure")
    assert nodule.type == ("SCT", "27925004", "Nodule")
    assert other.type[2] == "Tissue"
    custom = Label(5, "x", category=("SCT", "1", "a"), type=("SCT", "2", "b"))
    assert custom.type == ("SCT", "2", "b")


@pytest.mark.parametrize("bad", [dict(value=0), dict(value=256), dict(colour="red"),
                                 dict(colour="#12345g"), dict(name=" ")])
def test_bad_labels_are_refused(bad):
    kwargs = dict(value=1, name="lung") | bad
    with pytest.raises(AnnotationError):
        Label(**kwargs)


def test_seg_names_fill_gaps_so_values_stay_segment_numbers():
    table = LabelTable()
    table.add("lung", value=1)
    table.add("nodule", value=3, colour="#00ff00")
    assert table.seg_names() == ["background", "lung", "label 2", "nodule"]
    assert table.seg_colours()[3] == "#00ff00" and len(table.seg_colours()) == 4
    assert LabelTable.from_names(["bg", "a", "b"]).seg_names() == ["background", "a", "b"]


def test_labelmap_checks_array_and_settings():
    with pytest.raises(AnnotationError):
        LabelMap(np.zeros((4, 4), np.uint8))
    with pytest.raises(AnnotationError):
        LabelMap(np.zeros((2, 4, 4), np.int16))
    with pytest.raises(AnnotationError):
        LabelMap(np.zeros((2, 4, 4), np.uint8), display="wireframe")
    with pytest.raises(AnnotationError):
        LabelMap(np.zeros((2, 4, 4), np.uint8), spacing=(1, 0, 1))
    lm = LabelMap(np.zeros((2, 4, 4), np.uint8), opacity=3, display="outline")
    assert lm.opacity == 1.0 and lm.display == "outline"


def test_spacing_from_an_oblique_anisotropic_affine():
    affine = np.eye(4)
    rot = np.array([[0.8, -0.6, 0], [0.6, 0.8, 0], [0, 0, 1.0]])
    affine[:3, :3] = rot @ np.diag([0.7, 0.6, 2.5])
    assert spacing_from_affine(affine) == pytest.approx((2.5, 0.6, 0.7))
    flat = np.diag([0.5, 0.5, 0.0, 1.0])
    assert spacing_from_affine(flat) == pytest.approx((1.0, 0.5, 0.5))


def test_for_volume_uses_the_loaded_series(ct_series):
    from medviewer.core.dicom import load_series

    volume = load_series(ct_series.folder)
    lm = LabelMap.for_volume(volume)
    assert lm.shape == volume.voxels.shape and lm.array.dtype == np.uint8
    assert not lm.array.any()
    assert lm.spacing == pytest.approx(tuple(ct_series.spacing))
    expected = volume.series.series_instance_uid if volume.series else ""
    assert lm.series_instance_uid == expected


def test_for_volume_refuses_colour_and_4d():
    from types import SimpleNamespace

    colour = SimpleNamespace(voxels=np.zeros((2, 4, 4, 3)), affine=np.eye(4), is_colour=True)
    with pytest.raises(AnnotationError, match="grey-level"):
        LabelMap.for_volume(colour)
    plain = SimpleNamespace(voxels=np.zeros((4, 4)), affine=np.eye(4),
                            series=SimpleNamespace(series_instance_uid="1.2.3"))
    lm = LabelMap.for_volume(plain)
    assert lm.shape == (1, 4, 4) and lm.series_instance_uid == "1.2.3"


def test_counts_and_volume():
    lm = LabelMap(np.zeros((2, 4, 4), np.uint8), spacing=(2.0, 0.5, 0.5))
    lm.table.add("a")
    lm.array[0, :2, :2] = 1
    assert lm.voxel_counts() == {1: 4}
    assert lm.volume_ml(1) == pytest.approx(4 * 0.5 / 1000)
    lm.table[1].visible = False
    assert lm.visible_values() == []
