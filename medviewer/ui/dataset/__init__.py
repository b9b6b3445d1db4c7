"""File ▸ Export Dataset…: annotated series as nnU-Net / MONAI NIfTI or de-identified DICOM."""
