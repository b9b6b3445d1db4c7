"""The open study's state: one object that owns it, emits events, and every view subscribes to.

`StudyDocument` holds the volume (or the first-slice preview shown while it decodes), the
crosshair (the voxel the reader is looking at: the acquired slice is its slice index), the time
point of a 4D series, the window, the reader's display inversion and the layout. Views never
keep a copy of any of it: a second view is a second subscriber. It has no widget, so its
logic is testable without a screen. The thick slab and the overlay switch (`ReadingAids`) and
the patient and series facts for the overlays (`header`) are read from here too.

Planes: 'stack' is the series as acquired (its slice index is the document's slice index);
'axial', 'coronal' and 'sagittal' are the MPR planes cut from the same voxels along their own
axes when those line up with the patient's (`core.geometry.plane_view`, numpy views: no
copies, true spacing kept), resampled to true planes when the series is oblique
(`core.reslice.ResliceView`, trilinear). The stack is always shown as acquired.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QObject, Signal

from medviewer.core import geometry, reslice
from medviewer.core.dicom.checks import usable_spacing
from medviewer.core.dicom.model import Series
from medviewer.core.display import Window, default_window
from medviewer.ui.document.ai_state import AiLayers
from medviewer.ui.document.annotate_state import AnnotationState
from medviewer.ui.document.measurements import MeasurementState
from medviewer.ui.document.reading_aids import STACK, ReadingAids

if TYPE_CHECKING:  # pydicom loads with the first series, not before the first paint
    from medviewer.core.dicom.volume import SliceSource, Volume

LAYOUTS = ("1x1", "mpr")
_OPPOSITE = str.maketrans("HFAPRL", "FHPALR")


def _other_series(a: Series | None, b: Series | None) -> bool:
    """True when both are known and differ (an unnamed volume counts as the same)."""
    return a is not None and b is not None and a.key != b.key


def _spatial_shape(volume: Volume) -> tuple[int, int, int]:
    """(slices, rows, columns) of one time point."""
    shape = volume.voxels.shape[:-1] if volume.is_colour else volume.voxels.shape
    return tuple(shape[-3:]) if len(shape) >= 3 else (1, *shape[-2:])


def stack_plane(volume: Volume) -> geometry.PlaneView:
    """The plane a series was acquired in, cut along its voxels: what 'stack' shows."""
    affine = np.asarray(volume.affine, float)
    return geometry.plane_view(_spatial_shape(volume), affine,
                               geometry.acquisition_plane(affine))


class StudyDocument(ReadingAids, AiLayers, AnnotationState, MeasurementState, QObject):
    """State of the open study. Signals say what changed; views read the rest from here."""

    sigVolumeChanged = Signal()
    sigSliceChanged = Signal(int)  # acquired-stack slice index
    sigTimeChanged = Signal(int)
    sigWindowChanged = Signal(object)  # Window
    sigCrosshairChanged = Signal(object)  # (column, row, slice) voxel
    sigLayoutChanged = Signal(str)
    sigInvertChanged = Signal(bool)  # the effective display inversion
    sigSlabChanged = Signal()  # thick-slab mode or thickness
    sigOverlaysChanged = Signal(bool)  # text on the images shown (O)
    sigImageOrderChanged = Signal(str)  # head first / feet first (reading_aids)
    sigAiResultChanged = Signal()  # AI results or explanation replaced (ai_state)
    sigAiDisplayChanged = Signal()  # AI layer opacity, hidden labels, box threshold
    sigLabelMapChanged = Signal(object)  # edited (slice, row, col) box; None: all (annotate_state)
    sigAnnotateToolChanged = Signal()  # annotate tool, size, sphere, value range
    sigToolChanged = Signal(str)  # the mouse tool every view uses (viewing.tools)
    sigMeasurementsChanged = Signal(object)  # uid drawn / moved / deleted; None: all (measurements)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.volume: Volume | None = None
        self.series: Series | None = None
        self.preview: np.ndarray | None = None  # first slice while the volume decodes
        self._preview_source: SliceSource | None = None
        self._preview_count, self._preview_geometry = 0, False
        self._preview_orientation: tuple[str, str] | None = None
        self._preview_header: dict[str, str] = {}
        self._preview_photometric, self._preview_spacing_known = "MONOCHROME2", True
        self.crosshair: tuple[int, int, int] = (0, 0, 0)  # (column, row, slice)
        self._crosshair_lps: np.ndarray | None = None  # exact point, set by resliced planes
        self.time_index = 0
        self.window = Window(40, 400)
        self._preview_window: Window | None = None
        self.display_inverted = False  # the reader's Invert (I), on top of MONOCHROME1
        self.layout = "1x1"
        self.tool = "navigate"  # the active mouse tool: one for every view (viewing.tools)
        self._init_reading_aids()  # slab and overlays: kept whichever series opens next
        self._init_ai()  # model results: display layers, dropped when another series opens
        self._init_annotations()  # the reader's label map and boxes: kept per series
        self._init_measurements()  # rulers and ROIs: every series' for the session
        self._planes: dict[str, geometry.PlaneView | reslice.ResliceView] = {}
        self._shape = (0, 0, 0)
        self._set_geometry(np.eye(4), self._shape)

    # ----------------------------------------------------------------- loading
    def set_preview(self, slice_2d: np.ndarray, series: Series | None, window: Window,
                    slice_index: int, slice_count: int, *,
                    affine: np.ndarray | None = None, source: SliceSource | None = None,
                    has_geometry: bool | None = None,
                    patient_orientation: tuple[str, str] | None = None,
                    header: dict[str, str] | None = None,
                    photometric: str = "MONOCHROME2", spacing_known: bool = True) -> None:
        """Show one decoded slice before the volume is ready (first image on screen fast).

        `has_geometry` defaults to whether the series' first image has position and
        orientation. `header` (the overlays' patient and series facts), `photometric`
        (a MONOCHROME1 preview shows inverted, as its volume will) and `spacing_known` come
        from the loader."""
        self.volume, self.series, self.preview = None, series, np.asarray(slice_2d)
        self._preview_source, self._preview_count = source, max(1, int(slice_count))
        if has_geometry is None:
            first = series.instances[0] if series and series.instances else None
            has_geometry = bool(first and first.position and first.orientation)
        self._preview_geometry, self._preview_orientation = has_geometry, patient_orientation
        self._preview_header, self._preview_photometric = dict(header or {}), photometric
        self._preview_spacing_known = spacing_known
        k = int(np.clip(slice_index, 0, self._preview_count - 1))
        rows, cols = self.preview.shape[:2]
        self._set_geometry(self._preview_affine(series, affine), (self._preview_count, rows, cols))
        self.crosshair, self.time_index, self.window = (cols // 2, rows // 2, k), 0, window
        self._preview_window, self.display_inverted = window, False
        self._leave_mpr_if_impossible()
        self.clear_ai()
        self.sigVolumeChanged.emit()

    def set_volume(self, volume: Volume, *, window: Window | None = None) -> None:
        """Replace what is shown; keeps the slice, window and inversion the reader chose on the
        preview of the same series. Another series starts fresh (a cached volume may replace
        the preview of a series still loading)."""
        was_preview = (self.preview is not None and self.volume is None
                       and not _other_series(volume.series, self.series))
        k = self.crosshair[2] if was_preview else None
        self.volume, self.preview = volume, None
        self.series = volume.series or self.series
        shape = _spatial_shape(volume)
        self._set_geometry(np.asarray(volume.affine, float), shape)
        if k is None:
            k = shape[0] // 2
        self.crosshair = (shape[2] // 2, shape[1] // 2, int(np.clip(k, 0, shape[0] - 1)))
        self.time_index = 0
        if window is None and not was_preview:
            window = default_window(volume, volume.windows)
        self.window = window or self.window
        if not was_preview:
            self.display_inverted = False
        self._leave_mpr_if_impossible()
        self.clear_ai()  # computed on other voxels (a label map is in their grid)
        self._sync_annotations(volume)
        self.sigVolumeChanged.emit()

    def _set_geometry(self, affine: np.ndarray, shape: tuple[int, int, int]) -> None:
        self._affine, self._shape, self._planes = affine, shape, {}
        self._crosshair_lps = None
        self._slabs.clear()
        self._stack_plane = geometry.acquisition_plane(affine)

    @staticmethod
    def _preview_affine(series: Series | None, affine: np.ndarray | None) -> np.ndarray:
        """The preview's affine: given, or pixel spacing from the header so the aspect is right."""
        if affine is not None:
            return np.asarray(affine, float)
        a = np.eye(4)
        inst = series.instances[0] if series and series.instances else None
        spacing = usable_spacing(inst.pixel_spacing) if inst else None
        if spacing:  # 0\0 or negative: pixels, as the volume will be
            a[0, 0], a[1, 1] = spacing[1], spacing[0]
        return a

    # ----------------------------------------------------------------- geometry
    @property
    def has_image(self) -> bool:
        return self.volume is not None or self.preview is not None

    @property
    def affine(self) -> np.ndarray:
        return self._affine

    @property
    def shape(self) -> tuple[int, int, int]:
        """(slices, rows, columns) of the acquired stack."""
        return self._shape

    @property
    def has_geometry(self) -> bool:
        """True when the images carry patient position and orientation. Projection images
        (DX, CR, US, SC) do not: their affine is the bare pixel grid, so plane names,
        positions in mm and letters from the affine would be invented."""
        if self.volume is not None:
            return self.volume.has_geometry
        return self.preview is not None and self._preview_geometry

    @property
    def patient_orientation(self) -> tuple[str, str] | None:
        """PatientOrientation of a projection image: (right edge, bottom edge) directions."""
        if self.volume is not None:
            return self.volume.patient_orientation
        return self._preview_orientation if self.preview is not None else None

    def edge_labels(self, name: str = STACK) -> dict[str, str]:
        """Orientation letters of a plane's edges: from the affine when the images have
        geometry, else from PatientOrientation on the image as stored, else none."""
        plane = self.plane(name)
        if self.has_geometry:
            return plane.edge_labels()
        stored = plane.axes == (0, 1, 2) and plane.flips == (False, False)
        if self.patient_orientation is None or not stored:
            return {}
        right, bottom = self.patient_orientation
        return {"left": right.translate(_OPPOSITE), "right": right,
                "top": bottom.translate(_OPPOSITE), "bottom": bottom}

    @property
    def is_colour(self) -> bool:
        return self.volume is not None and self.volume.is_colour

    @property
    def time_count(self) -> int:
        return self.volume.voxels.shape[0] if self.volume is not None and self.volume.is_4d else 1

    def plane(self, name: str = STACK) -> geometry.PlaneView | reslice.ResliceView:
        """Geometry of a display plane ('stack' = the plane the series was acquired in, cut
        along its voxels; the MPR planes of an oblique volume are resampled true planes, but
        not from a one-slice preview)."""
        key = name
        if name == STACK:
            name = self._stack_plane
        if key not in self._planes:
            native = key == STACK or self.volume is None
            make = geometry.plane_view if native else reslice.plane_view_for
            self._planes[key] = make(self._shape, self._affine, name)
        return self._planes[key]

    def plane_index(self, name: str = STACK) -> int:
        """Which image of `name` the crosshair is on (a resliced plane: the image nearest
        the crosshair's exact LPS point, so it may run past the tilted volume's edge)."""
        plane = self.plane(name)
        if isinstance(plane, reslice.ResliceView):
            k = int(np.rint(plane.from_lps(self.crosshair_lps)[0]))
            return int(np.clip(k, 0, plane.count - 1))
        return plane.from_voxel(*self.crosshair)[0]

    @property
    def crosshair_lps(self) -> np.ndarray:
        """The crosshair in patient LPS mm: the point a resliced plane was clicked or scrolled
        to, else the centre of the crosshair voxel."""
        if self._crosshair_lps is not None:
            return self._crosshair_lps
        return geometry.voxel_to_lps(self._affine, *self.crosshair)

    def frame(self, name: str = STACK, k: int | None = None) -> np.ndarray | None:
        """Image k (default: current) of a plane in modality units; None if not decoded yet."""
        plane = self.plane(name)
        k = self.plane_index(name) if k is None else k
        if self.volume is None:
            ok = self.preview is not None and plane.axes[0] == 0 and k == self.crosshair[2]
            return plane.image(self.preview[None], 0) if ok else None
        voxels = self.time_point_voxels()
        return self.slab_image(name, voxels, k) if self.slab_half_width(name) else \
            plane.image(voxels, k)

    def decode_failure(self, name: str = STACK, k: int | None = None) -> str | None:
        """Why image k (default: current) of a plane is blank because its file failed to
        decode, or None. Only planes cutting along the acquired slices show a whole failed
        image; in a reformat it is one line of air among good data."""
        volume = self.volume
        if volume is None or not volume.bad_slices:
            return None
        plane = self.plane(name)
        if isinstance(plane, reslice.ResliceView) or plane.axes[0] != 0:
            return None
        k = self.plane_index(name) if k is None else k
        return volume.bad_reason(plane.to_voxel(k, 0, 0)[2], self.time_index)

    def time_point_voxels(self) -> np.ndarray:
        """The current time point's voxels as (slices, rows, columns[, 3]): no copy."""
        voxels = self.volume.voxels[self.time_index] if self.volume.is_4d else self.volume.voxels
        return voxels[None] if voxels.ndim == 2 + (1 if self.is_colour else 0) else voxels

    # ----------------------------------------------------------------- navigation
    @property
    def slice_index(self) -> int:
        return self.crosshair[2]

    @property
    def slice_count(self) -> int:
        return self._shape[0]

    def set_slice(self, k: int) -> None:
        """Go to acquired slice k (clamped). A preview has only its one slice to show."""
        if self.volume is None:
            return
        k = int(np.clip(k, 0, max(self.slice_count - 1, 0)))
        if k != self.crosshair[2]:
            self.crosshair, self._crosshair_lps = (self.crosshair[0], self.crosshair[1], k), None
            self.sigSliceChanged.emit(k)
            self.sigCrosshairChanged.emit(self.crosshair)

    def step(self, n: int) -> None:
        self.set_slice(self.slice_index + n)

    def set_plane_slice(self, name: str, k: int) -> None:
        """Go to image k of any plane: moves the crosshair along that plane's normal."""
        plane = self.plane(name)
        k = int(np.clip(k, 0, plane.count - 1))
        if isinstance(plane, reslice.ResliceView):
            _, r, c = plane.from_lps(self.crosshair_lps)
            self.set_crosshair_lps(plane.to_lps(k, r, c))
            return
        _, r, c = plane.from_voxel(*self.crosshair)
        self.set_crosshair(plane.to_voxel(k, r, c))

    def set_crosshair_at(self, name: str, k: int, row: float, col: float) -> None:
        """Point at pixel (row, col) of image k of a plane (a click): exactly there on a
        resliced plane, so the clicked view keeps its image; else at that pixel's voxel."""
        plane = self.plane(name)
        if isinstance(plane, reslice.ResliceView):
            self.set_crosshair_lps(plane.to_lps(k, row, col))
        else:
            self.set_crosshair(plane.to_voxel(k, int(row), int(col)))

    def set_crosshair_lps(self, point: np.ndarray) -> None:
        """Point at an LPS position (mm); the crosshair voxel is the nearest one, clamped."""
        if self.volume is None:
            return
        point = np.asarray(point, float)
        voxel = tuple(int(v) for v in np.rint(geometry.lps_to_voxel(self._affine, point)))
        self._move_crosshair(voxel, point)

    def set_crosshair(self, voxel: tuple[int, int, int]) -> None:
        """Point at voxel (column, row, slice), clamped; the acquired slice follows."""
        if self.volume is not None:
            self._move_crosshair(voxel, None)

    def _move_crosshair(self, voxel: tuple[int, int, int], point: np.ndarray | None) -> None:
        """Set the crosshair voxel (clamped) and exact point (None: the voxel's centre). A
        new point on the same voxel is still news: a resliced plane may show another image."""
        limits = (self._shape[2], self._shape[1], self._shape[0])
        new = tuple(int(np.clip(v, 0, n - 1)) for v, n in zip(voxel, limits, strict=True))
        old_point, self._crosshair_lps = self._crosshair_lps, point
        same_point = (old_point is None and point is None) or (
            old_point is not None and point is not None and np.allclose(old_point, point))
        if new == self.crosshair and same_point:
            return
        old_k, self.crosshair = self.crosshair[2], new
        if new[2] != old_k:
            self.sigSliceChanged.emit(new[2])
        self.sigCrosshairChanged.emit(new)

    def set_time(self, t: int) -> None:
        t = int(np.clip(t, 0, self.time_count - 1))
        if t != self.time_index:
            self.time_index = t
            self.sigTimeChanged.emit(t)

    @property
    def can_reformat(self) -> bool:
        """MPR needs a volume: patient geometry and more than one slice."""
        return self.has_geometry and self.shape[0] > 1

    def set_layout(self, layout: str) -> bool:
        """False (layout kept) when MPR is asked of images that are no volume."""
        if layout not in LAYOUTS:
            raise ValueError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")
        if layout == "mpr" and self.has_image and not self.can_reformat:
            return False
        if layout != self.layout:
            self.layout = layout
            self.sigLayoutChanged.emit(layout)
        return True

    def set_tool(self, name: str) -> None:
        """Make `name` the mouse tool of every view; `viewing.tools.ToolManager.choose`
        checks first whether it can be chosen now."""
        if name != self.tool:
            self.tool = name
            self.sigToolChanged.emit(name)
            self.sigAnnotateToolChanged.emit()  # the Annotate menu and dock follow

    def _leave_mpr_if_impossible(self) -> None:
        if self.layout == "mpr" and not self.can_reformat:
            self.set_layout("1x1")

    # ----------------------------------------------------------------- header facts
    @property
    def header(self) -> dict[str, str]:
        """Patient, study and series facts of the open series (`Volume.header`)."""
        if self.volume is not None:
            return self.volume.header
        return self._preview_header if self.preview is not None else {}

    @property
    def spacing_known(self) -> bool:
        """False when no header gives the pixel size (the overlay says so, not "1.00 mm")."""
        return self.volume.spacing_known if self.volume is not None else \
            self._preview_spacing_known

    @property
    def photometric(self) -> str:
        if self.volume is not None:
            return self.volume.photometric
        return self._preview_photometric if self.preview is not None else "MONOCHROME2"

    # ----------------------------------------------------------------- readout
    @property
    def modality(self) -> str:
        if self.volume is not None and self.volume.modality:
            return self.volume.modality
        return self.series.modality if self.series else ""

    @property
    def units(self) -> str:
        return "HU" if self.modality == "CT" else ""

    @property
    def invert(self) -> bool:
        """Whether the screen shows high values dark: MONOCHROME1 (stored that way) XOR the
        reader's Invert, so Invert on a MONOCHROME1 film shows it as stored. Display only."""
        return (self.photometric == "MONOCHROME1") != self.display_inverted

    def current_source(self) -> SliceSource | None:
        """The file (and frame) of the acquired slice and time point on screen, for the tag
        panel."""
        if self.volume is None:
            return self._preview_source
        return self.volume.source(self.slice_index, self.time_index)

    def value_at(self, col: int, row: int) -> float | tuple | None:
        """Modality value (RGB triple for colour) of voxel (col, row) on the current slice."""
        return self.voxel_value(col, row, self.slice_index)

    def voxel_value(self, col: int, row: int, slice_: int) -> float | tuple | None:
        """Modality value of voxel (column, row, slice) at the current time point."""
        n_slices, n_rows, n_cols = self._shape
        if not (0 <= col < n_cols and 0 <= row < n_rows and 0 <= slice_ < n_slices):
            return None
        if self.volume is None:
            ok = self.preview is not None and slice_ == self.crosshair[2]
            value = self.preview[int(row), int(col)] if ok else None
        else:
            value = self.time_point_voxels()[int(slice_), int(row), int(col)]
        if value is None:
            return None
        if np.ndim(value):
            return tuple(int(v) for v in value)
        return float(value)
