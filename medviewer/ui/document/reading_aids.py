"""The reader's choices on how every image is shown: window, invert, thick slab, text overlays,
the order images are numbered and scrolled in.

A part of `StudyDocument` (a mixin, so the views still read one object): the slab mode and
thickness apply to every view of every plane and survive opening another series, as a reading
room expects of a 10 mm MIP while it pages through studies; the overlay switch (O) hides all
text for clean screenshots and teaching.

Image order is a display convention, never a reordering of the voxels (whose slice order,
ascending along the slice normal, annotations, SEG and models rely on): the image number the
reader sees (slider, "Axial 1 / 120") and the direction of the wheel and keys follow the most
common PACS default, head first: image 1 is the most cranial axial image, the most anterior
coronal one, the patient's rightmost sagittal one, and wheel down, ↓ and PgDn move towards the
feet (back, left). Feet first is the other convention. Images without patient geometry
(projections, cine loops) keep their stored order. The document declares the signals
(`sigWindowChanged`, `sigInvertChanged`, `sigSlabChanged`, `sigOverlaysChanged`,
`sigImageOrderChanged`) and owns the volume, voxels and planes this reads.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from medviewer.core import geometry, reslice
from medviewer.core import slab as slabs
from medviewer.core.display import CT_PRESETS, Window, default_window, full_range_window

STACK = "stack"
HEAD_FIRST, FEET_FIRST = "head first", "feet first"
IMAGE_ORDERS = (HEAD_FIRST, FEET_FIRST)
# the LPS direction image numbers run in, head first: axial towards the feet, coronal front to
# back, sagittal right to left (feet first: the opposite)
_HEAD_FIRST_DIRECTION = {"axial": (0.0, 0.0, -1.0), "coronal": (0.0, 1.0, 0.0),
                         "sagittal": (1.0, 0.0, 0.0)}


class ReadingAids:
    """Window / level and its presets, the reader's Invert, thick-slab projection (MIP /
    MinIP / average) and the overlay switch of a document."""

    def _init_reading_aids(self) -> None:
        self.slab_mode, self.slab_mm = slabs.OFF, 10.0
        self.overlays_visible = True
        self.image_order = HEAD_FIRST
        self._slabs = slabs.SlabCache()

    # ----------------------------------------------------------------- window
    def set_window(self, window: Window) -> None:
        window = replace(window, width=max(float(window.width), window.narrowest))
        if window != self.window:
            self.window = window
            self.sigWindowChanged.emit(window)

    def presets(self) -> dict[str, Window]:
        """Header windows (with their explanations) first, then CT presets for CT only."""
        found: dict[str, Window] = {}
        windows = self.volume.windows if self.volume is not None else []
        for i, w in enumerate(windows):
            found[f"Header {i + 1}: {w.explanation}" if w.explanation else f"Header {i + 1}"] = w
        if self.modality == "CT":
            found.update({name.capitalize(): w for name, w in CT_PRESETS.items()})
        if self.volume is not None:
            found["Full range"] = full_range_window(self.volume.voxels)
        return found

    def header_window(self) -> Window:
        """The series' own window: the header's first, else the default (as on opening)."""
        if self.volume is not None:
            return default_window(self.volume, self.volume.windows)
        return self._preview_window or self.window

    def set_display_inverted(self, on: bool) -> None:
        """The reader's Invert: flips the grey scale for display only (see `invert`)."""
        if bool(on) != self.display_inverted:
            self.display_inverted = bool(on)
            self.sigInvertChanged.emit(self.invert)

    def reset_display(self) -> None:
        """Back to the series' own window and no reader inversion; measurements are untouched."""
        self.set_window(self.header_window())
        self.set_display_inverted(False)

    def apply_preset(self, name: str) -> Window:
        """Apply a preset by its label in `presets()` or a CT preset name ('lung')."""
        presets = self.presets()
        window = presets.get(name) or CT_PRESETS.get(name.lower())
        if window is None:
            raise KeyError(f"no window preset {name!r}; known: {', '.join(presets)}")
        self.set_window(window)
        return window

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
        return slabs.half_width_for(self.slab_mm, self.plane(name).slice_spacing)

    def slab_label(self, name: str = STACK, k: int | None = None) -> str:
        """'MIP 12.5 mm (5 images)' for image k (default: current) of a plane, '' if none:
        the thickness the images cover, which may differ from the one asked for."""
        k = self.plane_index(name) if k is None else k
        plane = self.plane(name)
        return slabs.slab_label(self.slab_mode, plane.slice_spacing,
                                slabs.slab_bounds(k, self.slab_half_width(name), plane.count))

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

    # ----------------------------------------------------------------- image order
    def set_image_order(self, order: str) -> None:
        """HEAD_FIRST (image 1 most cranial, wheel down towards the feet) or FEET_FIRST."""
        if order not in IMAGE_ORDERS:
            raise ValueError(f"unknown image order {order!r}; expected one of {IMAGE_ORDERS}")
        if order != self.image_order:
            self.image_order = order
            self.sigImageOrderChanged.emit(order)

    def numbered_backwards(self, name: str = STACK) -> bool:
        """Whether a plane's image 1 is its last index (its indices run against the chosen
        order's direction). Never for images without patient geometry."""
        plane = self.plane(name)
        if not self.has_geometry or plane.count < 2:
            return False
        if isinstance(plane, reslice.ResliceView):
            step = plane.to_lps(1, 0, 0) - plane.to_lps(0, 0, 0)
        else:
            step = (geometry.voxel_to_lps(self.affine, *plane.to_voxel(1, 0, 0))
                    - geometry.voxel_to_lps(self.affine, *plane.to_voxel(0, 0, 0)))
        wanted = np.array(_HEAD_FIRST_DIRECTION[plane.name])
        return bool((step @ wanted < 0) == (self.image_order == HEAD_FIRST))

    def image_position(self, name: str = STACK, k: int | None = None) -> int:
        """Where image k (default: current) of a plane comes in the reading order, from 0:
        the image number shown is this + 1. Its own inverse: see `index_at_position`."""
        k = self.plane_index(name) if k is None else k
        return self.plane(name).count - 1 - k if self.numbered_backwards(name) else k

    def index_at_position(self, name: str, position: int) -> int:
        """The plane index of the image at `position` (clamped) in the reading order."""
        count = self.plane(name).count
        return self.image_position(name, int(np.clip(position, 0, max(count - 1, 0))))

    def go_to_position(self, name: str, position: int) -> None:
        """Show the image at `position` of the reading order (0: image 1) of a plane."""
        k = self.index_at_position(name, position)
        if name == STACK:
            self.set_slice(k)
        else:
            self.set_plane_slice(name, k)

    def step_images(self, name: str, n: int) -> None:
        """Move n images along the reading order of a plane (head first, +1 on axial is one
        image towards the feet), as the wheel and the arrow keys do."""
        self.go_to_position(name, self.image_position(name) + n)
