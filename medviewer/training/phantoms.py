"""Demo phantom cases for training: each lab's own generators, drawn as its shipped model's data.

Demo case i is phantom seed DEMO_SEED_BASE + i, patient "DEMO-SYN-<seed>"; none of these seeds
validated a shipped model (see medviewer.training.datasets). Cases stay in memory between
builds (CACHE_BYTES), so a second run of the same job starts at once.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medviewer.training.datasets import Case, resize_labels
from medviewer.training.errors import TrainingError

DEMO_SEED_BASE = 30_000
DEMO_SLICES_PER_PHANTOM = 12  # lab 4: as its shipped recipe (up to half showing a nodule)
DIGITS_PER_CASE = 30  # lab 1: a demo "patient" is 30 training digits
CACHE_BYTES = 512 << 20  # generated phantoms kept in memory between builds

@dataclass
class _Phantom:
    """The few Volume attributes a plugin's preprocess reads."""

    voxels: np.ndarray
    modality: str
    header: dict[str, str] = field(default_factory=dict)
    photometric: str = "MONOCHROME2"


_CACHE: OrderedDict[tuple, Case] = OrderedDict()


def demo_case(ctx: Any, number: int) -> Case:
    """Demo case `number` of the model's lab: phantom seed DEMO_SEED_BASE + number, patient
    "DEMO-SYN-<seed>" (kept in memory)."""
    seed = DEMO_SEED_BASE + number
    m = ctx.manifest
    key = (m.lab, m.plugin, m.input, tuple(m.label_names),
           json.dumps(m.options, sort_keys=True, default=str), seed)
    if key not in _CACHE:
        make = _DEMO.get(m.lab)
        if make is None:
            raise TrainingError(m.folder, f"There are no demo phantoms for lab {m.lab}; train "
                                f"{m.id} on annotated series (data.demo 0).")
        phantom, indices, targets = make(seed, ctx)
        name = f"DEMO-SYN-{seed}"
        _CACHE[key] = ctx.case(name, name, f"demo:{seed}", phantom.voxels, indices, targets,
                               phantom)
        while sum(c.nbytes for c in _CACHE.values()) > CACHE_BYTES and len(_CACHE) > 1:
            _CACHE.popitem(last=False)
    _CACHE.move_to_end(key)
    return _CACHE[key]


def _demo_digits(seed: int, ctx: Any) -> tuple:
    """30 digits of scikit-learn's training part, drawn as the demo study draws its series."""
    from medviewer.core import demo

    images, _, labels, _ = demo.digits_split(demo.DIGITS_SEED)
    block = seed - DEMO_SEED_BASE
    pick = np.random.default_rng(DEMO_SEED_BASE).permutation(len(labels))[
        block * DIGITS_PER_CASE:(block + 1) * DIGITS_PER_CASE]
    if len(pick) < DIGITS_PER_CASE:
        raise TrainingError(ctx.where, f"Lab 1 has {len(labels) // DIGITS_PER_CASE} demo "
                            "cases of training digits; ask for at most that many (data.demo).")
    up = np.ones((demo.DIGITS_UPSCALE, demo.DIGITS_UPSCALE), np.uint16)
    pixels = np.stack([np.kron(np.rint(images[i] * demo.DIGITS_GAIN).astype(np.uint16), up)
                       for i in pick])
    targets = [ctx.demo_label(str(labels[i])) for i in pick]
    return _Phantom(pixels, "OT"), list(range(len(pick))), targets


def _demo_nodule_slices(seed: int, ctx: Any) -> tuple:
    """Lab 2: nodule slices and about twice as many without, as lab2.data picks them."""
    from medviewer.labs.lab2 import data

    case = data.make_case(seed)
    picks = data.training_slices(case, np.random.default_rng([seed, 3]))
    targets = [ctx.demo_label(data.LABELS[int(v)]) for v in case.nodule[picks]]
    return _Phantom(case.hu, "CT", dict(case.header)), [int(k) for k in picks], targets


def _demo_fusion_series(seed: int, ctx: Any) -> tuple:
    """Lab 3: one series, positive (a nodule >= 10 mm) for odd seeds."""
    from medviewer.labs.lab3 import data

    hu, truth = data.random_series(np.random.default_rng([seed, 3]), "train", bool(seed % 2))
    return _Phantom(hu, "CT"), [0], [ctx.demo_label(data.LABELS[data.verdict(truth)])]


def _demo_chest_labels(seed: int, ctx: Any) -> tuple:
    """Lab 4: 12 slices of a random chest (drawn at 256^2 like the shipped model's data)."""
    from medviewer.core.synthetic import CHEST_LABELS
    from medviewer.labs.lab4 import data

    rng = np.random.default_rng([seed, 4])
    hu, labels, _ = data.random_chest(rng, "train")
    picks = data.pick_slices(labels, rng, DEMO_SLICES_PER_PHANTOM)
    lut = np.zeros(256, np.uint8)
    for name, value in CHEST_LABELS.items():
        lut[value] = ctx.demo_label(name)
    maps = resize_labels(lut[labels[picks]], ctx.manifest.input.size, len(ctx.index))
    return _Phantom(hu, "CT"), [int(k) for k in picks], list(maps)


def _demo_heart_film(seed: int, ctx: Any) -> tuple:
    """Lab 5: one PA film with its heart box, drawn exactly as lab5.demo.make_films does."""
    from medviewer.core.synthetic import chest_xray_phantom
    from medviewer.labs.lab5 import demo

    rng = np.random.default_rng([seed, 5])
    source = int(rng.choice(demo.SOURCE_SIZES))
    shift = tuple(rng.uniform(-demo.SHIFT, demo.SHIFT, 2))
    pixels, truth = chest_xray_phantom(source, ctr=float(rng.uniform(*demo.CTR_RANGE)),
                                       heart_shift=shift, seed=seed)
    rows, cols = ctx.manifest.input.size
    box = np.asarray(truth["heart_box"], np.float32) * np.float32([cols, rows] * 2) / source
    label = ctx.demo_label(demo.LABELS[demo.heart_label(truth["ctr"])]) + 1
    target = {"boxes": box[None], "labels": np.array([label], np.int64)}
    return _Phantom(pixels[None], "DX"), [0], [target]


_DEMO = {1: _demo_digits, 2: _demo_nodule_slices, 3: _demo_fusion_series,
         4: _demo_chest_labels, 5: _demo_heart_film}
