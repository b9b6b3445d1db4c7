"""From per-file header facts to the browser's tree: patient -> study -> series stacks.

Built in two steps so that a re-scan can skip the first: `index_row` turns one folder's row
(cached or freshly parsed, see cache.py) into `Instance` objects grouped by series (a
`FolderIndex`, which the scan keeps in its in-process memo), and `build_result` merges the
folders' groups into patients and studies and splits each series into consistent stacks.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import repeat
from operator import attrgetter

from medviewer.core.dicom.cache import IMAGE, PROBLEM, SKIPPED, FolderRow, row_columns
from medviewer.core.dicom.checks import usable_orientation, usable_position
from medviewer.core.dicom.headers import HeaderFacts
from medviewer.core.dicom.model import FileProblem, Instance, Patient, ScanResult, Series, Study

ORIENTATION_TOLERANCE = 1e-3  # direction cosines closer than this are one stack
SERIES_UID = list(HeaderFacts.__dataclass_fields__).index("series_instance_uid")
_GEOMETRY, _POSITION = attrgetter("rows", "columns", "orientation"), attrgetter("position")
Facts = tuple  # HeaderFacts values, by position


@dataclass
class FolderIndex:
    """What one folder's files gave: images grouped by series (key -> (facts, instances)),
    the files that are problems, and how many files were skipped."""

    series: dict[str, tuple[Facts, list[Instance]]] = field(default_factory=dict)
    problems: list[FileProblem] = field(default_factory=list)
    skipped: int = 0


def index_row(folder: str, names: Sequence[str], row: FolderRow) -> FolderIndex:
    """One folder's row (see cache.py; `names` are its file names, split) -> a FolderIndex.
    The per-file work of a re-scan, kept in C where possible: `map(Instance, ...)` over the
    value columns, and one group without a per-file loop when the folder is one series."""
    prefix = os.path.join(folder, "")
    index = FolderIndex()
    marks, reasons = row[2], row[3]
    images = names
    if marks.count(IMAGE) != len(marks):
        images = [n for n, m in zip(names, marks, strict=True) if m == IMAGE]
        troubled = [n for n, m in zip(names, marks, strict=True) if m == PROBLEM]
        index.problems = [FileProblem(prefix + n, r)
                          for n, r in zip(troubled, reasons, strict=True)]
        index.skipped = marks.count(SKIPPED)
    if not images:
        return index
    *columns, facts = row_columns(row)
    instances = list(map(Instance, [prefix + n for n in images], *columns))
    if isinstance(facts, repeat):  # one facts object for the whole folder: one series
        first = row[4][-1]
        index.series[first[SERIES_UID] or f"no-uid:{folder}"] = (first, instances)
    else:
        for facts_of, instance in zip(facts, instances, strict=True):
            key = facts_of[SERIES_UID] or f"no-uid:{folder}"
            index.series.setdefault(key, (facts_of, []))[1].append(instance)
    return index


def build_result(folders: Sequence[FolderIndex], problems: list[FileProblem]) -> ScanResult:
    """Merge the folders' series (a series may span folders) into the sorted tree."""
    result = ScanResult(problems=list(problems))
    series: dict[str, tuple[Facts, list[Instance]]] = {}
    for index in folders:
        for key, (facts, instances) in index.series.items():
            group = series.get(key)
            if group is None:
                series[key] = (facts, list(instances))
            else:
                group[1].extend(instances)
        result.problems.extend(index.problems)
        result.files_skipped += index.skipped
    result.patients = _patients({k: (HeaderFacts(*f), i) for k, (f, i) in series.items()})
    result.problems.sort(key=lambda p: p.path)
    return result


