"""Result types shared by the DIMSE and DICOMweb clients, the facade, the CLI and the UI."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

#: progress(done, total): called after each instance is stored (total may be 0 if unknown).
Progress = Callable[[int, int], None]
#: cancelled() -> True asks a running retrieve to stop (it raises PacsCancelled).
Cancelled = Callable[[], bool]


@dataclass(frozen=True)
class StudyHit:
    study_uid: str
    patient_name: str = ""
    patient_id: str = ""
    study_date: str = ""  # YYYYMMDD as the server sent it ("" when unknown)
    accession: str = ""
    modalities: tuple[str, ...] = ()
    description: str = ""
    series_count: int | None = None
    instance_count: int | None = None


@dataclass(frozen=True)
class SeriesHit:
    series_uid: str
    modality: str = ""
    number: int | None = None
    description: str = ""
    instance_count: int | None = None


@dataclass
class RetrieveResult:
    stored: list[Path] = field(default_factory=list)  # files written by this retrieve
    skipped: int = 0  # instances the store already had (not fetched again)
    failed: list[str] = field(default_factory=list)  # SOP instance UIDs or sentences


@dataclass
class SendResult:
    accepted: list[str] = field(default_factory=list)  # SOP instance UIDs the server stored
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path or UID, sentence)
