"""Test configuration shared by every test folder.

Qt runs headless here (the user never has to set this), and the repository root is importable
even before `pip install -e .`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
