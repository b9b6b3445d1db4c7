"""De-identification of DICOM datasets (PS3.15 Annex E, Basic Application Level
Confidentiality Profile, with the Retain Longitudinal Temporal Information Modified Dates and
Clean Descriptors options as choices). See docs/deidentification.md.

    deid = Deidentifier(DeidOptions(key="site secret"))
    clean = deid.dataset(ds)            # a copy; ds is untouched
    deid.pseudonym("DEMO-0001"), deid.uid(original_uid), deid.report, deid.pseudonym_table()

dicognito does the element work: every UID except class and transfer syntax UIDs is mapped
from a hash of the key and the UID (so images, SEG and SR keep referring to each other), every
person name and the identifying IDs get dummy values, addresses and equipment are replaced,
dates are shifted. Around it this module adds what the profile asks and dicognito does not:
a date shift per patient (dicognito's is one per key) or date removal, private tags and
overlays removed, the patient characteristics and descriptors of Table E.1-1, a last pass that
cleans any text still holding an original name, ID, date or UID, the burned-in annotation
check, and the PatientIdentityRemoved / DeidentificationMethod(CodeSequence) marks.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Any

import dicognito
import pydicom
from dicognito.anonymizer import Anonymizer
from dicognito.datetimeanonymizer import DateTimeAnonymizer
from dicognito.element_anonymizer import ElementAnonymizer
from dicognito.randomizer import Randomizer
from dicognito.uianonymizer import UIAnonymizer
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.sr.codedict import codes
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID

from medviewer.core.dataset.deid_report import (
    PATIENT_CHARACTERISTICS,
    DeidReport,
    is_descriptor,
)

WELL_KNOWN_ROOT = "1.2.840.10008."  # DICOM's own UIDs (SOP classes, templates, code schemes)
SHIFT_DAYS = (62, 730)  # dates move this many days into the past (per patient, from the key)
PSEUDONYM_PREFIX = "ANON-"
DUMMY_DATE, DUMMY_TIME = "19000101", "000000"  # where a removed date is type 1
# Modalities and SOP classes whose pixels often carry burned-in text (screen captures,
# ultrasound and angiography overlays, photographs, scanned documents): see the docs
BURNED_IN_MODALITIES = frozenset({"OT", "US", "XA", "RF", "ES", "XC", "GM", "SM", "DOC",
                                  "IVUS", "OP", "ECG"})
BURNED_IN_CLASSES = tuple("1.2.840.10008.5.1.4.1.1." + tail for tail in (
    "7",    # Secondary Capture (single and multi-frame: 7.1 ... 7.4)
    "6",    # Ultrasound (single and multi-frame, enhanced volume)
    "3.1",  # Ultrasound Multi-frame (retired)
    "12",   # X-Ray Angiographic / Radiofluoroscopic (12.1, 12.1.1, 12.2, ...)
    "77",   # Visible Light (photographs, endoscopy, microscopy)
    "104",  # Encapsulated PDF / CDA / 3D models
))
# Table E.1-1 attributes (action X) that dicognito leaves in place
ALWAYS_REMOVED = ("IssuerOfPatientID", "IssuerOfPatientIDQualifiersSequence",
                  "OtherPatientIDsSequence", "PatientBirthTime", "CountryOfResidence",
                  "RegionOfResidence", "InstitutionalDepartmentName",
                  "RequestAttributesSequence", "ReferencedPatientSequence",
                  "ReferencedPerformedProcedureStepSequence", "ReferencedPatientAliasSequence",
                  "PatientInsurancePlanCodeSequence", "PerformedProcedureStepID",
                  "ModifiedAttributesSequence", "OriginalAttributesSequence")
_TEXT_VRS = frozenset({"AE", "LO", "LT", "SH", "ST", "UC", "UT"})  # CS: coded, not free text
_BLANK_DATES = frozenset({"DA", "DT", "TM"})
# coded entries are controlled vocabulary ('Chest' is a code meaning, not a name): not cleaned
CODED = frozenset({"CodeValue", "CodeMeaning", "CodingSchemeDesignator", "CodingSchemeVersion",
                   "LongCodeValue", "URNCodeValue", "ContextIdentifier", "MappingResource",
                   "TemplateIdentifier", "ContextGroupVersion"})


class DeidError(Exception):
    """A dataset, file or option the de-identification refuses, with a sentence saying why."""


@dataclass(frozen=True)
class DeidOptions:
    key: str                       # same key -> same pseudonyms, UID map and date shifts
    dates: str = "shift"           # "shift" (consistent per patient) | "remove"
    clean_descriptors: bool = True  # keep descriptions / comments, cleaned; else empty them
    burned_in: str = "refuse"      # "refuse" | "warn"
    patient_characteristics: bool = False  # keep age, sex, size, weight (option 113108)

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key.strip():
            raise DeidError("A de-identification key is needed: the same key gives the same "
                            "pseudonyms and date shifts on a later export.")
        if self.dates not in ("shift", "remove"):
            raise DeidError(f"Dates can be shifted or removed, not '{self.dates}'.")
        if self.burned_in not in ("refuse", "warn"):
            raise DeidError(f"Burned-in annotation can be refused or warned about, not "
                            f"'{self.burned_in}'.")


class Deidentifier:
    """De-identifies datasets one by one, keeping the UID map, the pseudonyms and the date
    shifts consistent across all of them (and across runs with the same key)."""

    def __init__(self, options: DeidOptions) -> None:
        self.options = options
        self.report = DeidReport()
        self.exports: list[Any] = []  # folders written by deidentify_files (table refuses them)
        self._patients: dict[str, dict[str, Any]] = {}
        self._anonymizers: dict[str, Anonymizer] = {}
        self._uid_handler = UIAnonymizer(Randomizer(options.key))

    # --- the stable names ------------------------------------------------------------------
    def _digest(self, purpose: str, value: str) -> bytes:
        message = f"{purpose}\0{value}".encode()
        return hmac.new(self.options.key.encode(), message, hashlib.sha256).digest()

    def pseudonym(self, patient_id: str) -> str:
        """The case name used everywhere (PatientID, PatientName, folder and case names); the
        patient joins the pseudonym table (a NIfTI-only export needs it too)."""
        self._note_patient(str(patient_id))
        return self._pseudonym(str(patient_id))

    def _pseudonym(self, patient_id: str) -> str:
        return PSEUDONYM_PREFIX + self._digest("patient", patient_id).hex()[:10].upper()

    def shift_days(self, patient_id: str) -> int:
        """Days this patient's dates move (negative: into the past); 0 when dates are removed."""
        if self.options.dates != "shift":
            return 0
        low, high = SHIFT_DAYS
        return -(low + int.from_bytes(self._digest("dates", str(patient_id))[:8]) %
                 (high - low + 1))

    def uid(self, uid: str) -> str:
        """The UID `uid` becomes in every de-identified dataset."""
        uid = str(uid).strip()
        if not uid or uid.startswith(WELL_KNOWN_ROOT):
            return uid
        probe = Dataset()
        probe.SOPInstanceUID = uid
        self._uid_handler(probe, probe["SOPInstanceUID"])
        return str(probe.SOPInstanceUID)

    def pseudonym_table(self) -> list[dict[str, Any]]:
        """Original patient ID and name -> pseudonym and date shift, one row per patient."""
        return [dict(row) for _, row in sorted(self._patients.items())]

    # --- one dataset -----------------------------------------------------------------------
    def check(self, ds: Dataset) -> None:
        """What `dataset` would refuse or warn about, and the patient into the table, without
        making a copy or counting it (a NIfTI export checks each series' first header)."""
        self._burned_in(ds)
        self._note_patient(str(ds.get("PatientID", "") or ""), str(ds.get("PatientName", "")
                                                                    or ""))

    def dataset(self, ds: Dataset) -> Dataset:
        """A de-identified copy of `ds` (see the module docstring); DeidError for burned-in
        data under burned_in='refuse'."""
        burned = self._burned_in(ds)
        out = copy.deepcopy(ds)
        if not isinstance(getattr(out, "file_meta", None), Dataset):
            out.file_meta = FileMetaDataset()
        patient_id = str(ds.get("PatientID", "") or "")
        secrets = _identifying_values(ds)
        self._remove(out)
        self._anonymizer(patient_id).anonymize(out)
        out.PatientID = self._pseudonym(patient_id)
        out.PatientName = person_name(out.PatientID)
        if self.options.dates == "remove" and _content_date_required(out):
            out.ContentDate, out.ContentTime = DUMMY_DATE, DUMMY_TIME  # type 1: action D
        # the writer of this copy is pydicom, not the source's software
        out.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        out.file_meta.ImplementationVersionName = f"PYDICOM {pydicom.__version__}"[:16]
        _clean_text(out, secrets)
        self._mark(out, burned)
        self._note_patient(patient_id, str(ds.get("PatientName", "") or ""))
        self.report.compare(ds, out)
        return out

    def _burned_in(self, ds: Dataset) -> bool:
        flagged = str(ds.get("BurnedInAnnotation", "")).upper() == "YES"
        modality = str(ds.get("Modality", "") or "").upper()
        sop_class = str(ds.get("SOPClassUID", "") or "")
        likely = modality in BURNED_IN_MODALITIES or any(
            sop_class == c or sop_class.startswith(c + ".") for c in BURNED_IN_CLASSES)
        if not (flagged or likely):
            return False
        why = ("it says its pixels carry burned-in annotation" if flagged else
               f"its kind ({modality or 'no modality'}, {_class_name(sop_class)}) often "
               "carries burned-in text")
        if self.options.burned_in == "refuse":
            raise DeidError(f"Refused: {why}, which de-identification cannot clean; choose "
                            "'warn' to export it anyway after checking the pixels.")
        self.report.problem(f"Pixels not cleaned: {why}; PatientIdentityRemoved is NO on "
                            "those files, check them before sharing.")
        return True

    def _remove(self, ds: Dataset) -> None:
        """Private tags, overlays, unknown-VR elements and the Table E.1-1 attributes
        dicognito leaves; descriptors emptied unless Clean Descriptors is chosen."""
        unknown = 0

        def visit(dataset: Dataset, elem: Any) -> None:
            nonlocal unknown
            action = self._action(elem)
            unknown += elem.VR == "UN" and action == "remove"
            if action == "remove":
                del dataset[elem.tag]
            elif action == "empty":
                elem.value = [] if elem.VR == "SQ" else None
            elif action == "dummy":
                elem.value = self._digest("dummy", str(elem.value)).hex()[:12].upper()

        ds.walk(visit)
        if unknown:
            self.report.problem("Elements of unknown value representation (UN) were removed: "
                                "their content could not be checked.")

    def _action(self, elem: Any) -> str:
        """What Table E.1-1 (and its options) does to one element: remove, empty (a type 2
        attribute, or a sequence: zero length says nothing), dummy (a type 1 value), or ''
        (left to dicognito and the text cleaning)."""
        keyword = elem.keyword or ""
        characteristic = keyword in PATIENT_CHARACTERISTICS and \
            not self.options.patient_characteristics
        if elem.tag.is_private or elem.tag.group & 0xFF00 in (0x5000, 0x6000) or \
                elem.VR == "UN":
            return "remove"
        if keyword in ALWAYS_REMOVED or characteristic:
            return "empty" if elem.VR == "SQ" or keyword == "PatientSex" else "remove"
        if keyword == "DeviceSerialNumber":  # type 1 in the enhanced equipment module
            return "dummy"
        if is_descriptor(keyword) and not self.options.clean_descriptors:
            return "empty"
        return ""

    def _anonymizer(self, patient_id: str) -> Anonymizer:
        if patient_id not in self._anonymizers:
            anonymizer = Anonymizer(seed=self.options.key)
            anonymizer.add_element_handler(_DateHandler(self.shift_days(patient_id),
                                                        self.options.dates, self.report))
            anonymizer.add_element_handler(_KeepWellKnownUIDs())
            self._anonymizers[patient_id] = anonymizer
        return self._anonymizers[patient_id]

    def _mark(self, ds: Dataset, burned: bool) -> None:
        ds.PatientIdentityRemoved = "NO" if burned else "YES"
        ds.LongitudinalTemporalInformationModified = (
            "MODIFIED" if self.options.dates == "shift" else "REMOVED")
        used = [codes.DCM.BasicApplicationConfidentialityProfile]
        words = ["PS3.15 Basic Profile"]
        if self.options.clean_descriptors:
            used.append(codes.DCM.CleanDescriptorsOption)
            words.append("Clean Descriptors")
        if self.options.dates == "shift":
            used.append(codes.DCM.RetainLongitudinalTemporalInformationModifiedDatesOption)
            words.append("Modified Dates")
        if self.options.patient_characteristics:
            used.append(codes.DCM.RetainPatientCharacteristicsOption)
            words.append("Patient Characteristics")
        ds.DeidentificationMethod = [*words, f"MedViewer + dicognito {dicognito.__version__}"]
        ds.DeidentificationMethodCodeSequence = Sequence([_code_item(c) for c in used])

    def _note_patient(self, patient_id: str, name: str = "") -> None:
        row = self._patients.setdefault(patient_id, {
            "patient_id": patient_id, "patient_name": "", "pseudonym": self._pseudonym(patient_id),
            "date_shift_days": self.shift_days(patient_id)
            if self.options.dates == "shift" else "removed"})
        row["patient_name"] = row["patient_name"] or name


