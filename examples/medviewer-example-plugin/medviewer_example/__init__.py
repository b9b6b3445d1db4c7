"""An example MedViewer plugin: marks bright structures (bone, calcium, contrast) on CT."""
