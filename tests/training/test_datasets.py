"""Training data from workspace annotations and demo phantoms, as the plugins preprocess them."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from medviewer.core import synthetic as syn
from medviewer.core.annotations import (
    PROPOSED,
    REJECTED,
    AnnotatedBox,
    BoxSet,
    ClassLabel,
    Workspace,
    slice_uid,
)
from medviewer.core.dicom import load_series, scan
from medviewer.inference import preprocess as pp
from medviewer.inference.manifest import load_manifest
from medviewer.inference.registry import shipped_models_dir
from medviewer.training.augment import Augment
from medviewer.training.datasets import build_data
from medviewer.training.errors import TrainingError
from medviewer.training.labels import IGNORE
from medviewer.training.phantoms import DEMO_SEED_BASE

SHAPE, SPACING = (12, 64, 64), (10.0, 5.5, 5.5)
SEG_NAMES = ["background", "nodule", "lung", "Body", "spine", "liver"]  # not the model's order
SEG_VALUE = {"body": 3, "lung": 2, "nodule": 1, "spine": 4}  # phantom label -> SEG value


@pytest.fixture(scope="module")
def manifests():
    return {p.name: load_manifest(p, verify=False) for p in shipped_models_dir().iterdir()
            if (p / "manifest.json").is_file()}


def _job(series=(), demo=0, augment=False, **data):
    spec = {"series": [s if isinstance(s, dict) else str(s) for s in series], "demo": demo,
            "max_cases": None, "val_fraction": 0.5, "split_seed": 0, **data}
    return SimpleNamespace(model="m", data=spec, augment=augment, seed=0, path="job.json")


def _ct(folder: Path, patient: str, seed: int, number: int = 2):
    """A small chest CT of `patient` (12 x 64 x 64), loaded."""
    hu, _ = syn.ct_chest_phantom(SHAPE, SPACING, seed=seed, nodules=())
    syn.write_series(folder, hu, spacing=SPACING, seed=seed, PatientID=patient,
                     PatientAge="070Y", PatientSex="M", SeriesNumber=number)
    return load_series(scan(folder, workers=1).all_series()[0])


def _items(data):
    return [data.train[i] for i in range(len(data.train))] + \
        [data.validation[i] for i in range(len(data.validation))]


# --- segmentation ----------------------------------------------------------------------------

def _save_corrected_seg(volume, nodule_slice: int | None) -> np.ndarray:
    """The phantom's labels in SEG values, a nodule painted by hand, a 'liver' stroke."""
    truth = syn.ct_chest_labels(SHAPE, SPACING, nodules=())
    seg = np.zeros(SHAPE, np.uint8)
    for name, value in SEG_VALUE.items():
        seg[truth == syn.CHEST_LABELS[name]] = value
    seg[1] = 0  # slice 1 left unannotated: it must not become an all-background target
    if nodule_slice is not None:
        rows, cols = np.nonzero(truth[nodule_slice] == syn.CHEST_LABELS["lung"])
        r, c = int(np.median(rows)), int(np.median(cols))
        seg[nodule_slice, r - 2:r + 3, c - 2:c + 3] = SEG_VALUE["nodule"]  # the correction
        seg[nodule_slice, 2:5, 2:5] = 5  # 'liver': no label of the model
    Workspace.for_series(volume).save_seg(seg, volume, SEG_NAMES)
    return seg


