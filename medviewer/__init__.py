"""MedViewer: DICOM review, annotation and model-assisted analysis."""

__version__ = "0.1.0"
