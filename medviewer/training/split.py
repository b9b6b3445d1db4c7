"""Train / validation split by patient, and the split.json record that is saved beside a run.

Why by patient: two series of one patient (or slices of one series) look alike, so a model
that saw one of them in training would score too well on the other. Every case of a patient
lands on the same side. The split is a pure function of the patient ids, the seed and the
fraction: the same job splits the same way on any machine, and the saved record lets the
comparison of two model versions use exactly the same validation patients.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from medviewer.training.errors import TrainingError


def split_patients(cases: Mapping[str, str], val_fraction: float, seed: int, *,
                   where: Any = None) -> tuple[list[str], list[str]]:
    """(training patients, validation patients), each sorted; `cases` maps case -> patient.

    round(val_fraction * patients) go to validation, at least one and at most all but one.
    The order is a seeded permutation of the sorted ids, so it never depends on the order
    the cases were found in.
    """
    if not 0.0 < float(val_fraction) < 1.0:
        raise TrainingError(where, f"val_fraction is {val_fraction}; it must lie between 0 "
                            "and 1 (for example 0.25), so both training and validation get "
                            "patients.")
    patients = sorted(set(cases.values()))
    if len(patients) < 2:
        found = f"only {len(patients)} ({', '.join(patients)})" if patients else "none"
        raise TrainingError(where, "Training needs cases of at least two patients to keep "
                            f"validation apart from training; this job has {found}. Add "
                            "annotated series of another patient, or demo cases (data.demo).")
    count = min(max(round(val_fraction * len(patients)), 1), len(patients) - 1)
    order = np.random.default_rng(int(seed)).permutation(len(patients))
    validation = sorted(patients[i] for i in order[:count])
    chosen = set(validation)
    return [p for p in patients if p not in chosen], validation


def split_record(cases: Mapping[str, str], sources: Mapping[str, str], train: Sequence[str],
                 validation: Sequence[str], val_fraction: float, seed: int,
                 **extra: Any) -> dict[str, Any]:
    """What split.json holds (the contract's keys first, then `extra`: warnings, counts...)."""
    return {"seed": int(seed), "val_fraction": float(val_fraction), "train": list(train),
            "validation": list(validation), "cases": dict(cases), "sources": dict(sources),
            **extra}


def check_no_leak(record: Mapping[str, Any]) -> None:
    """Raise when a patient is on both sides or a case's patient on neither (a broken file)."""
    both = set(record["train"]) & set(record["validation"])
    if both:
        raise TrainingError(None, f"Patients {sorted(both)} are in both training and "
                            "validation; the split is broken, make a new one.")
    sides = set(record["train"]) | set(record["validation"])
    lost = sorted({p for p in record["cases"].values() if p not in sides})
    if lost:
        raise TrainingError(None, f"Patients {lost} are in neither training nor validation; "
                            "the split is broken, make a new one.")