def test_a_corrected_seg_becomes_the_target_with_values_mapped_by_name(tmp_path, manifests):
    m = manifests["lab4-chest-unet"]
    first, second = _ct(tmp_path / "a", "P1", 1), _ct(tmp_path / "b", "P2", 2)
    seg = _save_corrected_seg(first, nodule_slice=6)
    _save_corrected_seg(second, nodule_slice=None)
    # 'liver' is no label of the model: never silently background (issue 11.17)
    with pytest.raises(TrainingError, match=r"'liver' \(9 voxels\) matches no label.*"
                       r"segment_labels.*trained as background"):
        build_data(_job([tmp_path / "a", tmp_path / "b"]), m)
    with pytest.raises(TrainingError, match="'liver' -> 'kidney', which is no label"):
        build_data(_job([tmp_path / "a"], segment_labels={"liver": "kidney"}), m)
    data = build_data(_job([tmp_path / "a", tmp_path / "b"], segment_labels={"Liver": None}), m)
    assert data.task == "segmentation" and data.labels == m.label_names
    ours = {it["slice"]: it for it in _items(data) if it["patient"] == "P1"}
    assert sorted(ours) == [k for k in range(SHAPE[0]) if k != 1]  # annotated slices only
    model_value = {0: 0, 5: IGNORE, **{v: m.label_names.index(n) for n, v in SEG_VALUE.items()}}
    expected = np.vectorize(model_value.get)(seg[6])
    expected = np.repeat(np.repeat(expected, 2, axis=0), 2, axis=1)  # 64 -> 128, nearest
    target = ours[6]["target"]
    assert target.dtype == torch.int64 and target.shape == (128, 128)
    np.testing.assert_array_equal(target.numpy(), expected)
    assert (target == m.label_names.index("nodule")).sum() == 4 * 25  # the painted nodule
    assert (target == IGNORE).sum() == 4 * 9  # excluded 'liver': ignored, not background
    image = pp.prepare_slices(first.voxels, [6], m.input)[0]  # what the viewer feeds
    np.testing.assert_array_equal(ours[6]["image"].numpy(), image)
    seg_file = Workspace.for_series(first).seg_path
    assert data.split["sources"][ours[6]["case"]] == f"workspace:{seg_file}"
    mapped = build_data(_job([tmp_path / "a", tmp_path / "b"],
                             segment_labels={"liver": "Body"}), m)
    target = {it["slice"]: it for it in _items(mapped) if it["patient"] == "P1"}[6]["target"]
    assert (target == IGNORE).sum() == 0 and target[4, 4] == m.label_names.index("body")


def test_segments_match_by_code_and_excluded_only_slices_are_left_out(tmp_path, manifests):
    """A segment named otherwise but coded SNOMED Lung trains as 'lung'; a slice whose only
    annotation is an excluded segment is no sample (it says nothing about the labels)."""
    from medviewer.core.annotations.labelmap import default_codes
    from medviewer.training.labels import read_segments

    m = manifests["lab4-chest-unet"]
    volume, other = _ct(tmp_path / "a", "P1", 1), _ct(tmp_path / "b", "P2", 2)
    lung = np.zeros(SHAPE, np.uint8)
    lung[7, 10:20, 10:20] = 1
    Workspace.for_series(other).save_seg(lung, other, ["background", "lung"])
    seg = np.zeros(SHAPE, np.uint8)
    seg[3, 10:20, 10:20] = 1  # "Left lung", coded Lung
    seg[5, 30:34, 30:34] = 2  # "pen mark": excluded
    path = Workspace.for_series(volume).save_seg(
        seg, volume, ["background", "Left lung", "pen mark"],
        codes={1: default_codes("lung"), 2: default_codes("pen mark")})
    found = {s.name: s for s in read_segments(path)}
    assert found["Left lung"].voxels == 100 and found["pen mark"].voxels == 16
    assert found["Left lung"].code[1] == "39607008"  # SNOMED Lung
    with pytest.raises(TrainingError, match="'pen mark' \\(16 voxels\\)"):
        build_data(_job([tmp_path / "a", tmp_path / "b"]), m)
    data = build_data(_job([tmp_path / "a", tmp_path / "b"],
                           segment_labels={"pen mark": None}), m)
    items = [it for it in _items(data) if it["patient"] == "P1"]
    assert [it["slice"] for it in items] == [3]
    assert (items[0]["target"] == m.label_names.index("lung")).sum() == 4 * 100


