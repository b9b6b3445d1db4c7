"""Every series of pydicom's bundled data, opened in the real window as a reader would.

Those files are deliberately varied (codecs, colour, multi-frame, odd headers, broken ones):
each series must load, or fail with the loader's sentence in the status bar; never an
unexpected error, never a hang.
"""

from __future__ import annotations

from pathlib import Path

import pydicom

DATA = Path(pydicom.__file__).parent / "data"


def _open_and_wait(window, qtbot, series) -> str:
    outcome: list[str] = []
    window.volume_loaded.connect(lambda _v: outcome.append("loaded"))
    window.load_failed.connect(lambda _m: outcome.append("failed"))
    try:
        window.open_series(series)
        qtbot.waitUntil(lambda: bool(outcome), timeout=10_000)
    finally:
        window.volume_loaded.disconnect()
        window.load_failed.disconnect()
    return outcome[0]


def test_every_bundled_series_opens_or_says_why(make_main_window, qtbot):
    window = make_main_window()
    with qtbot.waitSignal(window.scan_finished, timeout=20_000) as blocker:
        window.open_path(DATA)
    all_series = blocker.args[0].all_series()
    outcomes = {}
    for series in all_series:
        outcomes[series.key] = _open_and_wait(window, qtbot, series)
        assert "Unexpected" not in window.status_label.text(), series.description
        if outcomes[series.key] == "loaded":
            window.document.set_slice(window.document.slice_count - 1)
            window.viewer.set_layout("mpr")  # refused where the images are no volume
            assert window.viewer.single_view.image_item.image is not None or \
                window.document.layout == "mpr"
            window.viewer.set_layout("1x1")
        else:
            assert window.last_error.startswith("Could not load series"), window.last_error
    loaded = sum(o == "loaded" for o in outcomes.values())
    assert len(all_series) >= 40 and loaded >= len(all_series) - 2
