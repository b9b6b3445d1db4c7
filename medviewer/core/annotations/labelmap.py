"""Editable label maps: a uint8 array on a series' voxel grid plus the table naming its values.

    labelmap = LabelMap.for_volume(volume)
    lung = labelmap.table.add("lung")          # value 1, colour from the palette, SNOMED codes
    labelmap.array[k, r, c] = lung.value

Value 0 is the background and never has a label. Each label carries what a DICOM SEG needs
(name, colour, SNOMED category and type as plain (scheme, value, meaning) tuples, so the table
copies and compares cheaply for undo; how it was made: MANUAL, AUTOMATIC or SEMIAUTOMATIC, and
the model that made it) and what the viewer needs (visible). A label drawn by hand is MANUAL;
accepting a model's prediction makes its labels AUTOMATIC by that model; an edit of an
AUTOMATIC label's voxels (History) makes it SEMIAUTOMATIC. The map keeps the
voxel spacing in mm in array order (slice, row, column) because the tools size brushes in mm.
Opacity and fill/outline are plain display settings the overlay reads; no Qt here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from medviewer.core.annotations.seg import (
    ALGORITHM_TYPES,
    AUTOMATIC,
    MANUAL,
    SEMIAUTOMATIC,
    Algorithm,
    AnnotationError,
    Origin,
    property_codes,
    voxel_counts,
)

Code = tuple[str, str, str]  # (coding scheme designator, code value, code meaning)
MAX_LABEL = 255
DISPLAY_MODES = ("fill", "outline")

# Distinct, colour-blind-friendlier colours first (Okabe-Ito, then Tableau), cycled.
PALETTE = ("#e69f00", "#56b4e9", "#009e73", "#f0e442", "#0072b2", "#d55e00", "#cc79a7",
           "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")


def _as_tuple(code: Any) -> Code:
    return (str(code.scheme_designator), str(code.value), str(code.meaning))


def default_codes(name: str) -> tuple[Code, Code]:
    """SNOMED (category, type) for a label name, as seg.property_codes picks them."""
    category, kind = property_codes(name)
    return _as_tuple(category), _as_tuple(kind)


def _check_colour(colour: str) -> str:
    text = colour.strip().lower()
    if len(text) != 7 or text[0] != "#" or any(ch not in "0123456789abcdef" for ch in text[1:]):
        raise AnnotationError(None, f"Label colour {colour!r} is not of the form #rrggbb.")
    return text


@dataclass
class Label:
    """One structure of the map: value in the array, name, colour and SEG codes."""

    value: int
    name: str
    colour: str = "#e69f00"
    visible: bool = True
    category: Code | None = None  # SNOMED segmented property category; None: from the name
    type: Code | None = None  # SNOMED segmented property type; None: from the name
    algorithm_type: str = MANUAL  # the SEG's SegmentAlgorithmType: how the voxels were made
    algorithm: Algorithm | None = None  # (model id, version) for AUTOMATIC / SEMIAUTOMATIC

    def __post_init__(self) -> None:
        if not 1 <= int(self.value) <= MAX_LABEL:
            raise AnnotationError(None, f"Label value {self.value} is outside 1..{MAX_LABEL} "
                                  "(0 is the background).")
        if not self.name.strip():
            raise AnnotationError(None, "A label needs a name.")
        self.value = int(self.value)
        self.colour = _check_colour(self.colour)
        if self.category is None or self.type is None:
            category, kind = default_codes(self.name)
            self.category = self.category or category
            self.type = self.type or kind
        self._check_origin()

    def _check_origin(self) -> None:
        if self.algorithm_type not in ALGORITHM_TYPES:
            raise AnnotationError(None, f"Label {self.name!r}: {self.algorithm_type!r} is not "
                                  f"one of {', '.join(ALGORITHM_TYPES)}.")
        if self.algorithm_type == MANUAL:
            self.algorithm = None
        elif not self.algorithm:
            raise AnnotationError(None, f"Label {self.name!r} is {self.algorithm_type} but "
                                  "names no model.")
        else:
            self.algorithm = (str(self.algorithm[0]), str(self.algorithm[1]))

    @property
    def origin(self) -> Origin:
        return self.algorithm_type, self.algorithm

    @property
    def origin_text(self) -> str:
        """How the label was made, in the reader's words (the dock's tooltip)."""
        if self.algorithm_type == MANUAL or not self.algorithm:
            return "Drawn by hand (saved as MANUAL)"
        model = f"{self.algorithm[0]} {self.algorithm[1]}"
        if self.algorithm_type == AUTOMATIC:
            return f"{model}'s output, untouched (saved as AUTOMATIC)"
        return f"{model}'s output, corrected by hand (saved as SEMIAUTOMATIC)"

    def made_by(self, algorithm: Algorithm) -> Label:
        """This label as a model's untouched output (AUTOMATIC by `algorithm`)."""
        return replace(self, algorithm_type=AUTOMATIC, algorithm=tuple(algorithm))

    def corrected(self) -> Label:
        """This label after a person edited its voxels: SEMIAUTOMATIC if a model made it."""
        if self.algorithm_type != AUTOMATIC:
            return self
        return replace(self, algorithm_type=SEMIAUTOMATIC)


