"""Lab 3: series samples (slab MIPs), the four shipped fusion models and their CSV verdicts."""

from __future__ import annotations

import csv
from types import SimpleNamespace

import numpy as np
import pytest

from medviewer.core.synthetic import ct_chest_phantom
from medviewer.inference.manifest import InputSpec
from medviewer.labs.lab3.plugin import (
    compare_methods,
    series_sample,
    slab_bounds,
    write_method_csvs,
    write_verdicts_csv,
)

METHODS = {"single": "lab3-fusion-single", "early": "lab3-fusion-early",
           "late": "lab3-fusion-late", "3d": "lab3-fusion-3d"}
FUSION = ("early", "late", "3d")  # the single-slice baseline sees only the central slab
POSITIVE = "nodule >= 10 mm"


# --- the series sample --------------------------------------------------------------------------

@pytest.mark.parametrize("count, slabs", [(120, 12), (13, 12), (5, 12), (1, 4)])
def test_slabs_cover_the_series_in_order_and_are_never_empty(count, slabs):
    bounds = slab_bounds(count, slabs)
    assert len(bounds) == slabs
    assert all(0 <= a < b <= count for a, b in bounds)
    assert bounds[0][0] == 0 and bounds[-1][1] == count
    assert all(a2 >= a1 for (a1, _), (a2, _) in zip(bounds, bounds[1:], strict=False))
    if count >= slabs:  # no slice in two slabs, none left out
        assert sum(b - a for a, b in bounds) == count


def test_slab_mip_keeps_a_nodule_that_nearest_sampling_misses():
    spec = InputSpec(size=(8, 8), channels=4, context="volume:4", window=(0.0, 2.0))
    voxels = np.zeros((16, 8, 8), np.int16)
    voxels[2, 3, 3] = 1  # one bright voxel on a slice the even sampling skips
    mip = series_sample(voxels, spec, "mip")
    nearest = series_sample(voxels, spec, "nearest")
    assert mip.shape == nearest.shape == (4, 8, 8) and mip.dtype == np.float32
    assert mip[0, 3, 3] > mip[0].min() and mip[1:].max() == mip.min()
    assert nearest.max() == nearest.min()


# --- the shipped models -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fusion_models():
    from medviewer.inference import open_model

    return {key: open_model(model_id, threads=2) for key, model_id in METHODS.items()}


@pytest.fixture(scope="module")
def demo_ct(demo_study):
    from medviewer.core.dicom import load_series

    return load_series(demo_study / "DEMO-0001" / "CT_CHEST")


def _phantom(nodules: tuple, seed: int) -> SimpleNamespace:
    hu, truth = ct_chest_phantom((60, 256, 256), (5.0, 1.4, 1.4), seed=seed, nodules=nodules)
    return SimpleNamespace(voxels=hu, modality="CT", truth=truth)


def _p_positive(result) -> float:
    return float(result.scores[0, result.labels.index(POSITIVE)])


def test_manifests_report_held_out_accuracy_f1_and_auc(fusion_models):
    for model in fusion_models.values():
        m = model.manifest
        v = m.metrics
        assert m.task == "fusion" and m.input.context == "volume:12"
        assert {"accuracy", "f1", "roc_auc", "n", "split"} <= set(v)
        assert 0.0 <= v["accuracy"] <= 1.0 and 0.0 <= v["roc_auc"] <= 1.0
        assert m.provenance["pretrained"].startswith("none")
    # the fusion methods see the whole series; the baseline one slab of it
    for key in FUSION:
        auc = fusion_models[key].manifest.metrics["roc_auc"]
        assert auc > fusion_models["single"].manifest.metrics["roc_auc"]


def test_lab3_models_stay_small(fusion_models):
    total = sum(f.stat().st_size for m in fusion_models.values()
                for f in m.manifest.folder.iterdir())
    assert total < 8 * 2**20


