"""A cardiothoracic ratio in the SR: one TID 1501 group on its film, valid for dciodvfy (no new
error; the one new warning is the private scheme dciodvfy cannot know), read back by highdicom
with its value, unit, finding site, the two measured segments and a Tracking UID that a second
save of the same film keeps."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.sr.codedict import codes

from medviewer.core import synthetic
from medviewer.core.annotations.sr import write_sr
from medviewer.core.annotations.sr_codes import PRIVATE_SCHEME
from medviewer.core.annotations.sr_ratios import RatioFinding
from medviewer.core.dicom import load_series
from tests.core.annotations.reference_tools import dciodvfy

MODEL = "model:lab5-heart-frcnn@1.0.0"
HEART, THORAX = ((90.5, 150.0), (170.25, 150.0)), ((40.0, 130.5), (216.0, 130.5))


@pytest.fixture(scope="module")
def film(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dx")
    synthetic.write_chest_xray(folder, size=256, seed=1)
    return load_series(folder)


def _ratio(value: float = 0.4545) -> RatioFinding:
    return RatioFinding("Cardiothoracic ratio", value, 0, (HEART, THORAX))


def test_dciodvfy_finds_no_new_error_in_an_sr_with_the_ratio(film, tmp_path):
    plain = write_sr(tmp_path / "plain.dcm", film, [], annotator="Jane Doe", model=MODEL)
    with_ratio = write_sr(tmp_path / "ctr.dcm", film, [], annotator="Jane Doe", model=MODEL,
                          ratios=[_ratio()])
    before = set(dciodvfy(plain))
    new = [line for line in dciodvfy(with_ratio) if line not in before]
    assert not [line for line in new if line.startswith("Error")]
    assert all(PRIVATE_SCHEME in line for line in new)


def test_highdicom_reads_the_ratio_its_image_and_segments(film, tmp_path):
    import highdicom as hd

    path = write_sr(tmp_path / "ctr.dcm", film, [], annotator="Jane Doe", model=MODEL,
                    ratios=[_ratio(0.6213)])
    sr = hd.sr.srread(path)
    (group,) = sr.content.get_image_measurement_groups()
    assert group.tracking_identifier == "cardiothoracic ratio"
    (measurement,) = group.get_measurements()
    assert measurement.name.meaning == "Cardiothoracic ratio"
    assert measurement.value == pytest.approx(0.6213)
    assert (measurement.unit.value, measurement.unit.scheme_designator) == ("{ratio}", "UCUM")
    assert [site.value.value for site in group.finding_sites] == [codes.SCT.Heart.value]
    film_uid = film.sources[0].sop_instance_uid
    assert [s.referenced_sop_instance_uid for s in group.source_images] == [film_uid]
    segments = [item for item in measurement[0].ContentSequence  # the NUM item
                if item.ValueType == "SCOORD"]
    drawn = sorted(tuple(np.asarray(item.GraphicData, float)) for item in segments)
    assert drawn == sorted(tuple(np.ravel(s)) for s in (HEART, THORAX))
    assert sr.CodingSchemeIdentificationSequence[0].CodingSchemeDesignator == PRIVATE_SCHEME


def test_the_same_films_ratio_keeps_its_tracking_uid(film, tmp_path):
    import highdicom as hd

    uids = []
    for value in (0.45, 0.47):  # measured again: the same finding, a new value
        path = write_sr(tmp_path / f"ctr{value}.dcm", film, [], annotator="Jane Doe",
                        model=MODEL, ratios=[_ratio(value)])
        (group,) = hd.sr.srread(path).content.get_image_measurement_groups()
        uids.append(group.tracking_uid)
    assert uids[0] == uids[1]
