"""The built-in demo study: real DICOM files generated on first start, with ground truth.

Why: a fresh install must open something worth looking at without shipping patient data, and
later features (nodule detection, CTR measurement, segmentation, lab 1's digits) need cases
whose answer is known. Generation is deterministic (same bytes every run) and atomic: files
are written into a hidden sibling folder and renamed into place, so an interrupted first start
never leaves half a study behind. A version marker makes a newer generator replace an older
study.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from medviewer.core import synthetic as syn
from medviewer.core.userdata import DATA_DIR_ENV, data_dir  # noqa: F401 - the public names

# demo-3: the images validate clean with dciodvfy (attributes added, pixels unchanged)
DEMO_VERSION = f"demo-3/generator-{syn.GENERATOR_VERSION}"
VERSION_FILE = "VERSION"
TRUTH_FILE = "ground_truth.json"

CHEST = {"PatientName": "DEMO^CHEST", "PatientID": "DEMO-0001", "PatientBirthDate": "19580417",
         "PatientSex": "M", "PatientAge": "066Y", "ReferringPhysicianName": "HOUSE^GREGORY"}
CARDIO = {"PatientName": "DEMO^CARDIO", "PatientID": "DEMO-0002",
          "PatientBirthDate": "19490902", "PatientSex": "F", "PatientAge": "074Y",
          "ReferringPhysicianName": "QUINN^MICHAELA"}
MR = {"PatientName": "DEMO^MR", "PatientID": "DEMO-0003", "PatientBirthDate": "19870630",
      "PatientSex": "F", "PatientAge": "036Y", "ReferringPhysicianName": "GREY^MEREDITH"}
DIGITS = {"PatientName": "DEMO^DIGITS", "PatientID": "DEMO-0004",
          "PatientBirthDate": "20000101", "PatientSex": "O", "PatientAge": "024Y",
          "ReferringPhysicianName": "TEACHING^FILE"}
CT_SHAPE, CT_SPACING = (120, 512, 512), (2.5, 0.7, 0.7)
# Lab 1's digits: scikit-learn's bundled 8 x 8 set, split once here so the demo series shows
# only digits the shipped model never trained on (medviewer.labs.lab1 trains on the rest)
DIGITS_TEST_SIZE, DIGITS_SEED = 0.2, 0
DIGITS_PER_CLASS = 10  # 100 slices: fewer than the CT's 120, which stays the study's main series
DIGITS_UPSCALE, DIGITS_GAIN = 8, 255  # 8 x 8 -> 64 x 64 pixels, 0..16 -> 0..4080 (12 bits)


def demo_dir() -> Path:
    """Where the demo study lives (it may not exist yet: see ensure_demo_study)."""
    return data_dir() / "demo-study"


def is_current(folder: Path) -> bool:
    """True when `folder` holds a complete demo study written by this generator version."""
    try:
        return (folder / VERSION_FILE).read_text(encoding="utf-8").strip() == DEMO_VERSION
    except OSError:
        return False


def ensure_demo_study(base: Path | str | None = None) -> Path:
    """The demo study folder (`base`/demo-study, default demo_dir()), generated when missing.

    Returns at once when a current study is there. Otherwise writes a new one into a hidden
    sibling folder and renames it into place; an outdated study is replaced.
    """
    target = Path(base) / "demo-study" if base is not None else demo_dir()
    if is_current(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".demo-study-", dir=target.parent))
    try:
        generate_demo_study(staging)
        _install(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _install(staging: Path, target: Path) -> None:
    """Rename `staging` to `target`, moving an outdated study out of the way first."""
    old = None
    if target.exists():
        if is_current(target):  # another process finished first
            return
        old = Path(tempfile.mkdtemp(prefix=".demo-study-old-", dir=target.parent))
        target.rename(old / "study")
    try:
        staging.rename(target)
    except OSError:
        if not is_current(target):  # not a race we lost: a real failure
            raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def generate_demo_study(folder: Path) -> dict[str, Any]:
    """Write every demo series and ground_truth.json into `folder`; the marker comes last."""
    folder.mkdir(parents=True, exist_ok=True)
    truth = {"version": DEMO_VERSION, "chest_ct": _chest_ct(folder),
             "chest_dx": _chest_dx(folder, CHEST, "DEMO-0001", enlarged=False),
             "cardio_dx": _chest_dx(folder, CARDIO, "DEMO-0002", enlarged=True),
             "head_mr": _head_mr(folder), "digits": _digits(folder)}
    text = json.dumps(truth, indent=2, sort_keys=True) + "\n"
    (folder / TRUTH_FILE).write_text(text, encoding="utf-8")
    (folder / VERSION_FILE).write_text(DEMO_VERSION + "\n", encoding="utf-8")
    return truth


def _study(patient: dict[str, str], key: str, **attributes: Any) -> dict[str, Any]:
    """Patient + study attributes with UIDs derived from the demo version and `key`."""
    study_uid = syn.make_uid("demo", DEMO_VERSION, key, "study")
    return {**patient, "StudyInstanceUID": study_uid,
            "FrameOfReferenceUID": syn.make_uid("demo", DEMO_VERSION, key, "frame"),
            "SeriesInstanceUID": syn.make_uid("demo", DEMO_VERSION, key, "series"),
            **attributes}


def _chest_ct(folder: Path) -> dict[str, Any]:
    hu, truth = syn.ct_chest_phantom(CT_SHAPE, CT_SPACING, seed=1)
    attributes = _study(
        CHEST, "chest-ct", StudyDate="20240311", StudyTime="084512", AccessionNumber="A240311001",
        StudyDescription="CT CHEST WO CONTRAST", SeriesNumber=2,
        SeriesDescription="CHEST 2.5mm STANDARD", ProtocolName="CHEST ROUTINE",
        BodyPartExamined="CHEST", ConvolutionKernel="STANDARD")
    series = folder / "DEMO-0001" / "CT_CHEST"
    syn.write_series(series, hu, spacing=CT_SPACING, modality="CT", rescale=(1.0, -1024.0),
                     windows=syn.CT_WINDOWS, seed=1, **attributes)
    return {**truth, "folder": series.relative_to(folder).as_posix(),
            "series_instance_uid": attributes["SeriesInstanceUID"],
            "study_instance_uid": attributes["StudyInstanceUID"], "patient_id": CHEST["PatientID"]}


def _chest_dx(folder: Path, patient: dict[str, str], patient_id: str, *, enlarged: bool
              ) -> dict[str, Any]:
    key = f"dx-{patient_id}"
    attributes = _study(
        patient, key, StudyDate="20240305" if not enlarged else "20240118",
        StudyTime="141027" if not enlarged else "103355",
        AccessionNumber="A240305017" if not enlarged else "A240118042", SeriesNumber=1)
    path, truth = syn.write_chest_xray(folder / patient_id / "DX_CHEST", enlarged_heart=enlarged,
                                       size=1024, seed=2 if enlarged else 3, **attributes)
    return {**truth, "file": path.relative_to(folder).as_posix(), "enlarged_heart": enlarged,
            "patient_id": patient_id}


def _head_mr(folder: Path) -> dict[str, Any]:
    attributes = _study(MR, "head-mr", StudyDate="20240220", StudyTime="161240",
                        AccessionNumber="A240220008", SeriesNumber=3)
    series = folder / "DEMO-0003" / "MR_HEAD"
    paths = syn.write_mr_series(series, shape=(24, 256, 256), seed=4, **attributes)
    return {"folder": series.relative_to(folder).as_posix(), "image_count": len(paths),
            "series_instance_uid": attributes["SeriesInstanceUID"],
            "study_instance_uid": attributes["StudyInstanceUID"], "patient_id": MR["PatientID"]}


def digits_split(seed: int = DIGITS_SEED) -> tuple:
    """scikit-learn's digits as (train images, test images, train labels, test labels).

    Images are (n, 8, 8) float64 0..16; the split is stratified. With the default seed the test
    part is what the demo's DIGITS series shows and lab 1's shipped model never saw.
    """
    from sklearn.datasets import load_digits  # imported here: only the digits need it
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    return tuple(train_test_split(digits.images, digits.target, test_size=DIGITS_TEST_SIZE,
                                  random_state=seed, stratify=digits.target))


def _demo_digits() -> tuple:
    """The first DIGITS_PER_CLASS held-out digits of each class, in the test split's order."""
    _, images, _, labels = digits_split()
    keep = np.zeros(len(labels), bool)
    for digit in range(10):
        keep[np.flatnonzero(labels == digit)[:DIGITS_PER_CLASS]] = True
    return images[keep], labels[keep]


