"""Synthetic DICOM: scanner-like files and anatomical phantoms whose content is known exactly.

Why: tests, benchmarks and the built-in demo study need real DICOM files with ground truth
(where the nodules are, how wide the heart is) and no patient data. Everything is deterministic
for a given seed: the same call writes the same bytes.

    import medviewer.core.synthetic as syn

`writer` holds the shared core (UIDs, geometry, pixel coding, classic series), `variants` the
other layouts (multi-frame, 4D, colour, palette, broken files), `phantoms` the anatomy.
"""

from medviewer.core.synthetic.phantoms import (
    CHEST_HU,
    CHEST_LABELS,
    DEMO_NODULES,
    chest_xray_phantom,
    ct_chest_labels,
    ct_chest_phantom,
    mr_head_phantom,
    write_chest_xray,
    write_mr_series,
)
from medviewer.core.synthetic.variants import (
    hot_iron_palette,
    write_4d,
    write_broken,
    write_multiframe,
    write_palette,
    write_rgb,
)
from medviewer.core.synthetic.writer import (
    AXIAL,
    CORONAL,
    CT_WINDOWS,
    GENERATOR_VERSION,
    IMPLEMENTATION_UID,
    SAGITTAL,
    Geometry,
    PixelCoding,
    SeriesPlan,
    base_attributes,
    make_uid,
    new_dataset,
    oblique,
    plan_coding,
    save,
    set_grey_pixels,
    window_attributes,
    write_series,
)

__all__ = [
    "AXIAL",
    "CHEST_HU",
    "CHEST_LABELS",
    "DEMO_NODULES",
    "CORONAL",
    "CT_WINDOWS",
    "GENERATOR_VERSION",
    "IMPLEMENTATION_UID",
    "SAGITTAL",
    "Geometry",
    "PixelCoding",
    "SeriesPlan",
    "base_attributes",
    "chest_xray_phantom",
    "ct_chest_labels",
    "ct_chest_phantom",
    "hot_iron_palette",
    "make_uid",
    "mr_head_phantom",
    "new_dataset",
    "oblique",
    "plan_coding",
    "save",
    "set_grey_pixels",
    "window_attributes",
    "write_4d",
    "write_broken",
    "write_chest_xray",
    "write_mr_series",
    "write_multiframe",
    "write_palette",
    "write_rgb",
    "write_series",
]
