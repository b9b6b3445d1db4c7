"""The retrain dialog's views of a segmentation run: the latest epoch's per-label table while
it trains, and both versions' per-label scores side by side at the end (labels as rows,
metrics as columns with units; HD95 better when lower)."""

from __future__ import annotations

import numpy as np
import pytest

from medviewer.training.metrics import segmentation_scores
from medviewer.ui.training.compare import CompareView, ProgressView
from medviewer.ui.training.process import RunHistory, describe_event
from tests.inference.test_metrics_reference import _blobs

LABELS = ["background", "lung", "nodule"]


def _scores(noise: float) -> dict:
    """Validation scores of a model that gets `noise` of the voxels wrong, as a run's."""
    rng = np.random.default_rng(3)
    truth = [_blobs(rng, (32, 32)) for _ in range(4)]
    pred = [np.where(rng.random(t.shape) < noise, rng.integers(0, 3, t.shape), t)
            for t in truth]
    return segmentation_scores(pred, truth, LABELS, ["a", "a", "b", "b"])


def _texts(table) -> tuple[list[str], list[list[str]]]:
    heads = [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())]
    return heads, [[table.item(r, c).text() for c in range(table.columnCount())]
                   for r in range(table.rowCount())]


def test_both_versions_per_label_side_by_side_hd95_better_when_lower(qtbot):
    current, candidate = _scores(0.2), _scores(0.05)
    assert candidate["hd95_px_lung"] < current["hd95_px_lung"]  # the better model
    view = CompareView()
    qtbot.add_widget(view)
    view.resize(900, 900)
    view.show_compare({"main_metric": "dice", "current": {"version": "1.0.0", "metrics": current},
                       "candidate": {"version": "1.1.0", "metrics": candidate}})
    names = [view.table.item(r, 0).text() for r in range(view.table.rowCount())]
    assert names[0].startswith("dice") and "hd95_px" in names and "pixel_accuracy" in names
    assert not any(n.endswith(("_lung", "_nodule")) for n in names)  # in the label table
    hd95 = names.index("hd95_px")
    assert view.table.item(hd95, 2).font().bold()  # the candidate's: lower is better
    assert not view.table.item(hd95, 1).font().bold()
    assert "lower is better" in view.table.item(hd95, 2).toolTip()

    heads, rows = _texts(view.labels_table)
    assert view.labels_table.isVisibleTo(view)
    assert "Current 1.0.0 \u2192 Candidate 1.1.0" in view.labels_title.text()
    assert heads[1:] == ["Dice", "IoU", "Precision", "Recall", "BF1 (2 px)", "HD95 (px)"]
    lung = next(r for r, row in enumerate(rows) if row[0] == "lung")
    assert rows[lung][6] == (f"{current['hd95_px_lung']:.4f} \u2192 "
                             f"{candidate['hd95_px_lung']:.4f}")
    assert view.labels_table.item(lung, 6).font().bold()
    assert view.labels_table.item(lung, 1).font().bold()  # higher Dice
    view.grab().save("/tmp/s21/h2_compare_view.png")


def test_a_classifier_comparison_has_no_label_table(qtbot):
    view = CompareView()
    qtbot.add_widget(view)
    view.show_compare({"main_metric": "roc_auc",
                       "current": {"metrics": {"roc_auc": 0.8, "accuracy": 0.7}},
                       "candidate": {"metrics": {"roc_auc": 0.9, "accuracy": 0.6}}})
    assert view.table.rowCount() == 2 and view.labels_table.rowCount() == 0
    assert not view.labels_table.isVisibleTo(view)
    assert not view.labels_title.isVisibleTo(view)


@pytest.mark.parametrize("epochs", [1, 2])
def test_each_epoch_shows_its_per_label_table_and_a_short_log_line(qtbot, epochs):
    view = ProgressView()
    qtbot.add_widget(view)
    history = RunHistory()
    assert not view.epoch_table.isVisibleTo(view)
    for epoch in range(1, epochs + 1):
        metrics = {k: v for k, v in _scores(0.3 / epoch).items() if k != "per_case"}
        event = {"event": "epoch", "epoch": epoch, "epochs": 2, "train_loss": 1.0 / epoch,
                 "val_loss": 1.1 / epoch, "metrics": metrics, "main_metric": "dice"}
        history.add(event)
        view.show_history(history)
    heads, rows = _texts(view.epoch_table)
    assert view.epoch_table.isVisibleTo(view) and [r[0] for r in rows] == ["lung", "nodule"]
    assert rows[0][heads.index("Recall")] == f"{metrics['recall_lung']:.4f}"
    assert f"after epoch {epochs}" in view.epoch_label.text()
    assert f"mean IoU {metrics['mean_iou']:.4f}" in view.epoch_label.text()
    line = describe_event(event)
    assert "dice " in line and "hd95_px " in line and "_lung" not in line
    view.grab().save("/tmp/s21/h2_progress_view.png")