def _digits(folder: Path) -> dict[str, Any]:
    images, labels = _demo_digits()
    block = np.ones((DIGITS_UPSCALE, DIGITS_UPSCALE), np.uint16)
    pixels = np.stack([np.kron(np.rint(im * DIGITS_GAIN).astype(np.uint16), block)
                       for im in images])
    attributes = _study(DIGITS, "digits", StudyDate="20240401", StudyTime="090000",
                        AccessionNumber="A240401001", StudyDescription="HANDWRITTEN DIGITS",
                        SeriesNumber=1, SeriesDescription="DIGITS HELD-OUT TEST SET",
                        BodyPartExamined="", ImageLaterality="U")  # no paired body part
    series = folder / "DEMO-0004" / "DIGITS"
    syn.write_series(series, pixels, modality="OT", windows=[(2048.0, 4096.0, "FULL RANGE")],
                     seed=5, **attributes)
    return {"folder": series.relative_to(folder).as_posix(),
            "labels": [int(v) for v in labels], "image_count": len(labels),
            "split": {"source": "sklearn.datasets.load_digits", "test_size": DIGITS_TEST_SIZE,
                      "random_state": DIGITS_SEED, "stratify": True,
                      "per_class": DIGITS_PER_CLASS},
            "series_instance_uid": attributes["SeriesInstanceUID"],
            "study_instance_uid": attributes["StudyInstanceUID"], "patient_id": DIGITS["PatientID"]}
