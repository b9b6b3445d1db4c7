"""Display mapping (a view concern): modality values -> 8-bit grey, per frame.

CONTRACT (implementation in progress):

    Window(center, width, explanation="", function="LINEAR")
    windows_from_dataset(ds) -> list[Window]        # every listed value, with explanations
    default_window(volume_or_array, windows) -> Window
    to_display(frame, window, *, voi_lut=None, voi_lut_first=0, invert=False) -> uint8 array
        LINEAR / LINEAR_EXACT / SIGMOID per PS3.3 C.11.2.1.2; VOI LUT when given;
        invert for MONOCHROME1.
    CT_PRESETS: dict name -> Window (brain, lung, mediastinum, abdomen, bone)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    center: float
    width: float
    explanation: str = ""
    function: str = "LINEAR"  # LINEAR, LINEAR_EXACT or SIGMOID (VOILUTFunction)
