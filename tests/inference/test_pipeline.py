"""The inference template (batching, progress, cancel, timings) and the generic pipelines."""

from __future__ import annotations

import numpy as np
import pytest

from medviewer.inference import InferenceCancelled, ModelError, Pipeline
from medviewer.inference import preprocess as pp
from medviewer.inference.manifest import manifest_from_dict
from medviewer.inference.pipelines import SliceClassifier, SliceSegmenter
from medviewer.inference.session import ModelSession

from .tiny import classifier_onnx, fake_volume, manifest_dict, segmenter_onnx

CPU = ["CPUExecutionProvider"]


class FakeSession:
    """Records what the template feeds the model; answers one zero row per sample."""

    provider = "FakeExecutionProvider"

    def __init__(self) -> None:
        self.batches: list[int] = []

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.batches.append(len(inputs["first_pixel"]))
        return {"out": inputs["first_pixel"]}


class Recorder(Pipeline):
    """Keeps the slice indices and the voxels it was given."""

    def preprocess(self, voxels, batch, volume):
        self.voxels = voxels
        return {"first_pixel": voxels[batch, 0, 0].astype(np.float32)}

    def postprocess(self, outputs, batch, voxels, result):
        result.boxes.extend(batch)  # any list will do to record the order

    def finish(self, result, voxels):
        result.title = "finished"


def recorder(batch_size: int = 8, series_level: bool = False, **manifest) -> Recorder:
    pipeline = Recorder(manifest_from_dict(manifest_dict(**manifest)), FakeSession())
    pipeline.batch_size = batch_size
    pipeline.series_level = series_level
    return pipeline


def volume(n: int = 20, modality: str = "CT"):
    return fake_volume(np.arange(n * 4 * 4, dtype=np.int16).reshape(n, 4, 4), modality)


def test_batches_progress_and_order() -> None:
    pipeline = recorder(batch_size=8)
    calls = []
    result = pipeline.run(volume(20), progress=lambda done, total: calls.append((done, total)))
    assert pipeline.session.batches == [8, 8, 4]
    assert calls == [(1, 3), (2, 3), (3, 3)]
    assert result.boxes == list(range(20))
    assert result.slice_indices == list(range(20))
    assert result.title == "finished"
    assert result.provider == "FakeExecutionProvider"
    assert result.sop_instance_uids[:2] == ["1.2.3.0", "1.2.3.1"]
    assert result.series_instance_uid == "1.2.3"


def test_chosen_slices_only() -> None:
    pipeline = recorder(batch_size=2)
    result = pipeline.run(volume(20), [5, 3, 19])
    assert pipeline.session.batches == [2, 1]
    assert result.boxes == [5, 3, 19] and result.slice_indices == [5, 3, 19]
    assert result.sop_instance_uids == ["1.2.3.5", "1.2.3.3", "1.2.3.19"]


def test_timings_of_each_stage() -> None:
    result = recorder().run(volume(4))
    assert set(result.timings) == {"preprocess", "inference", "postprocess", "total"}
    assert all(t >= 0 for t in result.timings.values())
    parts = sum(result.timings[k] for k in ("preprocess", "inference", "postprocess"))
    assert result.timings["total"] == pytest.approx(parts)


def test_cancel_between_batches() -> None:
    pipeline = recorder(batch_size=4)
    asked = []

    def cancelled() -> bool:
        asked.append(1)
        return len(asked) > 2  # stop before the third batch

    with pytest.raises(InferenceCancelled):
        pipeline.run(volume(20), cancelled=cancelled)
    assert pipeline.session.batches == [4, 4]


def test_cancel_before_anything_runs() -> None:
    pipeline = recorder()
    with pytest.raises(InferenceCancelled):
        pipeline.run(volume(3), cancelled=lambda: True)
    assert pipeline.session.batches == []


@pytest.mark.parametrize("bad", [[20], [-1], [0, 25]])
def test_slices_outside_the_series(bad: list[int]) -> None:
    with pytest.raises(ModelError, match="outside this series"):
        recorder().run(volume(20), bad)


def test_modality_filter() -> None:
    with pytest.raises(ModelError, match="reads CT images; this series is MR"):
        recorder().run(volume(3, modality="MR"))
    with pytest.raises(ModelError, match="unknown modality"):
        recorder().run(volume(3, modality=""))
    any_modality = {**manifest_dict()["input"], "modalities": []}
    assert recorder(input=any_modality).run(volume(3, modality="MR")).boxes == [0, 1, 2]


