"""Label maps coloured for the screen, kept per image so that paging back over a slice does
not colour it again.

Colouring and outlining a 512 x 512 label image takes 0.3-0.5 ms of numpy. Worse, each
new image was a fresh 1 MB array, freed a slice later (the grey image's too): the allocator
gave the top of its heap back to the system and took it again on every step, about 550 minor
page faults a slice change, which cost more than the colouring. `LABEL_IMAGES` keeps the
coloured labelled box of every image drawn (only the box: two lungs are a third of a CT
slice), least recently used first out, in a byte budget shared by every view;
`LabelImageItem.show_labels` copies one into a buffer of the item's own. The pixels are in
the raster engine's own format, ARGB32 premultiplied by alpha (`screen_lut`), which it blends
as they are (a 768 px grab with the lungs drawn: 0.67 ms, against 0.76-0.81 ms from straight
RGBA8888).

An entry is keyed by the label array it was cut from (held weakly: its entries go with it),
which image of it, the colour table and the outline width, so a new result, another table,
a hidden label or the outline / fill switch colour anew by themselves. An edit of a label map
in place must be announced: `forget(source, box)` drops the images it crosses (the
annotation layer does it on every `sigLabelMapChanged`).
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from medviewer.ui.viewing.layer_order import coloured_box

BUDGET_BYTES = 96 * 2**20  # about 270 lung-sized boxes of 512 x 512 slices


@dataclass(frozen=True)
class ColouredLabels:
    """One label image for the screen: (h, w, 4) uint8 premultiplied ARGB32 (`screen_lut`) of
    its labelled `box` within an image of `shape` (rows, cols); box None: nothing to draw."""

    shape: tuple[int, int]
    box: tuple[slice, slice] | None
    crop: np.ndarray

    @property
    def nbytes(self) -> int:
        return self.crop.nbytes


def screen_lut(lut: np.ndarray) -> np.ndarray:
    """A (n, 4) straight RGBA table as (n, 4) uint8 whose uint32 view is Qt's
    Format_ARGB32_Premultiplied (0xAARRGGBB, the colour multiplied by its alpha, rounded; on
    a little-endian machine the bytes B, G, R, A)."""
    rgba = np.asarray(lut, np.uint8).astype(np.uint32)
    alpha = rgba[:, 3]
    r, g, b = ((rgba[:, i] * alpha + 127) // 255 for i in range(3))
    packed = (alpha << 24) | (r << 16) | (g << 8) | b
    return packed.astype(np.uint32).view(np.uint8).reshape(len(rgba), 4)


def straight_rgba(argb: np.ndarray) -> np.ndarray:
    """(..., 4) uint8 of premultiplied ARGB32 pixels (`screen_lut`'s) back to straight RGBA,
    as a reader of the item's image expects it."""
    packed = np.ascontiguousarray(argb).view(np.uint32)[..., 0].astype(np.uint32)
    alpha = packed >> 24
    out = np.zeros((*packed.shape, 4), np.uint8)
    seen = alpha > 0
    for i, shift in enumerate((16, 8, 0)):
        channel = (packed >> shift) & 0xFF
        out[..., i][seen] = np.minimum((channel[seen] * 255 + alpha[seen] // 2)
                                       // alpha[seen], 255)
    out[..., 3] = alpha
    return out


def colour_labels(labels: np.ndarray, lut: np.ndarray, outline_width: int = 0
                  ) -> ColouredLabels:
    """`labels` through `lut` (straight RGBA; to the screen's format here), outlined when
    `outline_width` > 0, cut to its labelled box."""
    box, part = coloured_box(labels, screen_lut(lut), outline_width)
    crop = part.view(np.uint8).reshape(*part.shape, 4)
    return ColouredLabels(labels.shape[:2], box, crop)


class LabelImageCache:
    """Coloured label images by (source array, image, table, outline width), least recently
    used dropped first once their bytes pass `budget`. Used from the GUI thread; a source
    that goes (in whatever thread) is only noted, and its images dropped on the next use."""

    def __init__(self, budget: int = BUDGET_BYTES) -> None:
        self.budget = budget
        self._nbytes = 0
        self._entries: OrderedDict[tuple, ColouredLabels] = OrderedDict()
        self._sources: dict[int, weakref.ref] = {}
        self._gone: list[tuple[int, weakref.ref]] = []  # appended by weakref callbacks

    def __len__(self) -> int:
        self._drop_gone()
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        self._drop_gone()
        return self._nbytes

    def coloured(self, source: np.ndarray, labels: np.ndarray, where: tuple[int, int],
                 lut: np.ndarray, outline_width: int = 0) -> ColouredLabels:
        """`colour_labels(labels, lut, outline_width)`, from the cache when it has it.
        `labels` is an image cut from `source`; `where` is (axis, index) of `source` it
        lies at, for `forget`."""
        self._drop_gone()
        info = labels.__array_interface__
        key = (id(source), where, info["data"][0], labels.strides, labels.shape,
               np.ascontiguousarray(lut, np.uint8).tobytes(), outline_width)
        entry = self._entries.get(key)
        if entry is not None and self._known(source):
            self._entries.move_to_end(key)
            return entry
        entry = colour_labels(labels, lut, outline_width)
        self._remember(source)
        self._entries[key] = entry
        self._nbytes += entry.nbytes
        while self._nbytes > self.budget and len(self._entries) > 1:
            self._nbytes -= self._entries.popitem(last=False)[1].nbytes
        return entry

    def forget(self, source: np.ndarray, box: tuple[slice, ...] | None = None) -> None:
        """Drop the images of `source` that `box` (one slice per axis of `source`) crosses;
        None: all of them. Call it when `source` was changed in place."""
        self._drop_gone()
        self._drop(lambda key: key[0] == id(source) and _crosses(box, key[1]))

    def _drop(self, which) -> None:
        for key in [k for k in self._entries if which(k)]:
            self._nbytes -= self._entries.pop(key).nbytes

    def _known(self, source: np.ndarray) -> bool:
        ref = self._sources.get(id(source))
        return ref is not None and ref() is source

    def _remember(self, source: np.ndarray) -> None:
        """Hold `source` weakly: its id may be reused once it is gone."""
        ident = id(source)
        if not self._known(source):
            self._forget_id(ident)
            self._sources[ident] = weakref.ref(
                source, lambda ref: self._gone.append((ident, ref)))

    def _drop_gone(self) -> None:
        while self._gone:
            ident, ref = self._gone.pop()
            if self._sources.get(ident) is ref:  # not already a new array with that id
                self._forget_id(ident)

    def _forget_id(self, ident: int) -> None:
        self._sources.pop(ident, None)
        self._drop(lambda key: key[0] == ident)


def _crosses(box: tuple[slice, ...] | None, where: tuple[int, int]) -> bool:
    if box is None:
        return True
    axis, index = where
    span = box[axis]
    return (span.start or 0) <= index < (span.stop if span.stop is not None else index + 1)


LABEL_IMAGES = LabelImageCache()  # one budget for every view and layer
