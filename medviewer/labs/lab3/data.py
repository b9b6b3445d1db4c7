"""Series samples for the fusion models: random chest CT phantoms and their verdicts (numpy).

The question: does the series hold a nodule of 10 mm or more? Positive series get one or two
nodules of 10-25 mm (sometimes with small ones too); negative ones none, or only nodules of
3-7 mm, so the models must judge size and not just 'something round'. The verdict is read
from the phantom's truth (nodules that did not fit in the lung are left out of it). Samples
pass through the plugin's `series_sample`, exactly as in the viewer.
"""

from __future__ import annotations

import numpy as np

from medviewer.core.synthetic import ct_chest_phantom
from medviewer.inference.manifest import InputSpec
from medviewer.labs.lab3.plugin import series_sample
from medviewer.labs.lab4.data import SEED_RANGES

LABELS = ("no nodule >= 10 mm", "nodule >= 10 mm")
COLOURS = ("#40c040", "#ff3030")
THRESHOLD_MM = 10.0
SPEC = InputSpec(size=(128, 128), channels=12, context="volume:12", window=(-600.0, 1500.0),
                 mean=(0.5,), std=(0.3,), modalities=("CT",))
GRID = 256  # drawn at 256^2 and block-averaged to 128^2 (partial volume, like the viewer)
DEMO_EXTENT_MM = 297.5


def _nodule(rng: np.random.Generator, name: str, diameters: tuple[float, float]) -> tuple:
    return (name, int(rng.choice([-1, 1])), float(rng.uniform(0.12, 0.85)),
            float(rng.uniform(-0.45, 0.45)), float(rng.uniform(-0.45, 0.45)),
            float(rng.uniform(*diameters)))


def nodules_for(rng: np.random.Generator, positive: bool) -> tuple[tuple, ...]:
    """Nodule specs for a positive (1-2 of 10-25 mm, 0-2 small) or negative series."""
    small = int(rng.integers(0, 3)) if positive or rng.random() < 0.5 else 0
    large = int(rng.integers(1, 3)) if positive else 0
    return tuple([_nodule(rng, f"large{i}", (THRESHOLD_MM, 25.0)) for i in range(large)]
                 + [_nodule(rng, f"small{i}", (3.0, 7.0)) for i in range(small)])


def verdict(truth: dict) -> int:
    """1 when the phantom holds a nodule of THRESHOLD_MM or more, else 0."""
    return int(any(n["diameter_mm"] >= THRESHOLD_MM for n in truth["nodules"]))


def random_series(rng: np.random.Generator, split: str, positive: bool
                  ) -> tuple[np.ndarray, dict]:
    """(HU int16 volume, truth) of a random chest phantom meant to be positive or not."""
    slices = int(rng.integers(40, 91))
    dz = DEMO_EXTENT_MM * rng.uniform(0.85, 1.15) / (slices - 1)
    d = 0.7 * 512 / GRID * rng.uniform(0.85, 1.15)
    return ct_chest_phantom((slices, GRID, GRID), (dz, d, d),
                            seed=int(rng.integers(*SEED_RANGES[split])),
                            noise_hu=float(rng.uniform(4, 25)), nodules=nodules_for(rng, positive))


def make_set(split: str, count: int, seed: int = 0, spec: InputSpec = SPEC
             ) -> tuple[np.ndarray, np.ndarray]:
    """(samples float16 (count, N, rows, cols), verdicts int64 (count,)), about half positive.

    float16 halves the memory of a few hundred samples; models get float32 batches.
    """
    rng = np.random.default_rng([seed, 3, list(SEED_RANGES).index(split)])
    samples = np.empty((count, spec.channels, *spec.size), np.float16)
    verdicts = np.empty(count, np.int64)
    for i in range(count):
        hu, truth = random_series(rng, split, positive=bool(i % 2))
        samples[i] = series_sample(hu, spec)
        verdicts[i] = verdict(truth)
    return samples, verdicts
