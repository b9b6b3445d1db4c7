"""Annotations on a loaded series: label maps saved as DICOM SEG (pydicom + highdicom only).

    from medviewer.core.annotations import write_seg, read_seg, AnnotationError
"""

from medviewer.core.annotations.seg import AnnotationError, property_codes, read_seg, write_seg

__all__ = ["AnnotationError", "property_codes", "read_seg", "write_seg"]
