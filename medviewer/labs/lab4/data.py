"""Training and validation slices for the chest CT segmenter, from random phantoms (numpy).

Each phantom varies what the demo CT holds fixed: the nodules (0-4, 4-25 mm, anywhere in the
lungs), the noise, the pixel size and the number of slices. Images pass through the same
`prepare_slices` the viewer uses, so the model sees in training what it sees on a real series.
Training and validation phantoms draw their seeds from disjoint ranges.
"""

from __future__ import annotations

import numpy as np

from medviewer.core.synthetic import CHEST_LABELS, ct_chest_labels, ct_chest_phantom
from medviewer.inference import preprocess as pp
from medviewer.inference.manifest import InputSpec

LABELS = tuple(sorted(CHEST_LABELS, key=CHEST_LABELS.get))  # background, body, lung, ...
COLOURS = {"background": "#000000", "body": "#e0a060", "lung": "#40a0ff", "nodule": "#ff2020",
           "spine": "#f0f0a0"}
SPEC = InputSpec(size=(128, 128), channels=1, context="single", window=(-300.0, 2000.0),
                 mean=(0.5,), std=(0.25,), modalities=("CT",))
GRID = 256  # phantoms are drawn at 256^2 and block-averaged to the input size (partial volume)
DEMO_EXTENT_MM = 297.5  # the demo CT: 120 slices of 2.5 mm
SEED_RANGES = {"train": (0, 2**30), "validation": (2**30, 2**31)}
# ties in the 2x2 majority vote go to the rarer, smaller structure
_TIE_PRIORITY = {"background": 0, "body": 1, "lung": 2, "spine": 3, "nodule": 4}


def random_nodules(rng: np.random.Generator, max_count: int = 4,
                   diameters: tuple[float, float] = (4.0, 25.0)) -> tuple[tuple, ...]:
    """Nodule specs as `ct_chest_phantom` takes them; ones that leave the lung are dropped."""
    count = int(rng.integers(0, max_count + 1))
    return tuple((f"n{i}", int(rng.choice([-1, 1])), float(rng.uniform(0.12, 0.85)),
                  float(rng.uniform(-0.45, 0.45)), float(rng.uniform(-0.45, 0.45)),
                  float(rng.uniform(*diameters))) for i in range(count))


def random_geometry(rng: np.random.Generator, grid: int) -> tuple[tuple, tuple]:
    """(shape, spacing): 36-60 slices over 250-340 mm, pixels 0.6-0.8 mm at 512^2 equivalent."""
    slices = int(rng.integers(36, 61))
    dz = DEMO_EXTENT_MM * rng.uniform(0.85, 1.15) / (slices - 1)
    d = 0.7 * 512 / grid * rng.uniform(0.85, 1.15)
    return (slices, grid, grid), (dz, d, d)


def random_chest(rng: np.random.Generator, split: str, grid: int = GRID,
                 nodules: tuple[tuple, ...] | None = None
                 ) -> tuple[np.ndarray, np.ndarray, dict]:
    """(HU int16, labels uint8, truth) of one random phantom drawn for `split`."""
    shape, spacing = random_geometry(rng, grid)
    nodules = random_nodules(rng) if nodules is None else nodules
    seed = int(rng.integers(*SEED_RANGES[split]))
    hu, truth = ct_chest_phantom(shape, spacing, seed=seed, noise_hu=float(rng.uniform(4, 30)),
                                 nodules=nodules)
    kept = {n["label"] for n in truth["nodules"]}
    labels = ct_chest_labels(shape, spacing, nodules=[n for n in nodules if n[0] in kept])
    return hu, labels, truth


def shrink_labels(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Majority label of each block (integer shrink factor), ties to the rarer structure."""
    s, rows, cols = labels.shape
    fr, fc = rows // size[0], cols // size[1]
    blocks = labels.reshape(s, size[0], fr, size[1], fc)
    best = np.zeros((s, *size), np.float32)
    out = np.zeros((s, *size), np.uint8)
    for name, value in CHEST_LABELS.items():
        share = (blocks == value).mean(axis=(2, 4), dtype=np.float32)
        share += np.float32(1e-3 * _TIE_PRIORITY[name])
        better = share > best
        out[better], best[better] = value, share[better]
    return out


def pick_slices(labels: np.ndarray, rng: np.random.Generator, count: int) -> np.ndarray:
    """Up to half the picks from slices showing a nodule (a tiny class), the rest at random."""
    nodule = np.flatnonzero((labels == CHEST_LABELS["nodule"]).any(axis=(1, 2)))
    with_nodule = rng.permutation(nodule)[:count // 2]
    rest = np.setdiff1d(np.arange(labels.shape[0]), with_nodule)
    others = rng.choice(rest, size=min(count - len(with_nodule), len(rest)), replace=False)
    return np.sort(np.concatenate([with_nodule, others]).astype(int))


def make_set(split: str, volumes: int, slices_per_volume: int | None, seed: int = 0,
             spec: InputSpec = SPEC) -> tuple[np.ndarray, np.ndarray]:
    """(images float32 (n, channels, rows, cols), labels uint8 (n, rows, cols)) for `split`.

    slices_per_volume None keeps every slice (validation: Dice over whole volumes).
    """
    rng = np.random.default_rng([seed, list(SEED_RANGES).index(split)])
    images, targets = [], []
    for _ in range(volumes):
        hu, labels, _ = random_chest(rng, split)
        picks = (np.arange(hu.shape[0]) if slices_per_volume is None
                 else pick_slices(labels, rng, slices_per_volume))
        images.append(pp.prepare_slices(hu, list(picks), spec))
        targets.append(shrink_labels(labels[picks], spec.size))
    return np.concatenate(images), np.concatenate(targets)