class _KeepWellKnownUIDs(ElementAnonymizer):
    """DICOM's own UIDs (context groups, coding schemes, ...) identify no one: kept."""

    def __call__(self, dataset: Dataset, data_element: Any) -> bool:
        value = data_element.value
        values = value if isinstance(value, MultiValue) else [value]
        return data_element.VR == "UI" and bool(value) and all(
            str(v).startswith(WELL_KNOWN_ROOT) for v in values)

    def describe_actions(self):
        yield "Keep UIDs under DICOM's own root 1.2.840.10008"


class _DateHandler(ElementAnonymizer):
    """Shift dates by the patient's offset (whole days: times and intervals unchanged), or
    empty every date and time. A date that cannot be read is emptied and reported."""

    def __init__(self, days: int, mode: str, report: DeidReport) -> None:
        self._shift = DateTimeAnonymizer(24 * days)
        self._mode, self._report = mode, report

    def __call__(self, dataset: Dataset, data_element: Any) -> bool:
        if data_element.VR not in _BLANK_DATES:
            return False
        if self._mode == "remove":
            data_element.value = None
            return True
        try:
            return self._shift(dataset, data_element)
        except ValueError:
            data_element.value = None
            self._report.problem(f"The {data_element.name} was not a readable date: it was "
                                 "emptied instead of shifted.")
            return True

    def describe_actions(self):
        yield "Shift dates by a per-patient number of days, or remove them"


