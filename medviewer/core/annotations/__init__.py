"""Annotations on a loaded series (no Qt): editable label maps (brush, eraser, fills, islands,
smoothing, fill between slices) with stroke-level undo, saved as DICOM SEG; boxes, distances,
area ROIs and class labels as DICOM SR (TID 1500) with a JSON sidecar; a workspace beside the
data.

    from medviewer.core.annotations import write_seg, read_seg, BoxSet, write_sr, Workspace
"""

from medviewer.core.annotations.autosave import (
    Recoverable,
    autosaved_areas,
    autosaved_lines,
    discard_autosave,
    find_recoverable,
    load_autosave,
    read_autosave_record,
    save_autosave,
)
from medviewer.core.annotations.boxes import (
    ACCEPTED,
    PROPOSED,
    REJECTED,
    AnnotatedBox,
    AreaMeasurement,
    BoxEdit,
    BoxSet,
    ClassLabel,
    DistanceLine,
    area_measurement,
    boxes_from_model,
    distance_line,
    model_source,
    slice_uid,
)
from medviewer.core.annotations.history import Box, History
from medviewer.core.annotations.labelmap import Label, LabelMap, LabelTable, spacing_from_affine
from medviewer.core.annotations.seg import AnnotationError, property_codes, write_seg
from medviewer.core.annotations.seg_read import read_seg, read_seg_table
from medviewer.core.annotations.sr import (
    Annotations,
    Provenance,
    read_provenance,
    read_sr,
    write_sr,
)
from medviewer.core.annotations.tools import (
    accept_prediction,
    brush,
    brush_stroke,
    erase,
    fill_between_slices,
    flood_fill,
    keep_largest,
    polygon_fill,
    remove_islands,
    smooth,
    stroke_centres,
)
from medviewer.core.annotations.workspace import FoundAnnotation, Workspace

__all__ = [
    "Recoverable", "autosaved_areas", "autosaved_lines", "discard_autosave",
    "find_recoverable", "load_autosave", "read_autosave_record", "save_autosave",
    "Box", "History", "Label", "LabelMap", "LabelTable", "accept_prediction", "brush",
    "brush_stroke", "erase", "fill_between_slices", "flood_fill", "keep_largest",
    "polygon_fill", "remove_islands", "smooth", "spacing_from_affine", "stroke_centres",
    "ACCEPTED", "PROPOSED", "REJECTED", "AnnotatedBox", "Annotations", "AnnotationError",
    "AreaMeasurement", "BoxEdit", "BoxSet", "ClassLabel", "DistanceLine", "FoundAnnotation",
    "Provenance", "Workspace", "area_measurement", "boxes_from_model", "distance_line",
    "model_source", "property_codes", "read_provenance", "read_seg", "read_seg_table",
    "read_sr", "slice_uid", "write_seg", "write_sr",
]
