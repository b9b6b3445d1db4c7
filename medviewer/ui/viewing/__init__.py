"""Reading images: slice views, MPR, text overlays, measurements, the tool manager that owns
the mouse, the study browser, the tag panel, cine and view export."""