@dataclass
class LabelTable:
    """The labels of a map, keyed by value; names are unique (case-insensitive)."""

    labels: dict[int, Label] = field(default_factory=dict)

    def add(self, name: str, colour: str | None = None, value: int | None = None,
            **fields: Any) -> Label:
        """A new label with the lowest free value (or `value`) and the next palette colour;
        `fields`: category, type, algorithm_type, algorithm (see Label)."""
        if self.by_name(name) is not None:
            raise AnnotationError(None, f"There is already a label named {name!r}.")
        value = self._free_value() if value is None else int(value)
        if value in self.labels:
            raise AnnotationError(None, f"Label value {value} is already {self[value].name!r}.")
        colour = colour or PALETTE[(value - 1) % len(PALETTE)]
        label = Label(value, name.strip(), colour, **fields)
        self.labels[value] = label
        self.labels = dict(sorted(self.labels.items()))
        return label

    def _free_value(self) -> int:
        for value in range(1, MAX_LABEL + 1):
            if value not in self.labels:
                return value
        raise AnnotationError(None, f"The label map is full ({MAX_LABEL} labels).")

    def remove(self, value: int) -> Label:
        """Take a label out of the table (the caller clears its voxels)."""
        return self.labels.pop(int(value))

    def by_name(self, name: str) -> Label | None:
        key = name.strip().lower()
        return next((lab for lab in self.labels.values() if lab.name.lower() == key), None)

    def __getitem__(self, value: int) -> Label:
        return self.labels[int(value)]

    def __contains__(self, value: object) -> bool:
        return value in self.labels

    def __iter__(self) -> Iterator[Label]:
        return iter(self.labels.values())

    def __len__(self) -> int:
        return len(self.labels)

    def seg_names(self) -> list[str]:
        """Names indexed by value, [0] the background, as write_seg's `labels` takes them.

        A gap in the values gets a placeholder name so that value v stays segment v.
        """
        top = max(self.labels, default=0)
        return ["background"] + [self.labels[v].name if v in self.labels else f"label {v}"
                                 for v in range(1, top + 1)]

    def seg_colours(self) -> list[str]:
        top = max(self.labels, default=0)
        return ["#000000"] + [self.labels[v].colour if v in self.labels else "#808080"
                              for v in range(1, top + 1)]

    def seg_codes(self) -> dict[int, tuple[Code, Code]]:
        """value -> SNOMED (category, type), as write_seg's `codes` takes them."""
        return {v: (lab.category, lab.type) for v, lab in self.labels.items()
                if lab.category and lab.type}

    def seg_origins(self) -> dict[int, Origin]:
        """value -> (SegmentAlgorithmType, model), as write_seg's `origins` takes them."""
        return {v: lab.origin for v, lab in self.labels.items()}

    def mark_corrected(self, values: Iterable[int]) -> None:
        """The labels of `values` had voxels edited by a person: AUTOMATIC -> SEMIAUTOMATIC.
        New Label objects, so undo items holding the old ones stay as they were."""
        for value in values:
            label = self.labels.get(int(value))
            if label is not None and label.algorithm_type == AUTOMATIC:
                self.labels[int(value)] = label.corrected()

    @classmethod
    def from_names(cls, names: list[str] | tuple[str, ...]) -> LabelTable:
        """A table from names indexed by value ([0], the background, is skipped)."""
        table = cls()
        for value, name in enumerate(names[1:], start=1):
            table.add(name, value=value)
        return table


