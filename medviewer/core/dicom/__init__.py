"""Public contract of the DICOM layer.

    from medviewer.core.dicom import scan, load_series, DicomError

`scan(path)` indexes a folder, DICOMDIR or files from headers only (cached in SQLite);
`load_series(...)` returns a `Volume` in modality units with its LPS affine.

The names load on first use (PEP 562): importing pydicom costs 0.3 s, which the viewer's first
paint must not wait for (issue 17 item 4).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medviewer.core.dicom.errors import DicomError
    from medviewer.core.dicom.index import scan
    from medviewer.core.dicom.model import (
        FileProblem,
        Instance,
        Patient,
        ScanResult,
        Series,
        Study,
    )
    from medviewer.core.dicom.volume import LoadCancelled, SeriesLoader, Volume, load_series

_WHERE = {
    "DicomError": "errors",
    "scan": "index",
    **dict.fromkeys(("FileProblem", "Instance", "Patient", "ScanResult", "Series", "Study"),
                    "model"),
    **dict.fromkeys(("LoadCancelled", "SeriesLoader", "Volume", "load_series"), "volume"),
}
__all__ = [
    "DicomError",
    "FileProblem",
    "LoadCancelled",
    "Instance",
    "Patient",
    "ScanResult",
    "Series",
    "SeriesLoader",
    "Study",
    "Volume",
    "load_series",
    "scan",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value
