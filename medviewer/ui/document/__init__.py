"""The state of the open study (`StudyDocument`): volume, crosshair, window, layout, reading
aids, AI layers, the reader's annotations and measurements. No widgets: views subscribe to it."""