def spacing_from_affine(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size in mm in array order (slice, row, column); 1 mm where an axis has none."""
    sizes = [float(np.linalg.norm(np.asarray(affine)[:3, c])) for c in (2, 1, 0)]
    return tuple(s if s > 0 else 1.0 for s in sizes)  # type: ignore[return-value]


@dataclass
class LabelMap:
    """A uint8 label array on a volume's (slices, rows, columns) grid, and how to show it."""

    array: np.ndarray
    table: LabelTable = field(default_factory=LabelTable)
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)  # mm: slice, row, column
    opacity: float = 0.5
    display: str = "fill"  # "fill" or "outline"
    outline_width: int = 1  # pixels, for the outline display
    series_instance_uid: str = ""  # of the source series the map was drawn on

    def __post_init__(self) -> None:
        if not isinstance(self.array, np.ndarray) or self.array.ndim != 3:
            raise AnnotationError(None, "A label map is a 3D array (slices, rows, columns).")
        if self.array.dtype != np.uint8:
            raise AnnotationError(None, f"A label map is uint8, not {self.array.dtype}.")
        self.spacing = tuple(float(s) for s in self.spacing)  # type: ignore[assignment]
        if len(self.spacing) != 3 or min(self.spacing) <= 0:
            raise AnnotationError(None, f"Voxel spacing {self.spacing} must be 3 sizes > 0 mm.")
        if self.display not in DISPLAY_MODES:
            raise AnnotationError(None, f"Display {self.display!r} is not one of {DISPLAY_MODES}.")
        self.opacity = min(1.0, max(0.0, float(self.opacity)))

    @classmethod
    def for_volume(cls, volume: Any, table: LabelTable | None = None) -> LabelMap:
        """An empty map on a loaded 3D grey-level Volume's grid, spacing from its affine."""
        voxels = volume.voxels
        if getattr(volume, "is_4d", False) or getattr(volume, "is_colour", False):
            raise AnnotationError(None, "Label maps are drawn on 3D grey-level series; pick "
                                  "one time point or a grey-level series.")
        if voxels.ndim == 2:
            voxels = voxels[None]
        series = getattr(volume, "series", None)
        return cls(np.zeros(voxels.shape, np.uint8), table or LabelTable(),
                   spacing_from_affine(volume.affine),
                   series_instance_uid=getattr(series, "series_instance_uid", "") or "")

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.array.shape  # type: ignore[return-value]

    def visible_values(self) -> list[int]:
        return [lab.value for lab in self.table if lab.visible]

    def voxel_counts(self) -> dict[int, int]:
        """Voxels per label value present in the map (background left out)."""
        return {v: int(n) for v, n in enumerate(voxel_counts(self.array)) if v and n}

    def volume_ml(self, value: int) -> float:
        """Volume of one label in millilitres (cm3)."""
        voxel_mm3 = float(np.prod(self.spacing))
        return float(np.count_nonzero(self.array == value)) * voxel_mm3 / 1000.0