# --- classification and fusion -----------------------------------------------------------------

def _save_labels(volume, slices: dict[int, str], series: str | None = None) -> None:
    labels = [ClassLabel(name, scope="slice", slice_index=k,
                         sop_instance_uid=slice_uid(volume, k)) for k, name in slices.items()]
    if series is not None:
        labels.append(ClassLabel(series))
    Workspace.for_series(volume).save_sr(volume, BoxSet([], labels), annotator="test")


def test_two_series_of_one_patient_stay_on_one_side_and_slice_labels_map_by_name(
        tmp_path, manifests):
    m = manifests["lab2-nodule-slice"]
    volumes = {"p1a": _ct(tmp_path / "p1a", "P1", 11, 2), "p1b": _ct(tmp_path / "p1b", "P1", 12, 3),
               "p2": _ct(tmp_path / "p2", "P2", 13), "p3": _ct(tmp_path / "p3", "P3", 14)}
    _save_labels(volumes["p1a"], {3: "Nodule", 5: "no nodule", 7: "maybe"})
    _save_labels(volumes["p1b"], {4: "nodule"})
    _save_labels(volumes["p2"], {2: "nodule"}, series="no nodule")
    _save_labels(volumes["p3"], {0: "no nodule"})
    sides = set()
    for seed in range(6):
        data = build_data(_job([tmp_path / n for n in volumes], split_seed=seed), m)
        train = {it["patient"] for it in (data.train[i] for i in range(len(data.train)))}
        cases = data.split["cases"]
        assert sorted(c for c, p in cases.items() if p == "P1") == ["P1/2 CT SYNTHETIC PHANTOM",
                                                                     "P1/3 CT SYNTHETIC PHANTOM"]
        assert not set(data.split["train"]) & set(data.split["validation"])
        assert train == set(data.split["train"])
        sides.add("P1" in train)
    assert sides == {True, False}
    items = {(it["case"], it["slice"]): it for it in _items(data)}
    p1a = "P1/2 CT SYNTHETIC PHANTOM"
    assert {k for c, k in items if c == p1a} == {3, 5}  # 'maybe' is no label of the model
    assert int(items[p1a, 3]["target"]) == 1 and int(items[p1a, 5]["target"]) == 0
    p2 = [it for (c, _), it in items.items() if c.startswith("P2")]
    assert len(p2) == SHAPE[0] and sum(int(it["target"]) for it in p2) == 1  # series label
    assert any("'maybe'" in w for w in data.split["warnings"])
    expected = pp.prepare_slices(volumes["p1a"].voxels, [3], m.input)[0]
    np.testing.assert_array_equal(items[p1a, 3]["image"].numpy(), expected)
    np.testing.assert_array_equal(items[p1a, 3]["extras"].numpy(),
                                  pp.extras_vector({"PatientAge": "070Y", "PatientSex": "M"},
                                                   m.input.extras))


def test_a_job_naming_series_of_a_folder_takes_only_those(tmp_path, manifests):
    """A folder holding several annotated series: the Retrain dialog names the checked ones."""
    m = manifests["lab2-nodule-slice"]
    study = tmp_path / "study"
    volumes = [_ct(study / name, f"P{i}", 20 + i) for i, name in enumerate("abc")]
    for v in volumes:
        _save_labels(v, {2: "nodule"}, series="no nodule")
    chosen = [{"folder": str(study), "uid": v.series.series_instance_uid} for v in volumes[:2]]
    data = build_data(_job(chosen), m)
    assert sorted(set(data.split["cases"].values())) == ["P0", "P1"]
    assert len(build_data(_job([study]), m).split["cases"]) == 3  # the folder: every series
    with pytest.raises(TrainingError, match="no series 9.9.9"):
        build_data(_job([{"folder": str(study), "uid": "9.9.9"}]), m)


