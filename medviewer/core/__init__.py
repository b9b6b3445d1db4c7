"""Core: numpy + pydicom only. No Qt, no torch (checked by tests/core/test_layers.py)."""
