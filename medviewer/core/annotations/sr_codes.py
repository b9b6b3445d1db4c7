"""The codes an SR of this viewer writes, and the labels they stand for.

- A label (a finding, a box, a class) is coded as the SEG codes its segments (`seg.
  property_codes`): SNOMED CT where pydicom's code dictionary knows the name ("nodule" ->
  SCT 27925004 Nodule, "cardiomegaly" -> SCT 287272002). A label SNOMED does not name there
  ("no nodule", a digit) gets a code of the private scheme 99MEDVIEWER whose meaning is the
  label; the SR then declares that scheme in CodingSchemeIdentificationSequence (dciodvfy still
  warns "Unrecognized defined term <99MEDVIEWER>": it knows no private scheme).
- The procedure reported (TID 1500, mandatory; CID 100 is extensible) is the source's own
  ProcedureCodeSequence when it has one (the site's code for the exam, body part included:
  RadLex "CT CHEST", a LOINC playbook code); else the modality's code of CID 100 (LOINC
  "CT / MRI / XR / NM / PET unspecified body region", or "... whole body" when the whole body
  was imaged); any other modality reports SCT 363679005 Imaging procedure.
- Units of a measurement on an image without pixel size: UCUM {pixels} (DCMTK's
  CODE_UCUM_Pixels) and {square pixels}.
"""

from __future__ import annotations

import hashlib
from typing import Any

from medviewer.core.annotations.seg import property_codes

PRIVATE_SCHEME = "99MEDVIEWER"
PIXELS = ("{pixels}", "UCUM", "pixels")
SQUARE_PIXELS = ("{square pixels}", "UCUM", "square pixels")
_XRAY = {"CR", "DX", "DR", "RG", "MG", "XA", "RF", "IO", "PX"}
_WHOLE_BODY = {"MR": "MRIWholeBody", "PT": "PETWholeBody"}
_UNSPECIFIED = {"CT": "CTUnspecifiedBodyRegion", "MR": "MRIUnspecifiedBodyRegion",
                "NM": "NMUnspecifiedBodyRegion", "PT": "PETUnspecifiedBodyRegion",
                **dict.fromkeys(_XRAY, "XRUnspecifiedBodyRegion")}


def label_code(label: str) -> Any:
    """The code of a label: the SEG's SNOMED type for it, else a private code."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    _category, kind = property_codes(label)
    if kind != codes.SCT.Tissue or label.strip().lower() == "tissue":  # Tissue: not known
        return hd.sr.CodedConcept(value=kind.value, scheme_designator=kind.scheme_designator,
                                  meaning=kind.meaning)
    digest = hashlib.sha1(label.encode("utf-8")).hexdigest()[:15]
    return hd.sr.CodedConcept(value=f"L{digest}", scheme_designator=PRIVATE_SCHEME,
                              meaning=label[:64])


def label_of(meaning: str, text: str | None, prefix: str) -> str:
    """The label a code stands for. A standard code's meaning is capitalised ('Nodule'); the
    tracking identifier this viewer writes ('<prefix> <label>') keeps the label as typed."""
    typed = (text or "").removeprefix(f"{prefix} ")
    return typed if typed.lower() == meaning.lower() else meaning


def unit_code(code: tuple[str, str, str]) -> Any:
    import highdicom as hd

    return hd.sr.CodedConcept(value=code[0], scheme_designator=code[1], meaning=code[2])


def procedure_code(modality: str, body_part: str = "", source: Any = None) -> Any:
    """The TID 1500 procedure reported for a source image (its header: `source`) of
    `modality`: the image's own procedure code, else CID 100's for the modality."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    for item in (source.get("ProcedureCodeSequence") or [])[:1] if source is not None else []:
        try:
            return hd.sr.CodedConcept.from_dataset(item)
        except (AttributeError, TypeError, ValueError):
            break  # an incomplete code: the modality's instead
    modality = modality.strip().upper()
    if body_part.strip().upper() == "WHOLEBODY" and modality in _WHOLE_BODY:
        return getattr(codes.cid100, _WHOLE_BODY[modality])
    if modality in _UNSPECIFIED:
        return getattr(codes.cid100, _UNSPECIFIED[modality])
    return codes.cid100.ImagingProcedure


def declare_private_scheme(ds: Any) -> None:
    """Add the private scheme to CodingSchemeIdentificationSequence when `ds` uses it."""
    from pydicom.dataset import Dataset

    used = any(e.keyword == "CodingSchemeDesignator" and e.value == PRIVATE_SCHEME
               for e in ds.iterall())
    if not used:
        return
    item = Dataset()
    item.CodingSchemeDesignator = PRIVATE_SCHEME
    item.CodingSchemeName = "MedViewer annotation labels"
    item.CodingSchemeResponsibleOrganization = "MedViewer"
    ds.CodingSchemeIdentificationSequence = [item]
