"""Fixtures of the dataset export tests."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.core.dataset.studies import make_studies


@pytest.fixture
def studies(tmp_path: Path) -> SimpleNamespace:
    """Two patients' annotated series (see tests/core/dataset/studies.py)."""
    return make_studies(tmp_path)
