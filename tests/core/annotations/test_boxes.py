"""Boxes and class labels: every edit is one undo item that restores the set exactly."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from medviewer.core.annotations import AnnotationError
from medviewer.core.annotations.boxes import (
    ACCEPTED,
    PROPOSED,
    REJECTED,
    SLICE,
    AnnotatedBox,
    BoxSet,
    ClassLabel,
    boxes_from_model,
    distance_line,
    model_source,
)

SOURCE = model_source("lung-det", "1.2.0")


def _detections():
    """Objects shaped like medviewer.inference.results.Box (duck typing: core never imports it)."""
    return [SimpleNamespace(x0=10.25, y0=12.5, x1=20.75, y1=30.0, label="nodule", score=0.91,
                            slice_index=5),
            SimpleNamespace(x0=1, y0=2, x1=5, y1=6, label="nodule", score=0.2, slice_index=7),
            SimpleNamespace(x0=3, y0=3, x1=3, y1=9, label="nodule", score=0.8, slice_index=1)]


def _volume(count=10):
    sources = [SimpleNamespace(sop_instance_uid=f"1.2.3.{k}", path="") for k in range(count)]
    affine = [[0.5, 0, 0, 0], [0, 0.7, 0, 0], [0, 0, 2.0, 0], [0, 0, 0, 1]]
    return SimpleNamespace(sources=sources, affine=affine)


def _snapshot(boxes: BoxSet):
    return boxes.boxes, boxes.class_labels


def test_model_boxes_are_proposed_with_their_slice_uids_and_degenerate_ones_dropped():
    boxes = boxes_from_model(_detections(), _volume(), source=SOURCE)
    assert len(boxes) == 2
    first = boxes.boxes[0]
    assert (first.x0, first.y0, first.x1, first.y1) == (10.25, 12.5, 20.75, 30.0)
    assert first.state == PROPOSED and first.score == 0.91 and first.source == SOURCE
    assert first.sop_instance_uid == "1.2.3.5" and first.is_from_model


def test_each_edit_undoes_and_redoes_exactly():
    boxes = boxes_from_model(_detections(), _volume(), source=SOURCE)
    uid = boxes.boxes[0].uid
    edits = []
    steps = [lambda: boxes.add(AnnotatedBox(1, 1, 4, 4, 2, "mass")),
             lambda: boxes.move(uid, 2.5, -1.0), lambda: boxes.resize(uid, 0, 0, 8, 8),
             lambda: boxes.relabel(uid, "mass"), lambda: boxes.reject(uid),
             lambda: boxes.accept(uid), lambda: boxes.accept_above(0.1),
             lambda: boxes.set_class(ClassLabel("pneumonia")),
             lambda: boxes.set_class(ClassLabel("normal", scope=SLICE, slice_index=3)),
             lambda: boxes.delete(uid)]
    states = [_snapshot(boxes)]
    for step in steps:
        edits.append(step())
        states.append(_snapshot(boxes))
        assert edits[-1].changed
    for edit, before in zip(reversed(edits), reversed(states[:-1]), strict=True):
        edit.undo(boxes)
        assert _snapshot(boxes) == before
    for edit, after in zip(edits, states[1:], strict=True):
        edit.redo(boxes)
        assert _snapshot(boxes) == after


def test_move_and_relabel_change_only_that_box():
    boxes = boxes_from_model(_detections(), _volume(), source=SOURCE)
    a, b = boxes.boxes
    boxes.move(a.uid, 1, 2)
    boxes.relabel(a.uid, "mass")
    moved = boxes.get(a.uid)
    assert (moved.x0, moved.y0, moved.x1, moved.y1, moved.label) == (11.25, 14.5, 21.75, 32.0,
                                                                     "mass")
    assert boxes.get(b.uid) is b


def test_accept_above_a_score_leaves_human_and_decided_boxes_alone():
    boxes = boxes_from_model(_detections(), _volume(), source=SOURCE)
    boxes.add(AnnotatedBox(1, 1, 4, 4, 2, "mass"))
    boxes.accept_above(0.5, reject_rest=True)
    assert [b.state for b in boxes] == [ACCEPTED, REJECTED, ACCEPTED]
    assert boxes.boxes[2].score is None


def test_a_slice_and_the_series_each_have_one_class_at_a_time():
    boxes = BoxSet()
    boxes.set_class(ClassLabel("normal", source=model_source("cls", "2"), score=0.7))
    boxes.set_class(ClassLabel("pneumonia"))  # the radiologist corrects the model
    boxes.set_class(ClassLabel("effusion", scope=SLICE, slice_index=4))
    assert boxes.class_of().label == "pneumonia" and boxes.class_of().source == "annotator"
    assert boxes.class_of(4).label == "effusion" and boxes.class_of(5) is None
    assert len(boxes.class_labels) == 2


def test_an_undo_out_of_order_is_refused():
    boxes = BoxSet()
    first = boxes.add(AnnotatedBox(1, 1, 4, 4, 2, "mass"))
    boxes.add(AnnotatedBox(5, 5, 9, 9, 2, "mass"))
    with pytest.raises(AnnotationError):
        first.undo(boxes)


@pytest.mark.parametrize("kwargs", [dict(x0=5, x1=5), dict(state="maybe"), dict(label=""),
                                    dict(source="someone")])
def test_invalid_boxes_are_refused(kwargs):
    values = dict(x0=1, y0=1, x1=4, y1=4, slice_index=0, label="mass") | kwargs
    with pytest.raises(AnnotationError):
        AnnotatedBox(**values)


def test_distance_line_length_uses_the_pixel_spacing():
    line = distance_line(_volume(), 3, (0, 0), (3, 4))
    assert line.length_mm == pytest.approx((1.5 ** 2 + 2.8 ** 2) ** 0.5)
    assert line.sop_instance_uid == "1.2.3.3"
