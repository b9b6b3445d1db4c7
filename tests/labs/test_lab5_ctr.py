"""Lab 5's cardiothoracic ratio: the thoracic width measured on the film against the phantom's
truth, the CTR of the shipped heart detector on the demo films, and the verdict by view."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from medviewer.core.synthetic import chest_xray_phantom
from medviewer.inference import open_model
from medviewer.inference.results import Box
from medviewer.labs.lab5.ctr import otsu_threshold, thoracic_width, verdict
from medviewer.labs.lab5.plugin import CTR_NAME, ctr_measurements

ROOT = Path(__file__).resolve().parents[2]
DETECTOR = ROOT / "models" / "lab5-heart-frcnn"
CPU = ["CPUExecutionProvider"]


def within_class_spread(values: np.ndarray, threshold: float) -> float:
    low, high = values[values < threshold], values[values >= threshold]
    return float(low.var() * len(low) + high.var() * len(high))


def test_otsu_threshold_agrees_with_the_definition() -> None:
    """Otsu's threshold is the split with the least within-class variance: no split of the
    sorted values, tried one by one, does better than a hair."""
    rng = np.random.default_rng(0)
    values = np.r_[rng.normal(0.2, 0.05, 300), rng.normal(0.7, 0.1, 200)]
    v = np.sort(values)
    best = min(within_class_spread(values, t) for t in (v[1:] + v[:-1]) / 2)
    threshold = otsu_threshold(values)
    assert 0.3 < threshold < 0.6
    assert within_class_spread(values, threshold) <= best * 1.01


@pytest.mark.parametrize(("size", "seeds"), [(256, range(6)), (512, range(3)), (1024, [7])])
def test_thoracic_width_matches_the_phantom(size: int, seeds: range) -> None:
    for seed in seeds:
        film, truth = chest_xray_phantom(size, seed=seed, enlarged_heart=bool(seed % 2))
        thorax = thoracic_width(film)
        assert thorax is not None
        assert thorax.width == pytest.approx(truth["thorax_width_px"], rel=0.015)
        bottom = truth["heart_box"][3]  # the lungs are widest above the heart's base
        assert size * 0.2 < thorax.row < bottom and thorax.left < size / 2 < thorax.right


def test_thoracic_width_ignores_exposure_and_monochrome1() -> None:
    film, truth = chest_xray_phantom(512, seed=11)
    darker = (film.astype(np.float32) * 0.4 + 30).astype(np.uint16)  # another exposure
    stored_inverted = 4095 - film  # MONOCHROME1
    widths = [thoracic_width(darker).width, thoracic_width(stored_inverted, inverted=True).width]
    for width in widths:
        assert width == pytest.approx(truth["thorax_width_px"], rel=0.015)


def test_a_film_without_lungs_gives_no_ctr() -> None:
    blank = np.full((256, 256), 1200, np.uint16)
    assert thoracic_width(blank) is None
    assert ctr_measurements(blank, Box(90, 120, 170, 200, "normal heart", 0.9)) == []


def test_verdict_follows_the_view() -> None:
    assert "suggests cardiomegaly" in verdict(0.56, "PA")
    assert "within normal limits" in verdict(0.44, "PA")
    assert "overstated" in verdict(0.56, "AP") and "cardiomegaly" in verdict(0.56, "AP")
    assert "view not recorded" in verdict(0.56, "")


@pytest.fixture(scope="module")
def films(demo_study: Path):
    from medviewer.core.dicom import load_series, scan

    truth = json.loads((demo_study / "ground_truth.json").read_text())
    by_uid = {truth[k]["series_instance_uid"]: truth[k] for k in ("chest_dx", "cardio_dx")}
    return [(load_series(s), by_uid[s.series_instance_uid])
            for s in scan(demo_study).all_series() if s.series_instance_uid in by_uid]


@pytest.mark.skipif(not DETECTOR.is_dir(), reason="lab5 demo model not built")
def test_shipped_detector_gives_the_demo_films_ctr_within_003(films) -> None:
    model = open_model(DETECTOR, CPU)
    assert sorted(t["enlarged_heart"] for _, t in films) == [False, True]
    for volume, truth in films:
        result = model.run(volume)
        (ctr,) = result.measurements
        assert (ctr.name, ctr.unit, ctr.slice_index) == (CTR_NAME, "ratio", 0)
        assert ctr.value == pytest.approx(truth["ctr"], abs=0.03)
        expected = "suggests cardiomegaly" if truth["enlarged_heart"] else "within normal"
        assert ctr.verdict.startswith("PA film") and expected in ctr.verdict
        heart, thorax = ctr.lines  # drawn across the heart box and the thorax
        assert heart[1][0] - heart[0][0] == pytest.approx(result.boxes[0].width)
        assert thorax[1][0] - thorax[0][0] == pytest.approx(truth["thorax_width_px"], rel=0.015)


@pytest.mark.skipif(not DETECTOR.is_dir(), reason="lab5 demo model not built")
def test_an_ap_film_is_read_with_its_caveat(films, tmp_path) -> None:
    import pydicom

    volume, _ = films[0]
    ds = pydicom.dcmread(volume.sources[0].path)
    ds.ViewPosition = "AP"
    path = tmp_path / "ap.dcm"
    ds.save_as(path)
    ap = SimpleNamespace(voxels=volume.voxels, photometric=volume.photometric, series=None,
                         modality=volume.modality,
                         sources=[SimpleNamespace(path=str(path), sop_instance_uid="1.2")])
    (ctr,) = open_model(DETECTOR, CPU).run(ap).measurements
    assert ctr.verdict.startswith("AP film") and "overstated" in ctr.verdict


@pytest.mark.skipif(not DETECTOR.is_dir(), reason="lab5 demo model not built")
def test_medviewer_infer_writes_the_ctr_in_its_csv_and_json(films, tmp_path) -> None:
    import csv

    from medviewer.inference.outputs import write_result_files

    volume, truth = films[0]
    result = open_model(DETECTOR, CPU).run(volume)
    json_path, csv_path = write_result_files(result, tmp_path, "film")
    (measured,) = json.loads(json_path.read_text())["measurements"]
    assert measured["value"] == pytest.approx(truth["ctr"], abs=0.03)
    assert measured["sop_instance_uid"] == truth["sop_instance_uid"]
    rows = list(csv.DictReader(csv_path.open(encoding="utf-8")))
    assert [r["measurement"] for r in rows] == [""] * len(result.boxes) + [CTR_NAME]
    assert float(rows[-1]["value"]) == measured["value"] and rows[-1]["verdict"]


@pytest.mark.skipif(not DETECTOR.is_dir(), reason="lab5 demo model not built")
def test_medviewer_infer_prints_the_ctr(demo_study, films, tmp_path, capsys) -> None:
    from medviewer.cli import main

    volume, truth = films[0]
    folder = Path(volume.sources[0].path).parent
    assert main(["infer", "--model", "lab5-heart-frcnn", str(folder), "--out",
                 str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    shown = float(printed.split("cardiothoracic ratio ")[1][:4])
    assert shown == pytest.approx(truth["ctr"], abs=0.03)


@pytest.mark.skipif(not DETECTOR.is_dir(), reason="lab5 demo model not built")
def test_ctr_within_003_on_held_out_films_of_every_size_and_ratio() -> None:
    """The detector's held-out phantoms (own CTRs 0.35-0.70, shifted hearts, 256-1024 px)."""
    from medviewer.labs.lab5 import demo

    model = open_model(DETECTOR, CPU)
    sizes = set()
    for seed in demo.VALIDATION_SEEDS[:10]:
        rng = np.random.default_rng([seed, 5])  # as demo.make_films draws each film
        size = int(rng.choice(demo.SOURCE_SIZES))
        shift = tuple(rng.uniform(-demo.SHIFT, demo.SHIFT, 2))
        film, truth = chest_xray_phantom(size, ctr=float(rng.uniform(*demo.CTR_RANGE)),
                                         heart_shift=shift, seed=seed)
        volume = SimpleNamespace(voxels=film[None], photometric="MONOCHROME2", modality="DX",
                                 sources=[], series=None)
        (ctr,) = model.run(volume).measurements
        assert ctr.value == pytest.approx(truth["ctr"], abs=0.03), seed
        sizes.add(size)
    assert len(sizes) > 1