def test_demo_ct_gives_one_verdict_per_method_and_the_fusions_say_nodule(fusion_models, demo_ct):
    results = compare_methods(demo_ct, list(fusion_models.values()))
    assert [r.model_id for r in results] == list(METHODS.values())
    for key, r in zip(METHODS, results, strict=True):
        assert r.scores.shape == (1, 2) and r.slice_indices == []
        assert r.scores.sum() == pytest.approx(1.0)
        # the viewer's path (DICOM -> Volume -> ONNX Runtime) gives what training measured
        recorded = fusion_models[key].manifest.metrics["demo_checks"]["p_positive_demo_ct"]
        assert _p_positive(r) == pytest.approx(recorded, abs=0.02)
        if key in FUSION:
            assert r.predicted()[0] == POSITIVE


def test_fusion_verdicts_differ_for_nodule_and_clear_phantoms(fusion_models):
    nodule = _phantom((("big", -1, 0.35, 0.0, 0.1, 18.0),), seed=31337)
    clear = _phantom((), seed=31338)
    assert nodule.truth["nodules"], "the test nodule must fit in the lung"
    for key in FUSION:
        with_nodule = fusion_models[key].run(nodule)
        without = fusion_models[key].run(clear)
        assert with_nodule.predicted()[0] == POSITIVE, key
        assert without.predicted()[0] != POSITIVE, key
    assert fusion_models["single"].run(clear).predicted()[0] != POSITIVE


def test_verdicts_csv_has_a_row_per_method(fusion_models, tmp_path):
    clear = _phantom((), seed=5)
    results = compare_methods(clear, list(fusion_models.values()))
    path = write_verdicts_csv(results, tmp_path / "verdicts.csv")
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    assert [row["model_id"] for row in rows] == list(METHODS.values())
    for row, r in zip(rows, results, strict=True):
        assert row["label"] == r.predicted()[0]
        assert float(row["score"]) == pytest.approx(r.predicted()[1], abs=1e-6)
        assert float(row[f"score_{POSITIVE}"]) == pytest.approx(_p_positive(r), abs=1e-6)
    files = write_method_csvs(results + results[:1], tmp_path / "per-method")
    assert sorted(f.name for f in files) == sorted(f"{m}.csv" for m in METHODS.values())
    single = tmp_path / "per-method" / f"{METHODS['single']}.csv"
    assert len(list(csv.DictReader(single.open(encoding="utf-8")))) == 2


def test_a_slice_classifier_is_refused_in_the_comparison(fusion_models):
    from medviewer.inference import ModelError
    from medviewer.inference.registry import LoadedModel

    late = fusion_models["late"]
    slice_level = LoadedModel(late.manifest, late.session, SimpleNamespace(series_level=False))
    with pytest.raises(ModelError, match="fusion"):
        compare_methods(SimpleNamespace(voxels=np.zeros((4, 8, 8))), [slice_level])


def test_plugin_and_data_import_no_torch():
    import subprocess
    import sys

    code = ("import sys, medviewer.labs.lab3.plugin, medviewer.labs.lab3.data; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'PySide6')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- the full architectures: how a bare torchvision ResNet50 checkpoint is read -------------

@pytest.mark.parametrize("conv1", [1, 3, 5])
def test_conv1s_channels_tell_single_slice_from_early_fusion(conv1):
    """A slice enters as 1 channel or 3 (grey repeated): a ResNet50 whose conv1 takes any
    other count reads N slices at once, which only early fusion builds."""
    torch = pytest.importorskip("torch")
    from medviewer.labs.architectures import get

    with torch.device("meta"):
        state = get("lab3.early_fusion").build(slices=conv1, num_classes=3).state_dict()
        fits = []
        for name in ("lab3.single_slice", "lab3.early_fusion"):
            arch = get(name)
            options = arch.options_from_weights(state)
            try:
                built = arch.build(**options).state_dict()
            except ValueError as exc:
                assert "1 channel or 3" in str(exc)
                continue
            assert {k: v.shape for k, v in built.items()} == {k: v.shape for k, v in
                                                                state.items()}
            fits.append(name)
    both = ["lab3.single_slice", "lab3.early_fusion"]
    assert fits == (both if conv1 in (1, 3) else ["lab3.early_fusion"])
