"""Lab 2 in the viewer: one nodule / no-nodule score per CT slice.

numpy only. The generic SliceClassifier does the lab's preprocessing from the manifest:
previous / current / next slices in the lung window as 3 channels, resized to the model's
grid, normalised, with [age, sex] read from PatientAge / PatientSex as the `extras` input.
"""

from __future__ import annotations

from medviewer.inference.pipelines import SliceClassifier
from medviewer.inference.registry import Plugin

PLUGIN = Plugin(name="lab2", lab=2, title="Lab 2: slice classification (prev/current/next)",
                pipelines={"classification": SliceClassifier})
