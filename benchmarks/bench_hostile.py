"""Issue 12's "done when" figures: hostile inputs end fast, small and with a sentence.

    python3 benchmarks/bench_hostile.py

1. A folder holding a 40-slice series and symlinks to `/` and `/proc/self`: scan time (the
   baseline: the same folder without the links) and the links' Problem rows.
2. The header bombs of tests/core/test_hostile_headers.py (a 3.3 KB JPEG 2000 file declaring
   2^31 - 1 frames, ...): seconds to the DicomError and the peak memory above the imports, in
   a fresh interpreter.
Prints a markdown table. (Two concurrent saves: tests/core/annotations/test_atomic_save.py.)
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "core"))

from test_hostile_headers import _MEASURE, BOMBS, TEST_FILES, _edited  # noqa: E402

from medviewer.core import synthetic as syn  # noqa: E402
from medviewer.core.dicom import index, scan  # noqa: E402


def _scan_seconds(folder: Path) -> tuple[float, object]:
    index.MEMO.clear()
    start = time.perf_counter()
    result = scan(folder, cache=False, workers=1)
    return time.perf_counter() - start, result


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        plain, linked = Path(tmp) / "plain", Path(tmp) / "linked"
        voxels = np.zeros((40, 64, 64), np.int16)
        syn.write_series(plain / "ct", voxels)
        syn.write_series(linked / "ct", voxels)
        (linked / "root").symlink_to("/")
        (linked / "ct" / "self").symlink_to("/proc/self")
        base_s, _ = _scan_seconds(plain)
        link_s, result = _scan_seconds(linked)
        reported = sorted(Path(p.path).name for p in result.problems)
        print("| case | seconds | baseline | result |\n|---|---|---|---|")
        print(f"| scan of a 40-slice folder with links to / and /proc/self | {link_s:.3f} | "
              f"{base_s:.3f} (no links) | {result.all_series()[0].image_count} images; "
              f"Problem rows: {', '.join(reported)} |")

        paths = [_edited(TEST_FILES / src, Path(tmp) / f"{name}.dcm", **values)
                 for name, (src, values) in BOMBS.items()]
        done = subprocess.run([sys.executable, "-c", _MEASURE, *map(str, paths)], cwd=ROOT,
                              capture_output=True, text=True, timeout=300, check=True)
        measured = json.loads(done.stdout)
        for path in paths:
            r = measured[str(path)]
            print(f"| {path.stem} ({path.stat().st_size / 1024:.1f} KB) | {r['seconds']:.4f} "
                  f"| | refused, peak +{r['peak_mb'] - measured['base_mb']:.1f} MB: "
                  f"{(r['reason'] or 'LOADED')[:90]} |")


if __name__ == "__main__":
    main()
