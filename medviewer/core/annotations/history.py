"""Undo / redo for a label map that stores only what an edit changed (napari-style atoms).

    history = History(labelmap)
    with history.stroke("brush"):          # every dab inside is ONE undo item
        for centre in drag:
            brush(labelmap, history, centre, 5.0, value=1)
    history.undo(); history.redo()

An item holds the bounding box of the voxels a stroke changed and the values of the OTHER state
there (the old values after the edit, the new ones after an undo): undo and redo both swap the
stored block with the map, so an item costs one copy of its box, never a snapshot of the volume.

While a stroke runs, `touch(box)` is called before each write. The stroke keeps one buffer of
pre-stroke values over the union of the boxes touched so far: when a dab reaches outside it,
the buffer grows by reading the new voxels from the map, which no dab of this stroke has
written yet. A voxel's saved old value is therefore the one from before its first touch, and an
overlapping dab never overwrites it. On commit the box shrinks to the voxels that really
changed (an eraser over empty space leaves no item at all).

A stroke is a person's correction unless it says otherwise (`keeps_provenance=True`: accepting
a prediction, importing a SEG, recovering autosaved work): on commit, every AUTOMATIC label
whose voxels it changed (painted over or painted with) becomes SEMIAUTOMATIC, in the same undo
item, so undoing the edit makes the label the model's untouched output again.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from medviewer.core.annotations.labelmap import Label, LabelMap

Box = tuple[slice, slice, slice]
DEFAULT_CAP_BYTES = 256 * 2**20


def clip_box(box: Box, shape: tuple[int, ...]) -> Box | None:
    """`box` limited to an array of `shape` (concrete starts/stops), None when it is empty."""
    out = []
    for s, n in zip(box, shape, strict=True):
        start, stop = max(0, s.start or 0), min(n, n if s.stop is None else s.stop)
        if stop <= start:
            return None
        out.append(slice(start, stop))
    return tuple(out)  # type: ignore[return-value]


def union_box(a: Box | None, b: Box | None) -> Box | None:
    """The smallest box holding both (either may be None)."""
    if a is None or b is None:
        return a if b is None else b
    return tuple(slice(min(x.start, y.start), max(x.stop, y.stop))
                 for x, y in zip(a, b, strict=True))  # type: ignore[return-value]


def mask_box(mask: np.ndarray, origin: tuple[int, ...] = (0, 0, 0)) -> Box | None:
    """Box of the True voxels of `mask`, shifted by `origin` (the mask's place in the map)."""
    out = []
    for axis in range(mask.ndim):
        others = tuple(a for a in range(mask.ndim) if a != axis)
        hit = np.flatnonzero(mask.any(axis=others))
        if hit.size == 0:
            return None
        out.append(slice(origin[axis] + int(hit[0]), origin[axis] + int(hit[-1]) + 1))
    return tuple(out)  # type: ignore[return-value]


def box_voxels(box: Box) -> int:
    return int(np.prod([s.stop - s.start for s in box]))


def _inner(outer: Box, inner: Box) -> Box:
    """`inner` in the coordinates of a block cut out at `outer`."""
    return tuple(slice(i.start - o.start, i.stop - o.start)
                 for o, i in zip(outer, inner, strict=True))  # type: ignore[return-value]


def _with_slack(current: Box | None, needed: Box, shape: tuple[int, ...]) -> Box:
    """`needed` grown by half its size on each side where it outgrew `current`.

    A long drag then copies its buffer O(log n) times instead of once per dab; the extra
    voxels are untouched, so their pre-stroke values are right, and commit trims them.
    """
    if current is None:
        return needed
    out = []
    for cur, need, n in zip(current, needed, shape, strict=True):
        extra = (need.stop - need.start) // 2
        start = need.start - extra if need.start < cur.start else need.start
        stop = need.stop + extra if need.stop > cur.stop else need.stop
        out.append(slice(max(0, start), min(n, stop)))
    return tuple(out)  # type: ignore[return-value]


@dataclass
class Edit:
    """One undo item: the box it changed and the values of the other state there."""

    name: str
    box: Box | None
    stored: np.ndarray | None  # old values while done, new values while undone
    # the other state of the labels this item added, removed or changed (None: absent);
    # only those, so a rename made later to another label survives undoing this item
    labels: dict[int, Label | None] | None = None

    def swap(self, labelmap: LabelMap) -> Box | None:
        """Exchange the stored state with the map's (undo and redo are the same move)."""
        if self.box is not None and self.stored is not None:
            current = labelmap.array[self.box].copy()
            labelmap.array[self.box] = self.stored
            self.stored = current
        if self.labels is not None:
            table = labelmap.table.labels
            for value, other in list(self.labels.items()):
                self.labels[value] = table.pop(value, None)
                if other is not None:
                    table[value] = other
            # reassign, not a new table: whoever holds labelmap.table sees the change
            labelmap.table.labels = dict(sorted(table.items()))
        return self.box

    def nbytes(self) -> int:
        return 0 if self.stored is None else int(self.stored.nbytes)


@dataclass
class _Pending:
    name: str
    table: Any
    box: Box | None = None
    old: np.ndarray | None = None
    keeps_provenance: bool = False


class History:
    """Undo and redo stacks of one label map; the oldest items go when `cap_bytes` is passed."""

    def __init__(self, labelmap: LabelMap, cap_bytes: int = DEFAULT_CAP_BYTES) -> None:
        self.labelmap = labelmap
        self.cap_bytes = int(cap_bytes)
        self._undo: list[Edit] = []
        self._redo: list[Edit] = []
        self._pending: _Pending | None = None
        self._depth = 0
        self._dropped = 0  # items the cap (or clear) removed: `position` still counts them

    # -- recording ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def stroke(self, name: str, *, keeps_provenance: bool = False) -> Iterator[History]:
        """Group every edit inside into one undo item; nested strokes join the outer one.

        The item is committed even when the block raises, so a half-done edit stays undoable.
        `keeps_provenance` (of the outer stroke): not a correction, AUTOMATIC labels stay so.
        """
        if self._depth == 0:
            self._pending = _Pending(name, copy.deepcopy(self.labelmap.table),
                                     keeps_provenance=keeps_provenance)
        self._depth += 1
        try:
            yield self
        finally:
            self._depth -= 1
            if self._depth == 0:
                self._commit()

    def touch(self, box: Box) -> Box | None:
        """Call before writing into `box` of the map; returns the box clipped to the map."""
        if self._pending is None:
            raise RuntimeError("label map edits must run inside `with history.stroke(...)`")
        box = clip_box(box, self.labelmap.array.shape)
        pending = self._pending
        if box is None:
            return None
        grown = union_box(pending.box, box)
        if grown == pending.box:
            return box
        grown = _with_slack(pending.box, grown, self.labelmap.array.shape)
        old = self.labelmap.array[grown].copy()  # untouched voxels: still pre-stroke values
        if pending.box is not None:
            old[_inner(grown, pending.box)] = pending.old
        pending.box, pending.old = grown, old
        return box

    def _commit(self) -> None:
        pending, self._pending = self._pending, None
        box, old = pending.box, pending.old
        if box is not None:
            new = self.labelmap.array[box]
            changed = old != new
            inner = mask_box(changed)
            if inner is None:
                box = old = None
            else:
                if not pending.keeps_provenance:
                    self.labelmap.table.mark_corrected(_values_in(old[changed], new[changed]))
                old = old[inner].copy()
                box = tuple(slice(b.start + i.start, b.start + i.stop)
                            for b, i in zip(box, inner, strict=True))
        labels = _changed_labels(pending.table.labels, self.labelmap.table.labels)
        if box is None and not labels:
            return
        self._undo.append(Edit(pending.name, box, old, labels or None))
        self._redo.clear()
        self._enforce_cap()

    def _enforce_cap(self) -> None:
        """Drop the oldest undo items over the cap; the newest always stays undoable."""
        while len(self._undo) > 1 and self.memory_bytes() > self.cap_bytes:
            self._undo.pop(0)
            self._dropped += 1

    # -- replay ------------------------------------------------------------------------------
    def undo(self) -> Box | None:
        """Undo the last item; returns the box it restored (for the redraw), None if none."""
        if not self._undo or self._pending is not None:
            return None
        item = self._undo.pop()
        box = item.swap(self.labelmap)
        self._redo.append(item)
        return box

    def redo(self) -> Box | None:
        """Re-apply the last undone item; returns its box, None if there is nothing to redo."""
        if not self._redo or self._pending is not None:
            return None
        item = self._redo.pop()
        box = item.swap(self.labelmap)
        self._undo.append(item)
        return box

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def undo_name(self) -> str | None:
        """What Edit > Undo would undo ("brush", "fill", ...)."""
        return self._undo[-1].name if self._undo else None

    def redo_name(self) -> str | None:
        return self._redo[-1].name if self._redo else None

    def __len__(self) -> int:
        return len(self._undo)

    @property
    def position(self) -> int:
        """Items committed and not undone, counting those the cap dropped: a stable clock for
        ordering other undo stacks (box edits) against this one; `len` shrinks with the cap."""
        return self._dropped + len(self._undo)

    def memory_bytes(self) -> int:
        """Bytes of voxel values held by both stacks (the boxes and tables are a few bytes)."""
        return sum(item.nbytes() for item in self._undo) + sum(i.nbytes() for i in self._redo)

    def clear(self) -> None:
        self._dropped += len(self._undo)
        self._undo.clear()
        self._redo.clear()


def _values_in(*blocks: np.ndarray) -> list[int]:
    """The label values present in uint8 blocks (bincount: linear, no sort of the voxels)."""
    seen = sum(np.bincount(b.ravel(), minlength=256) for b in blocks)
    return np.flatnonzero(seen).tolist()


def _changed_labels(before: dict[int, Label], after: dict[int, Label]
                    ) -> dict[int, Label | None]:
    """{value: its label before} for every label added, removed or changed between the two."""
    return {v: before.get(v) for v in before.keys() | after.keys()
            if before.get(v) != after.get(v)}