def test_a_fusion_model_gets_one_sample_per_labelled_series(tmp_path, manifests):
    from medviewer.labs.lab3.plugin import series_sample

    m = manifests["lab3-fusion-early"]
    first, second = _ct(tmp_path / "a", "F1", 21), _ct(tmp_path / "b", "F2", 22)
    _save_labels(first, {2: "nodule >= 10 mm"}, series="Nodule >= 10 mm")
    _save_labels(second, {}, series="no nodule >= 10 mm")
    data = build_data(_job([tmp_path / "a", tmp_path / "b"]), m)
    items = {it["patient"]: it for it in _items(data)}
    assert data.task == "classification" and len(items) == 2
    assert int(items["F1"]["target"]) == 1 and int(items["F2"]["target"]) == 0
    np.testing.assert_array_equal(items["F1"]["image"].numpy(),
                                  series_sample(first.voxels, m.input, "mip"))


# --- detection ----------------------------------------------------------------------------------

def _film(folder: Path, patient: str, seed: int):
    syn.write_chest_xray(folder, size=512, seed=seed, PatientID=patient)
    return load_series(scan(folder, workers=1).all_series()[0])


def test_only_accepted_and_drawn_boxes_are_truth_scaled_to_the_model_grid(tmp_path, manifests):
    from medviewer.labs.lab5.plugin import prepare_film

    m = manifests["lab5-heart-frcnn"]
    films = [_film(tmp_path / "a", "X1", 2), _film(tmp_path / "b", "X2", 3)]
    model = "model:lab5-heart-frcnn@1.0.0"
    for volume in films:
        uid = slice_uid(volume, 0)
        boxes = [AnnotatedBox(200, 240, 360, 380, 0, "Normal Heart", sop_instance_uid=uid),
                 AnnotatedBox(10, 10, 60, 60, 0, "cardiomegaly", 0.9, model, PROPOSED, uid),
                 AnnotatedBox(100, 100, 400, 400, 0, "cardiomegaly", 0.4, model, REJECTED, uid),
                 AnnotatedBox(20, 300, 80, 340, 0, "rib", sop_instance_uid=uid)]
        Workspace.for_series(volume).save_sr(volume, BoxSet(boxes), annotator="test")
    data = build_data(_job([tmp_path / "a", tmp_path / "b"]), m)
    items = _items(data)
    assert data.task == "detection" and len(items) == 2
    batch = data.collate(items)
    assert isinstance(batch, list) and len(batch) == 2
    for item in items:
        target = item["target"]
        np.testing.assert_allclose(target["boxes"].numpy(), [[100, 120, 180, 190]])  # x 0.5
        assert target["labels"].tolist() == [m.label_names.index("normal heart") + 1]
        assert target["boxes"].dtype == torch.float32 and target["labels"].dtype == torch.int64
    assert any("'rib'" in w for w in data.split["warnings"])
    film = next(v for v in films if v.header["PatientID"] == items[0]["patient"])
    np.testing.assert_array_equal(items[0]["image"].numpy(),
                                  prepare_film(film.voxels[0], m.input.size, m.input.channels))


# --- demo phantoms: every lab -----------------------------------------------------------------

@pytest.mark.parametrize("model_id", ["lab1-digits-mlp", "lab2-nodule-slice", "lab3-fusion-3d",
                                      "lab4-chest-unet", "lab5-heart-frcnn"])
