"""The Annotate feature: painting tools, boxes, classes, the dock, saving as SEG / SR,
autosave and recovery."""