def person_name(pseudonym: str) -> str:
    """The Patient's Name of a pseudonym: ANON-1A2B... -> ANON^1A2B... (family^given: a
    single word with digits reads as the retired ACR-NEMA name form to validators)."""
    return pseudonym.replace("-", "^", 1)


def _content_date_required(ds: Dataset) -> bool:
    """Content Date / Time are type 1 in SR documents and multi-frame functional group
    objects (SEG, enhanced images)."""
    return str(ds.get("Modality", "")) == "SR" or "PerFrameFunctionalGroupsSequence" in ds


def _class_name(uid: str) -> str:
    return UID(uid).name if uid else "no SOP class"


def _code_item(code: Any) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator = code.value, code.scheme_designator
    item.CodeMeaning = code.meaning
    return item


def _identifying_values(ds: Dataset) -> list[str]:
    """Strings that must not survive anywhere: name parts, IDs, dates, instance UIDs."""
    found: set[str] = set()

    def visit(_: Dataset, elem: Any) -> None:
        keyword = elem.keyword or ""
        if elem.VR not in ("PN", "DA", "DT", "UI", "LO", "SH"):
            return
        values = elem.value if isinstance(elem.value, MultiValue) else [elem.value]
        for value in (str(v) for v in values if v not in (None, "")):
            if elem.VR == "PN":
                shown = " ".join(p for p in value.split("^") if p)  # as a viewer shows it
                found.update({value, shown} | {p for p in re.split(r"[\^=]", value)
                                               if len(p) >= 3})
            elif elem.VR in ("DA", "DT") and len(value) >= 8:
                found.update({value[:8], f"{value[:4]}-{value[4:6]}-{value[6:8]}"})
            elif elem.VR == "UI" and not value.startswith(WELL_KNOWN_ROOT) and \
                    not keyword.endswith(("ClassUID", "TransferSyntaxUID")):
                found.add(value)
            elif keyword in ("PatientID", "OtherPatientIDs", "AccessionNumber") and \
                    len(value) >= 3:
                found.add(value)

    ds.walk(visit)
    return sorted(found, key=len, reverse=True)


def _clean_text(ds: Dataset, secrets: list[str]) -> None:
    """Remove any original identifying string still inside a text value."""
    if not secrets:
        return
    words = "|".join(re.escape(s) for s in secrets)  # longest first: a UID before its prefix
    pattern = re.compile(f"(?<![A-Za-z0-9])(?:{words})(?![A-Za-z0-9])", re.IGNORECASE)

    def clean(text: Any) -> str:
        return re.sub(r"\s{2,}", " ", pattern.sub("", str(text))).strip()

    def visit(_: Dataset, elem: Any) -> None:
        if elem.VR not in _TEXT_VRS or elem.value in (None, "") or elem.keyword in CODED:
            return
        if isinstance(elem.value, MultiValue):
            elem.value = [clean(v) for v in elem.value]
        elif pattern.search(str(elem.value)):
            elem.value = clean(elem.value)

    ds.walk(visit)
    ds.file_meta.walk(visit)