def test_demo_items_match_the_models_onnx_inputs(model_id, manifests):
    m = manifests[model_id]
    data = build_data(_job(demo=2), m)
    assert set(data.split["train"]) | set(data.split["validation"]) == {
        f"DEMO-SYN-{DEMO_SEED_BASE}", f"DEMO-SYN-{DEMO_SEED_BASE + 1}"}
    image_input = next(n for n in m.onnx_inputs if n != "extras")
    for item in (data.train[0], data.validation[0]):
        for key, name in (("image", image_input), ("extras", "extras")):
            if name not in m.onnx_inputs:
                assert key not in item
                continue
            shape = m.onnx_inputs[name][1:]  # without the batch axis
            assert item[key].dtype == torch.float32 and item[key].ndim == len(shape)
            assert all(s == d for s, d in zip(shape, item[key].shape, strict=True)
                       if isinstance(s, int))
        target = item["target"]
        if m.task == "segmentation":
            assert target.dtype == torch.int64 and tuple(target.shape) == m.input.size
        elif m.task == "detection":
            assert target["labels"].dtype == torch.int64 and target["boxes"].shape[1] == 4
        else:
            assert target.dtype == torch.int64 and target.ndim == 0
            assert 0 <= int(target) < len(m.labels)


def test_demo_samples_are_the_labs_own_training_samples(manifests):
    from medviewer.labs.lab2 import data as lab2

    m = manifests["lab2-nodule-slice"]
    data = build_data(_job(demo=2), m)
    seed = DEMO_SEED_BASE + 1
    case = lab2.make_case(seed)
    picks = lab2.training_slices(case, np.random.default_rng([seed, 3]))
    images, extras, targets = lab2.samples(case, picks, m.input)
    items = [it for it in _items(data) if it["patient"] == f"DEMO-SYN-{seed}"]
    assert [it["slice"] for it in items] == picks.tolist()
    np.testing.assert_array_equal(np.stack([it["image"].numpy() for it in items]), images)
    np.testing.assert_array_equal(np.stack([it["extras"].numpy() for it in items]), extras)
    assert [int(it["target"]) for it in items] == targets.tolist()


def test_demo_films_are_lab5s_films(manifests):
    from medviewer.labs.lab5.demo import make_films

    data = build_data(_job(demo=2), manifests["lab5-heart-frcnn"])
    seed = DEMO_SEED_BASE
    films = make_films(range(seed, seed + 1))
    item = next(it for it in _items(data) if it["patient"] == f"DEMO-SYN-{seed}")
    np.testing.assert_array_equal(item["image"].numpy(), films.images[0])
    np.testing.assert_allclose(item["target"]["boxes"].numpy(), films.boxes, rtol=1e-6)
    assert item["target"]["labels"].tolist() == [int(films.labels[0]) + 1]


def test_max_cases_caps_the_cases_and_says_so(manifests):
    data = build_data(_job(demo=4, max_cases=3), manifests["lab4-chest-unet"])
    assert len(data.split["cases"]) == 3 and f"DEMO-SYN-{DEMO_SEED_BASE + 3}" not in \
        data.split["cases"].values()
    assert any("max_cases 3" in w for w in data.split["warnings"])
    assert data.split["sources"][f"DEMO-SYN-{DEMO_SEED_BASE}"] == f"demo:{DEMO_SEED_BASE}"


# --- bad input ---------------------------------------------------------------------------------

def test_a_series_without_annotations_is_a_training_error(tmp_path, manifests):
    _ct(tmp_path / "plain", "P9", 31)
    with pytest.raises(TrainingError) as error:
        build_data(_job([tmp_path / "plain"], demo=2), manifests["lab4-chest-unet"])
    assert error.value.path == str(tmp_path / "plain")
    assert "segmentation (SEG)" in error.value.reason and "Save" in error.value.reason


def test_an_unknown_task_no_data_and_one_patient_are_training_errors(manifests):
    m = manifests["lab2-nodule-slice"]
    with pytest.raises(TrainingError, match="registration"):
        build_data(_job(demo=2), dataclasses.replace(m, task="registration"))
    with pytest.raises(TrainingError, match="no cases"):
        build_data(_job(demo=0), m)
    with pytest.raises(TrainingError, match="at least two patients"):
        build_data(_job(demo=1), m)


# --- augmentation -------------------------------------------------------------------------------

