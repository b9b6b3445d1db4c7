"""What a de-identification removed or changed, per tag group, and what it could not clean.

The counts come from comparing every element of each dataset (file meta, sequences and the SR
content tree included) before and after, so the report says what actually happened, whichever
step did it. It names no original value: it can travel with the export. Skipped source files
are listed by path only when asked (`sources=True`): a source path often holds a patient ID.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pydicom.datadict import keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag

PRIVATE, NAMES, UIDS, DATES = "private tags", "person names", "UIDs", "dates and times"
CHARACTERISTICS, DESCRIPTORS = "patient characteristics", "descriptors"
IDENTIFIERS, PLACES, OVERLAYS, OTHER = ("identifiers", "institution and equipment",
                                        "overlays and curves", "other")
PATIENT_CHARACTERISTICS = frozenset({
    "PatientAge", "PatientSize", "PatientWeight", "PatientSex", "EthnicGroup", "SmokingStatus",
    "PregnancyStatus", "PatientSexNeutered", "AdditionalPatientHistory", "Allergies",
    "MedicalAlerts", "PatientState", "SpecialNeeds", "PatientSizeCodeSequence"})
_PLACE_WORDS = ("Institution", "Station", "Address", "Department", "Manufacturer", "Device",
                "Location", "Residence", "Telephone", "Telecom")


def is_descriptor(keyword: str) -> bool:
    """Free-text description or comment attributes (PS3.15 Table E.1-1 marks them X, or C
    under the Clean Descriptors Option)."""
    return keyword.endswith(("Description", "Comments", "Comment")) or keyword in {
        "ProtocolName", "ReasonForStudy", "ReasonForTheRequestedProcedure",
        "ContrastBolusAgent", "AdmittingDiagnosesDescription", "Occupation"}


def tag_group(tag: BaseTag, vr: str) -> str:
    """The report group of one element."""
    if tag.is_private:
        return PRIVATE
    if tag.group & 0xFF00 in (0x5000, 0x6000):
        return OVERLAYS
    if vr in ("PN", "UI"):
        return NAMES if vr == "PN" else UIDS
    if vr in ("DA", "DT", "TM"):
        return DATES
    keyword = keyword_for_tag(tag) or ""
    if keyword in PATIENT_CHARACTERISTICS:
        return CHARACTERISTICS
    if is_descriptor(keyword):
        return DESCRIPTORS
    if keyword.endswith(("ID", "IDs", "Number", "Numbers")) or "Identifier" in keyword:
        return IDENTIFIERS
    return PLACES if any(w in keyword for w in _PLACE_WORDS) else OTHER


def flatten(ds: Dataset, prefix: tuple = ()) -> dict[tuple, tuple[str, str]]:
    """Every leaf element as path -> (VR, value text); sequences are walked item by item."""
    out: dict[tuple, tuple[str, str]] = {}
    for elem in ds:
        path = (*prefix, elem.tag)
        if elem.VR == "SQ":
            for i, item in enumerate(elem.value or ()):
                out.update(flatten(item, (*path, i)))
        elif elem.tag == 0x7FE00010 or elem.VR in ("OB", "OW", "OF", "OD", "OL", "OV", "UN"):
            out[path] = (elem.VR, f"{len(elem.value or b'')} bytes")
        else:
            out[path] = (elem.VR, str(elem.value))
    return out


@dataclass
class DeidReport:
    """Counts per tag group of elements removed and changed, and sentences about what could
    not be cleaned (burned-in pixels kept under 'warn', unreadable dates emptied, ...)."""

    datasets: int = 0
    written: int = 0
    removed: Counter = field(default_factory=Counter)
    changed: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (source path, sentence)
    cancelled: bool = False

    def problem(self, sentence: str) -> None:
        if sentence not in self.problems:  # one line per kind of trouble, not per file
            self.problems.append(sentence)

    def skip(self, path: str, reason: str) -> None:
        self.skipped.append((str(path), reason))

    def compare(self, before: Dataset, after: Dataset) -> None:
        """Count what changed between one dataset and its de-identified copy."""
        self.datasets += 1
        old, new = _with_meta(before), _with_meta(after)
        for path, (vr, value) in old.items():
            inside_private = any(isinstance(t, BaseTag) and t.is_private for t in path)
            group = PRIVATE if inside_private else tag_group(path[-1], vr)
            if path not in new:
                self.removed[group] += 1
            elif new[path][1] != value:
                self.changed[group] += 1

    def to_dict(self, *, sources: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "datasets": self.datasets, "written": self.written,
            "removed": dict(sorted(self.removed.items())),
            "changed": dict(sorted(self.changed.items())),
            "could_not_clean": list(self.problems), "skipped": len(self.skipped),
            "cancelled": self.cancelled}
        if sources:
            out["skipped_files"] = [{"path": p, "reason": r} for p, r in self.skipped]
        return out

    def text(self, *, sources: bool = False) -> str:
        lines = [f"De-identified {self.datasets} dataset(s), wrote {self.written} file(s)."
                 + (" Cancelled before the end." if self.cancelled else "")]
        for title, counts in (("Removed", self.removed), ("Changed", self.changed)):
            if counts:
                lines.append(f"{title}: " + ", ".join(f"{group} {n}" for group, n
                                                      in sorted(counts.items())) + ".")
        if self.problems:
            lines += ["Could not clean:"] + [f"- {p}" for p in self.problems]
        if self.skipped:
            lines.append(f"Skipped {len(self.skipped)} file(s)"
                         + (":" if sources else " (their paths are left out: they may name "
                            "the patient)."))
            lines += [f"- {p}: {r}" for p, r in self.skipped] if sources else []
        return "\n".join(lines)


def _with_meta(ds: Dataset) -> dict[tuple, tuple[str, str]]:
    meta = getattr(ds, "file_meta", None)
    return {**(flatten(meta, ("meta",)) if meta is not None else {}), **flatten(ds)}