def test_series_level_runs_one_batch_over_all_slices() -> None:
    pipeline = recorder(batch_size=2, series_level=True)
    result = pipeline.run(volume(7), [1, 2])  # a series-level model ignores the slice choice
    assert pipeline.session.batches == [7]
    assert result.slice_indices == []


def test_time_series_takes_the_first_time_point() -> None:
    voxels = np.stack([np.zeros((3, 4, 4), np.int16), np.ones((3, 4, 4), np.int16)])
    pipeline = recorder()
    pipeline.run(fake_volume(voxels))
    assert pipeline.voxels.shape == (3, 4, 4) and not pipeline.voxels.any()


def test_colour_is_reduced_to_grey() -> None:
    rgb = np.zeros((2, 4, 4, 3), np.uint8)
    rgb[..., 0] = 30
    vol = fake_volume(rgb)
    vol.is_colour = True
    pipeline = recorder()
    pipeline.run(vol)
    assert pipeline.voxels.shape == (2, 4, 4)
    assert np.allclose(pipeline.voxels, 10)


def test_single_image_becomes_one_slice() -> None:
    vol = fake_volume(np.ones((1, 4, 4)))
    vol.voxels = np.ones((4, 4))
    pipeline = recorder()
    assert pipeline.run(vol).boxes == [0]


# --- the generic pipelines on real ONNX Runtime sessions -------------------------------------

def test_slice_classifier_scores(make_model) -> None:
    onnx_bytes, weights = classifier_onnx()
    m = make_model(onnx_bytes=onnx_bytes)
    pipeline = SliceClassifier(m, ModelSession(m, CPU, threads=1))
    pipeline.batch_size = 3
    voxels = np.random.default_rng(0).integers(-1000, 400, (5, 16, 16)).astype(np.int16)
    result = pipeline.run(fake_volume(voxels), [0, 2, 4, 1])
    assert result.scores.shape == (4, 2)
    assert result.scores.sum(axis=1) == pytest.approx(np.ones(4))
    x = pp.prepare_slices(voxels, [0, 2, 4, 1], m.input)
    expected = pp.softmax((x.reshape(4, -1) @ weights).astype(np.float64))
    np.testing.assert_allclose(result.scores, expected, rtol=1e-5)
    assert result.predicted(1)[0] == m.label_names[int(np.argmax(expected[1]))]


def test_slice_classifier_feeds_age_and_sex(make_model) -> None:
    """The extras input gets PatientAge / PatientSex, one row per slice of the batch."""
    seen = {}

    class Spy(SliceClassifier):
        def preprocess(self, voxels, batch, vol):
            inputs = super().preprocess(voxels, batch, vol)
            seen.update(inputs)
            return {"image": inputs["image"]}

    spec = {**manifest_dict()["input"], "extras": ["age", "sex"]}
    m = make_model(input=spec)
    pipeline = Spy(m, ModelSession(m, CPU))
    voxels = np.zeros((3, 8, 8), np.int16)
    pipeline.run(fake_volume(voxels, PatientAge="070Y", PatientSex="M"))
    np.testing.assert_allclose(seen["extras"], [[0.7, 1.0]] * 3, rtol=1e-6)


def test_slice_segmenter_label_map_in_the_volume_grid(make_model) -> None:
    m = make_model(onnx_bytes=segmenter_onnx(), task="segmentation",
                   input={**manifest_dict()["input"], "window": [0, 2]})  # -1 .. 1
    pipeline = SliceSegmenter(m, ModelSession(m, CPU))
    voxels = np.full((3, 16, 16), -1000, np.int16)
    voxels[1, 4:12, 0:8] = 1000  # a block on slice 1, on the 2x2 grid of the 8x8 input
    result = pipeline.run(fake_volume(voxels), [1, 2])
    assert result.label_map.shape == voxels.shape and result.label_map.dtype == np.uint8
    expected = np.zeros((16, 16), np.uint8)
    expected[4:12, 0:8] = 1
    assert np.array_equal(result.label_map[1], expected)
    assert not result.label_map[0].any() and not result.label_map[2].any()
