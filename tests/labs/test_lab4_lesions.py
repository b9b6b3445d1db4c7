"""Lab 4 as a radiologist reports it: the shipped chest model on the demo CT lists the four
nodules of ground_truth.json, each with its diameter (within 2 mm) and volume; and the edge
refinement that gets it there only ever trims a lesion to where the image puts its edge."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medviewer.core.dicom import load_series
from medviewer.core.lesions import find_lesions
from medviewer.inference import open_model
from medviewer.labs.lab4.plugin import refine_lesion_edges


@pytest.fixture(scope="module")
def demo_lesions(demo_study):
    volume = load_series(demo_study / "DEMO-0001" / "CT_CHEST")
    result = open_model("lab4-chest-unet").run(volume)
    truth = json.loads((demo_study / "ground_truth.json").read_text())["chest_ct"]
    return find_lesions(result.label_map, volume, result.labels), truth


def test_the_table_lists_the_four_demo_nodules_at_their_true_size(demo_lesions):
    lesions, truth = demo_lesions
    assert len(lesions) == len(truth["nodules"]) == 4
    for nodule in truth["nodules"]:
        found = min(lesions, key=lambda les: np.linalg.norm(
            np.subtract(les.centre_lps, nodule["center_lps"])))
        assert np.linalg.norm(np.subtract(found.centre_lps, nodule["center_lps"])) < 2.0
        assert abs(found.long_axis_mm - nodule["diameter_mm"]) <= 2.0, nodule["label"]
        assert abs(found.short_axis_mm - nodule["diameter_mm"]) <= 2.0, nodule["label"]
        assert found.slice_index == pytest.approx(nodule["center_voxel"][0], abs=1.5)
        assert found.mean_value == pytest.approx(nodule["hu"], abs=30)  # no lung rim in it
    pooled = sum(les.volume_ml for les in lesions)
    true_ml = sum(n["voxel_count"] for n in truth["nodules"]) * np.prod(truth["spacing"]) / 1000
    assert pooled == pytest.approx(true_ml, rel=0.15)


def _slice_with_disc():
    rows, cols = np.mgrid[:40, :40]
    disc = (rows - 20) ** 2 + (cols - 20) ** 2 <= 36
    image = np.where(disc, 50, -850).astype(np.int16)
    labels = np.full((40, 40), 1, np.uint8)  # lung
    labels[(rows - 20) ** 2 + (cols - 20) ** 2 <= 81] = 2  # the model's nodule: 3 px too wide
    return image, labels, disc


def test_a_too_wide_lesion_is_trimmed_to_its_half_maximum_edge():
    image, labels, disc = _slice_with_disc()
    refine_lesion_edges(labels, image, [2])
    assert np.array_equal(labels == 2, disc)
    assert set(np.unique(labels[~disc])) == {1}  # the rim goes back to the lung around it


def test_a_lesion_without_contrast_or_too_narrow_is_not_grown_or_touched():
    image, labels, disc = _slice_with_disc()
    flat = np.where(disc, -820, -850).astype(np.int16)  # 30 HU: no edge to trust
    before = labels.copy()
    refine_lesion_edges(labels, flat, [2])
    assert np.array_equal(labels, before)
    narrow = np.where(disc, 2, 1).astype(np.uint8)
    narrow[20, 14] = 1  # one pixel short of the disc: trimming never adds it back
    refine_lesion_edges(narrow, image, [2])
    assert narrow[20, 14] == 1 and (narrow == 2).sum() == disc.sum() - 1


def test_medviewer_infer_writes_one_row_per_lesion(demo_study, tmp_path, capsys):
    import csv

    from medviewer.cli import main

    out = tmp_path / "out"
    code = main(["infer", "--model", "lab4-chest-unet", "--slices", "25:45",
                 str(demo_study / "DEMO-0001" / "CT_CHEST"), "--out", str(out)])
    assert code == 0, capsys.readouterr().out
    (path,) = out.glob("*_lesions.csv")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    truth = json.loads((demo_study / "ground_truth.json").read_text())["chest_ct"]["nodules"]
    inside = sorted(n["diameter_mm"] for n in truth if 27 <= n["center_voxel"][0] <= 42)
    assert len(inside) == 2  # slices 25..44 hold the 20 mm and the 15 mm nodules whole
    measured = sorted(float(r["long_axis_mm"]) for r in rows)
    assert len(measured) == 2 and np.allclose(measured, inside, atol=2.0)
    assert all(r["label"] == "nodule" and r["site"] == "lung" and r["tracking_uid"]
               for r in rows)
