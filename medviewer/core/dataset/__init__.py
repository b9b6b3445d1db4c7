"""Datasets out of the viewer: de-identified DICOM (deid) and training-ready NIfTI (nifti,
export). numpy + pydicom (+ dicognito, nibabel) only, like the rest of core."""

from medviewer.core.dataset.deid_files import deidentify_files, write_pseudonym_table
from medviewer.core.dataset.deid_report import DeidReport
from medviewer.core.dataset.deidentifier import Deidentifier, DeidError, DeidOptions

__all__ = ["DeidError", "DeidOptions", "DeidReport", "Deidentifier", "deidentify_files",
           "write_pseudonym_table"]