def _patients(series: dict[str, tuple[HeaderFacts, list[Instance]]]) -> list[Patient]:
    """Group series into studies and patients, sorted as a radiologist reads a worklist."""
    patients: dict[tuple[str, str], Patient] = {}
    studies: dict[tuple, Study] = {}
    for uid, (facts, instances) in series.items():
        pkey = (facts.patient_id, facts.patient_name)
        patient = patients.get(pkey)
        if patient is None:
            patient = patients[pkey] = Patient(facts.patient_id, facts.patient_name,
                                               facts.birth_date, facts.sex)
        skey = (pkey, facts.study_instance_uid)
        study = studies.get(skey)
        if study is None:
            study = studies[skey] = Study(facts.study_instance_uid, facts.study_date,
                                          facts.study_time, facts.study_description,
                                          facts.accession_number)
            patient.studies.append(study)
        study.series.extend(_stacks(uid, facts, instances))
    for study in studies.values():
        study.series.sort(key=lambda s: (s.series_number is None, s.series_number or 0,
                                         s.description, s.series_instance_uid, s.stack_index))
    for patient in patients.values():
        patient.studies.sort(key=lambda s: (s.date, s.time, s.study_instance_uid))
    return sorted(patients.values(), key=lambda p: (p.name.upper(), p.patient_id))


def _stacks(uid: str, facts: HeaderFacts, instances: list[Instance]) -> list[Series]:
    """One Series per geometrically consistent stack (orientation and image size)."""
    keys = list(map(_GEOMETRY, instances))  # exact geometry first, in C where it is one
    if keys.count(keys[0]) == len(keys):
        exact = {keys[0]: instances}
    else:
        exact = {}
        for key, instance in zip(keys, instances, strict=True):
            exact.setdefault(key, []).append(instance)
    groups: list[list[Instance]] = []
    for geometry, members in exact.items():  # then merge geometries within tolerance
        twin = next((g for g in groups if _same_geometry(g[0], geometry)), None)
        if twin is None:
            groups.append(members)
        else:
            twin.extend(members)
    groups = [_sorted_in_stack(g) for g in groups]
    if len(groups) > 1:
        groups = _merge_single_images(groups)
        groups.sort(key=lambda g: (min(i.instance_number or 0 for i in g), -len(g)))
    return [
        Series(uid, facts.study_instance_uid, f"{facts.patient_id}|{facts.patient_name}",
               facts.modality, facts.series_number, facts.series_description,
               facts.series_date or facts.study_date, facts.series_time or facts.study_time,
               facts.body_part, k, len(groups), group)
        for k, group in enumerate(groups)
    ]


def _merge_single_images(groups: list[list[Instance]]) -> list[list[Instance]]:
    """Single images of one size in as many orientations (a 3-plane localizer, rotating MIP
    projections) are one stack in acquisition order, not an entry each in the browser; the
    loader shows such a stack image by image, without volume geometry."""
    singles: dict[tuple[int, int], list[Instance]] = {}
    kept = []
    for group in groups:
        if len(group) == 1:
            singles.setdefault((group[0].rows, group[0].columns), []).append(group[0])
        else:
            kept.append(group)
    return kept + [sorted(images, key=_by_number) for images in singles.values()]


def _same_geometry(a: Instance, geometry: tuple) -> bool:
    """Same rows and columns, and direction cosines within ORIENTATION_TOLERANCE."""
    rows, columns, orientation = geometry
    if a.rows != rows or a.columns != columns:
        return False
    mine, theirs = usable_orientation(a.orientation), usable_orientation(orientation)
    if mine is None or theirs is None:  # absent or unusable (NaN, zeros): one stack of them
        return mine is theirs
    return all(abs(x - y) < ORIENTATION_TOLERANCE
               for x, y in zip(a.orientation, orientation, strict=True))


def _sorted_in_stack(instances: list[Instance]) -> list[Instance]:
    """By position along the slice normal (ties, as in 4D, by InstanceNumber); by
    InstanceNumber alone when orientation or positions are missing."""
    o = usable_orientation(instances[0].orientation)
    positions = list(map(_POSITION, instances))
    if o is None or None in positions or not all(map(usable_position, positions)):
        return sorted(instances, key=_by_number)
    nx, ny, nz = o[1] * o[5] - o[2] * o[4], o[2] * o[3] - o[0] * o[5], o[0] * o[4] - o[1] * o[3]
    along = [p[0] * nx + p[1] * ny + p[2] * nz for p in positions]
    if len(set(along)) < len(along):  # repeated positions: phases in InstanceNumber order
        return [i for _, i in sorted(zip(along, instances, strict=True),
                                     key=lambda pair: (pair[0], *_by_number(pair[1])))]
    return [instances[k] for k in sorted(range(len(along)), key=along.__getitem__)]


def _by_number(instance: Instance) -> tuple:
    return instance.instance_number is None, instance.instance_number or 0, instance.path
