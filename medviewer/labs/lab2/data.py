"""Lab 2's training data: chest CT phantoms with random nodules, one sample per slice.

numpy only. A slice is positive ("nodule") when a nodule's disc covers at least one of its
voxels, the phantom's own label map says so. Samples go through the viewer's
`prepare_slices`, so the model learns on exactly what the plugin feeds it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medviewer.core import synthetic as syn
from medviewer.inference import preprocess as pp
from medviewer.inference.manifest import InputSpec

LABELS = ("no nodule", "nodule")
INPUT = InputSpec(size=(128, 128), channels=3, context="prev-current-next",
                  window=(-600.0, 1500.0), extras=("age", "sex"), modalities=("CT",))
ROWS = 256  # phantom matrix: half the demo's 512, so 128 x 128 inputs average 2 x 2 blocks
FIELD_MM = (300.0, 320.0, 420.0)  # chest height; smallest and largest in-plane field of view
DIAMETER_MM = (6.0, 20.0)


@dataclass
class Case:
    """One phantom series and its per-slice truth."""

    seed: int
    hu: np.ndarray  # (slices, rows, cols) int16
    nodule: np.ndarray  # bool per slice: a nodule covers a voxel
    lung: np.ndarray  # bool per slice: lung (or nodule) on the slice
    header: dict[str, str]  # PatientAge / PatientSex, as a DICOM header gives them
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)  # slice, row, column mm
    nodules: list[dict[str, Any]] = field(default_factory=list)  # the phantom's truth


def random_nodules(rng: np.random.Generator, count: int) -> tuple[tuple, ...]:
    """Nodule specs for ct_chest_phantom: random lung, height, offsets and 6-20 mm diameter."""
    return tuple((f"N{i + 1}", int(rng.choice((-1, 1))), float(rng.uniform(0.1, 0.9)),
                  float(rng.uniform(-0.5, 0.5)), float(rng.uniform(-0.5, 0.5)),
                  round(float(rng.uniform(*DIAMETER_MM)), 1)) for i in range(count))


def make_case(seed: int) -> Case:
    """A chest phantom ~300 mm high with 2-5 nodules; geometry, noise, age and sex vary."""
    rng = np.random.default_rng([seed, 2])
    slice_mm = float(rng.uniform(2.0, 3.0))
    pixel_mm = float(rng.uniform(*FIELD_MM[1:])) / ROWS
    shape = (round(FIELD_MM[0] / slice_mm), ROWS, ROWS)
    spacing = (slice_mm, pixel_mm, pixel_mm)
    nodules = random_nodules(rng, int(rng.integers(2, 6)))
    hu, truth = syn.ct_chest_phantom(shape, spacing, seed=seed, nodules=nodules,
                                     noise_hu=float(rng.uniform(5.0, 12.0)))
    labels = syn.ct_chest_labels(shape, spacing, nodules=nodules)
    nodule = (labels == syn.CHEST_LABELS["nodule"]).any(axis=(1, 2))
    lung = (labels == syn.CHEST_LABELS["lung"]).any(axis=(1, 2)) | nodule
    header = {"PatientAge": f"{int(rng.integers(25, 90)):03d}Y",
              "PatientSex": str(rng.choice(("M", "F")))}
    return Case(seed, hu, nodule, lung, header, spacing, truth["nodules"])


def training_slices(case: Case, rng: np.random.Generator, negatives_per_positive: float = 2.0,
                    outside: int = 2) -> np.ndarray:
    """Every nodule slice, lung slices without one (about 2 per positive) and a few others."""
    positives = np.flatnonzero(case.nodule)
    lung_only = np.flatnonzero(case.lung & ~case.nodule)
    others = np.flatnonzero(~case.lung)
    wanted = min(len(lung_only), int(negatives_per_positive * len(positives)) + 4)
    picks = [positives, rng.choice(lung_only, wanted, replace=False),
             rng.choice(others, min(outside, len(others)), replace=False)]
    return np.sort(np.concatenate(picks)).astype(int)


def samples(case: Case, indices: np.ndarray, spec: InputSpec = INPUT
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images (n, 3, rows, cols) float32, extras (n, 2) float32, targets (n,) int64)."""
    images = pp.prepare_slices(case.hu, [int(k) for k in indices], spec)
    extras = np.repeat(pp.extras_vector(case.header, spec.extras)[None], len(indices), axis=0)
    return images, extras, case.nodule[indices].astype(np.int64)


def build_set(seeds: list[int], *, train: bool, spec: InputSpec = INPUT
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Samples of many phantoms: training picks slices, validation takes every lung slice.

    Images are stored as float16 to halve the memory; the values are 0..1 after windowing.
    """
    images, extras, targets = [], [], []
    for seed in seeds:
        case = make_case(seed)
        rng = np.random.default_rng([seed, 3])
        chosen = training_slices(case, rng) if train else np.flatnonzero(case.lung)
        x, e, y = samples(case, chosen, spec)
        images.append(x.astype(np.float16))
        extras.append(e)
        targets.append(y)
    return np.concatenate(images), np.concatenate(extras), np.concatenate(targets)
