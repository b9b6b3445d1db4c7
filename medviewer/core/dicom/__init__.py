"""Public contract of the DICOM layer.

    from medviewer.core.dicom import scan, load_series, DicomError

`scan(path)` indexes a folder, DICOMDIR or files from headers only (cached in SQLite);
`load_series(...)` returns a `Volume` in modality units with its LPS affine.
"""

from medviewer.core.dicom.errors import DicomError
from medviewer.core.dicom.index import scan
from medviewer.core.dicom.model import FileProblem, Instance, Patient, ScanResult, Series, Study
from medviewer.core.dicom.volume import LoadCancelled, SeriesLoader, Volume, load_series

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