def test_augmentation_moves_image_mask_and_box_together_and_never_mirrors_by_default():
    torch.manual_seed(0)
    image = torch.zeros(1, 64, 64)
    image[0, 20:36, 8:24] = 1.0  # a bright square on the image's left
    mask = (image[0] > 0).long() * 3
    box = {"boxes": torch.tensor([[8.0, 20.0, 24.0, 36.0]]), "labels": torch.tensor([2])}
    augment = Augment(intensity=0.0, scale=0.1, shift=0.1)
    for _ in range(20):
        out = augment({"image": image, "target": mask})
        inside = out["target"] == 3
        assert out["target"].dtype == torch.int64 and set(out["target"].unique().tolist()) <= {0, 3}
        assert out["image"][0][inside].mean() > 0.9 and out["image"][0][~inside].mean() < 0.05
        assert inside.nonzero()[:, 1].float().mean() < 32  # still on the left: no flip
        moved = augment({"image": image, "target": box})
        x0, y0, x1, y1 = moved["target"]["boxes"][0].tolist()
        rows, cols = (moved["image"][0] > 0.5).nonzero().T
        assert abs(x0 - cols.min().item()) <= 1 and abs(x1 - cols.max().item() - 1) <= 1
        assert abs(y0 - rows.min().item()) <= 1 and abs(y1 - rows.max().item() - 1) <= 1
    flipped = [Augment(scale=0, shift=0, flip=True)({"image": image, "target": mask})
               for _ in range(20)]
    assert any(f["target"].nonzero()[:, 1].float().mean() > 32 for f in flipped)


def test_only_training_items_are_augmented(manifests):
    m = manifests["lab4-chest-unet"]
    data = build_data(_job(demo=2, augment=True), m)
    assert data.augment is not None and data.train.augment is data.augment
    assert data.validation.augment is None
    stored = data.train.cases[0].images[0]
    assert not np.array_equal(data.train[0]["image"].numpy(), stored)
    np.testing.assert_array_equal(data.validation[0]["image"].numpy(),
                                  data.validation.cases[0].images[0])


def test_a_save_killed_half_way_is_trained_as_the_whole_new_set(tmp_path, manifests,
                                                                 monkeypatch):
    """The viewer's save was killed after its commit point, having switched in its SR but not
    yet its SEG: training reads the series as the viewer does, the save finished first, so
    its targets are the new SEG's, never the old SEG beside the new SR."""
    import os

    from medviewer.core.annotations import LabelMap
    from medviewer.core.annotations import commit as commit_module

    m = manifests["lab4-chest-unet"]

    def save(volume, nodule_slice):
        ws = Workspace.for_series(volume)
        labels = LabelMap.for_volume(volume)
        labels.array[nodule_slice, 20:30, 20:30] = labels.table.add("nodule").value
        with ws.saving(ws.generation()) as w:
            w.save_labels(labels.array, volume, labels.table, annotator="Doe^Jane")
            w.save_sr(volume, BoxSet(), annotator="Doe^Jane")

    volume = _ct(tmp_path / "a", "P1", 1)
    save(_ct(tmp_path / "b", "P2", 2), 5)  # a second patient: a validation split exists
    save(volume, 3)
    real_replace, moved = os.replace, []

    folder = Workspace.for_series(volume).folder

    def killed_after_one(source, target):  # the SR is switched in, then the process dies
        switch = Path(source).parent.name.startswith(".staging-") and \
            Path(target).parent == folder
        if switch and moved:
            raise SystemExit("killed")
        moved.extend([target] if switch else [])
        real_replace(source, target)

    monkeypatch.setattr(commit_module.os, "replace", killed_after_one)
    with pytest.raises(SystemExit):
        save(volume, 8)
    monkeypatch.undo()
    assert [Path(t).name for t in moved] == ["annotations.dcm"]  # the old SEG is still there
    data = build_data(_job([tmp_path / "a", tmp_path / "b"]), m)
    assert sorted(it["slice"] for it in _items(data) if it["patient"] == "P1") == [8]
