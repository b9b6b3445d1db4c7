"""The reader's session choices on how every image is shown: thick slab and text overlays.

A part of `StudyDocument` (a mixin, so the views still read one object): the slab mode and
thickness apply to every view of every plane and survive opening another series, as a reading
room expects of a 10 mm MIP while it pages through studies; the overlay switch (O) hides all
text for clean screenshots and teaching. The document declares the signals
(`sigSlabChanged`, `sigOverlaysChanged`) and owns the voxels and planes this reads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from medviewer.core import slab as slabs

if TYPE_CHECKING:
    from medviewer.core import geometry

STACK = "stack"


class ReadingAids:
    """Thick-slab projection (MIP / MinIP / average) and the overlay switch of a document."""

    def _init_reading_aids(self) -> None:
        self.slab_mode, self.slab_mm = slabs.OFF, 10.0
        self.overlays_visible = True
        self._slabs = slabs.SlabCache()

    # ----------------------------------------------------------------- thick slab
    def set_slab(self, mode: str | None = None, thickness_mm: float | None = None) -> None:
        """MIP / MinIP / average over `thickness_mm` of every plane ('off' for none)."""
        mode = self.slab_mode if mode is None else mode
        if mode not in slabs.SLAB_MODES:
            raise ValueError(f"unknown slab mode {mode!r}; expected one of {slabs.SLAB_MODES}")
        mm = self.slab_mm if thickness_mm is None else max(float(thickness_mm), 0.0)
        if (mode, mm) != (self.slab_mode, self.slab_mm):
            self.slab_mode, self.slab_mm = mode, mm
            self.sigSlabChanged.emit()

    @property
    def slab_on(self) -> bool:
        """Whether the images on screen are projections (a slab of more than one image)."""
        return self.slab_half_width() > 0

    def slab_half_width(self, name: str = STACK) -> int:
        """Images each side of the current one in a plane's slab: 0 when off, on a preview
        (one slice) or on colour images (no projection of RGB)."""
        if self.slab_mode == slabs.OFF or self.volume is None or self.is_colour:
            return 0
        spacing = slabs.plane_slice_spacing(self.affine, self.plane(name))
        return slabs.half_width_for(self.slab_mm, spacing)

    def slab_label(self, name: str = STACK, k: int | None = None) -> str:
        """'MIP 10.0 mm (5 images)' for image k (default: current) of a plane, '' if none."""
        k = self.plane_index(name) if k is None else k
        return slabs.slab_label(self.slab_mode, self.slab_mm,
                                slabs.slab_bounds(k, self.slab_half_width(name),
                                                  self.plane(name).count))

    def slab_image(self, name: str, voxels: np.ndarray, k: int) -> np.ndarray:
        """Image k of a plane as the current slab, computed once per (image, time, mode)."""
        plane: geometry.PlaneView = self.plane(name)
        n = self.slab_half_width(name)
        key = (id(self.volume), self.time_index, k, self.slab_mode, n)
        return self._slabs.get(name, key, lambda: slabs.plane_slab(
            voxels, plane, k, n, self.slab_mode))

    # ----------------------------------------------------------------- overlays
    def set_overlays_visible(self, on: bool) -> None:
        """All text on the images on or off (O), for clean screenshots and teaching."""
        if bool(on) != self.overlays_visible:
            self.overlays_visible = bool(on)
            self.sigOverlaysChanged.emit(self.overlays_visible)
