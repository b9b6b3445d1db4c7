"""Split by patient: no patient on both sides, a patient's series together, deterministic."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medviewer.training.errors import TrainingError
from medviewer.training.split import check_no_leak, split_patients, split_record


def _random_cases(rng: np.random.Generator) -> dict[str, str]:
    """2-12 patients with 1-4 series each, case ids not sorted by patient."""
    cases = {}
    for p in range(int(rng.integers(2, 13))):
        for s in range(int(rng.integers(1, 5))):
            cases[f"case-{rng.integers(1 << 30)}-{s}"] = f"PAT-{p:02d}"
    return cases


@pytest.mark.parametrize("seed", range(30))
def test_no_patient_is_on_both_sides_and_every_patient_is_on_one(seed):
    rng = np.random.default_rng(seed)
    cases = _random_cases(rng)
    fraction = float(rng.uniform(0.05, 0.95))
    train, validation = split_patients(cases, fraction, seed)
    assert not set(train) & set(validation)
    assert set(train) | set(validation) == set(cases.values())
    assert train and validation  # at least one patient each side when there are two or more
    record = split_record(cases, dict.fromkeys(cases, "demo:0"), train, validation, fraction,
                          seed)
    check_no_leak(record)
    sides = {c: "train" if p in train else "validation" for c, p in cases.items()}
    for patient in set(cases.values()):  # all series of one patient on the same side
        assert len({sides[c] for c, p in cases.items() if p == patient}) == 1


def test_two_series_of_one_patient_stay_together_for_every_seed():
    cases = {"P1/2 CHEST": "P1", "P1/3 CHEST LUNG": "P1", "P2/2": "P2", "P3/2": "P3",
             "P4/1": "P4"}
    seen = set()
    for seed in range(40):
        train, validation = split_patients(cases, 0.5, seed)
        side = "train" if "P1" in train else "validation"
        seen.add(side)
        assert ("P1" in train) != ("P1" in validation)
        assert len(validation) == 2  # round(0.5 * 4)
        assert side == ("train" if cases["P1/3 CHEST LUNG"] in train else "validation")
    assert seen == {"train", "validation"}  # the seed really moves patients around


def test_the_split_depends_on_patients_and_seed_not_on_case_order():
    cases = {f"c{i}": f"P{i % 7}" for i in range(21)}
    shuffled = dict(reversed(list(cases.items())))
    assert split_patients(cases, 0.3, 5) == split_patients(shuffled, 0.3, 5)
    splits = {tuple(split_patients(cases, 0.3, s)[1]) for s in range(10)}
    assert len(splits) > 1


def test_the_fraction_sets_the_number_of_validation_patients():
    cases = {f"c{i}": f"P{i}" for i in range(8)}
    assert len(split_patients(cases, 0.25, 0)[1]) == 2
    assert len(split_patients(cases, 0.01, 0)[1]) == 1  # never none
    assert len(split_patients(cases, 0.99, 0)[0]) == 1  # never all


def test_one_patient_is_not_enough_to_split():
    with pytest.raises(TrainingError) as error:
        split_patients({"a": "P1", "b": "P1"}, 0.25, 0, where="job.json")
    assert "at least two patients" in error.value.reason and "P1" in error.value.reason
    assert error.value.path == "job.json"


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.2, 1.5])
def test_a_fraction_outside_0_1_is_refused(fraction):
    with pytest.raises(TrainingError, match="val_fraction"):
        split_patients({"a": "P1", "b": "P2"}, fraction, 0)


def test_the_record_is_json_with_the_contract_keys_and_a_tampered_one_is_caught():
    cases = {"a": "P1", "b": "P2", "c": "P2"}
    train, validation = split_patients(cases, 0.5, 1)
    record = split_record(cases, {"a": "workspace:/x/seg.dcm", "b": "demo:30000",
                                  "c": "demo:30001"}, train, validation, 0.5, 1,
                          warnings=["w"])
    back = json.loads(json.dumps(record))
    assert {"seed", "val_fraction", "train", "validation", "cases", "sources"} <= set(back)
    assert back["cases"] == cases and back["warnings"] == ["w"]
    back["validation"].append(back["train"][0])
    with pytest.raises(TrainingError, match="both"):
        check_no_leak(back)
