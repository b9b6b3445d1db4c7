"""Annotations on a Siemens mosaic series: the SR references the mosaic image with coordinates
on its stored pixel grid (the tile's place added), read back onto the right slice; a SEG, which
can reference only whole images, is refused with the reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from medviewer.core.annotations import seg, sr
from medviewer.core.annotations.boxes import AnnotatedBox, DistanceLine
from medviewer.core.annotations.seg import AnnotationError
from medviewer.core.dicom.volume import load_series
from tests.core.mosaic_files import mosaic_volumes, write_mosaics


@pytest.fixture
def mosaic(tmp_path: Path):
    """A 9-slice mosaic (3 x 3 tiles of 16 x 16) and its loaded volume."""
    (path,) = write_mosaics(tmp_path / "dicom", mosaic_volumes(1, 9, rows=16, columns=16))
    return path, load_series(path)


def _regions(ds: pydicom.Dataset) -> list[np.ndarray]:
    """Every SCOORD's points (x, y) in document order."""
    found = []
    for item in ds.ContentSequence:
        if "GraphicData" in item:
            found.append(np.array(item.GraphicData, float).reshape(-1, 2))
        if "ContentSequence" in item:
            found += _regions(item)
    return found


def test_sr_on_a_mosaic_points_at_the_tile_and_reads_back(mosaic, tmp_path: Path) -> None:
    path, volume = mosaic
    boxes = [AnnotatedBox(2, 3, 6, 7, 4, "nodule"), AnnotatedBox(1, 1, 3, 5, 7, "nodule")]
    ruler = DistanceLine(8, (1.0, 2.0), (9.0, 12.0), 20.0)
    out = sr.write_sr(tmp_path / "sr.dcm", volume, boxes, [ruler], annotator="reader")
    stored = pydicom.dcmread(path).pixel_array  # the mosaic grid as a PACS shows it
    regions = _regions(pydicom.dcmread(out))
    assert len(regions) == 3
    for (k, x, y), points in zip([(4, 2, 3), (7, 1, 1), (8, 1, 2)], regions, strict=True):
        col, row = points[0].astype(int)
        assert stored[row, col] == volume.voxels[k, y, x]  # the same pixel the reader marked
    sr.sidecar_path_for(out).unlink()  # read from the DICOM alone, as another viewer would
    back = sr.read_sr(out, volume)
    assert [(b.slice_index, b.x0, b.y0, b.x1, b.y1) for b in back.boxes] == \
        [(4, 2, 3, 6, 7), (7, 1, 1, 3, 5)]
    (line,) = back.lines
    assert line.slice_index == 8 and line.start == (1.0, 2.0) and line.end == (9.0, 12.0)


def test_seg_on_a_mosaic_is_refused_with_the_reason(mosaic, tmp_path: Path) -> None:
    _, volume = mosaic
    labels = np.zeros(volume.voxels.shape, np.uint8)
    labels[4, 3:8, 3:8] = 1
    with pytest.raises(AnnotationError) as refused:
        seg.write_seg(labels, volume, ["background", "lesion"], tmp_path / "seg.dcm")
    assert "Siemens mosaic" in refused.value.reason  # not "legacy multi-frame": it is not one
    assert not (tmp_path / "seg.dcm").exists()
