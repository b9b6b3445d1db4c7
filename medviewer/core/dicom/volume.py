"""Series -> Volume: voxels in modality units with a (column, row, slice, 1) -> LPS mm affine.

CONTRACT (implementation in progress):

    load_series(source, *, progress=None, cancel=None) -> Volume

`source` is a scanned `Series` (fast path: headers already parsed, pixel data read at its
offset), a folder, a single file, or a list of files. Raises DicomError naming the file and
the reason for corrupt, truncated or undecodable data.

    SeriesLoader(source)   # sorts and plans from headers, decodes nothing yet
      .shape, .affine, .slice_count
      .read_slice(k) -> np.ndarray   # one slice in modality units, for first-slice display
      .load(progress=None, cancel=None) -> Volume
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medviewer.core.display import Window
from medviewer.core.dicom.model import Series

ProgressCallback = Callable[[int, int], None]  # (done, total)
CancelCheck = Callable[[], bool]  # returns True when the caller wants to stop


@dataclass
class SliceSource:
    """Where one slice of the volume came from."""

    path: str
    frame: int = 0  # frame index inside a multi-frame file
    sop_instance_uid: str = ""


@dataclass
class Volume:
    """A loaded stack.

    voxels: (slices, rows, columns), or (time, slices, rows, columns) when positions repeat,
    with a trailing axis of 3 for colour; modality units (HU for CT); smallest lossless dtype.
    affine: 4x4 float64 mapping (column, row, slice, 1) to patient LPS millimetres.
    """

    voxels: np.ndarray
    affine: np.ndarray
    modality: str = ""
    photometric: str = "MONOCHROME2"  # of the source; MONOCHROME1 is inverted for display only
    windows: list[Window] = field(default_factory=list)  # from the header, in header order
    voi_lut: np.ndarray | None = None  # first VOI LUT of the header, applied for display
    voi_lut_first: int = 0  # first mapped input value of that LUT
    sources: list[SliceSource] = field(default_factory=list)  # one per slice (per time point 0)
    series: Series | None = None
    description: str = ""
    warnings: list[str] = field(default_factory=list)  # e.g. "slice gap at slice 12 (5.0 mm)"

    @property
    def is_colour(self) -> bool:
        return self.voxels.ndim >= 3 and self.voxels.shape[-1] == 3 and self.photometric == "RGB"

    @property
    def is_4d(self) -> bool:
        return self.voxels.ndim - (1 if self.is_colour else 0) == 4

    @property
    def spacing(self) -> tuple[float, float, float]:
        """(slice, row, column) spacing in mm, from the affine."""
        a = self.affine[:3, :3]
        col, row, slc = (float(np.linalg.norm(a[:, i])) for i in range(3))
        return slc, row, col


def load_series(
    source: Series | str | Path | Sequence[str | Path],
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelCheck | None = None,
) -> Volume:
    raise NotImplementedError
