"""`medviewer info FILE`: the header summary and every element of one DICOM file.

A damaged file prints what can be read: an element pydicom cannot decode (an unknown VR, a
value cut short) is one line saying so, sequences deeper than MAX_DEPTH are summarised, and the
command ends with exit status 2 and a sentence on stderr instead of a traceback.
"""

from __future__ import annotations

import argparse
import sys
import warnings

SUMMARY = ("PatientName", "PatientID", "StudyDate", "Modality", "SeriesDescription",
           "SeriesNumber", "InstanceNumber", "Rows", "Columns", "NumberOfFrames",
           "PixelSpacing", "SliceThickness", "ImagePositionPatient",
           "ImageOrientationPatient", "PhotometricInterpretation")
MAX_DEPTH = 8  # sequence levels printed; real files nest 3 or 4 (functional groups)
BAD_INPUT = 2  # exit status for a file that cannot be (fully) read


def run_info(ns: argparse.Namespace) -> int:
    ds, reason = _read(ns.file)
    if ds is None:
        print(f"{ns.file}: not readable as DICOM: {reason}", file=sys.stderr)
        return BAD_INPUT
    problems: list[str] = []
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    print(f"{'File:':27}{ns.file}")
    print(f"{'Transfer syntax:':27}{_syntax_name(ts)}")
    for key in SUMMARY:
        line = _guard(lambda k=key: ds.data_element(k).repval if k in ds else None, problems, key)
        if line is not None:
            print(f"{key + ':':27}{line}")
    print()
    if meta is not None:
        _print_elements(meta, 0, problems)
    _print_elements(ds, 0, problems)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        print(f"{ns.file}: {len(problems)} element(s) could not be decoded, first {problems[0]}"
              f"{more}: the file is damaged; the rest is printed above.", file=sys.stderr)
        return BAD_INPUT
    return 0


def _read(path: str) -> tuple[object | None, str]:
    """(dataset without pixels, "") or (None, the reason it cannot be read)."""
    import pydicom

    from medviewer.core.paths import open_regular

    try:
        with open_regular(path) as fh, warnings.catch_warnings():  # a FIFO would block
            warnings.simplefilter("ignore")
            return pydicom.dcmread(fh, stop_before_pixels=True), ""
    except RecursionError:
        return None, "its sequences are nested too deeply to read"
    except OSError as exc:
        return None, exc.strerror or str(exc)
    except Exception as exc:  # pydicom raises many types (struct.error, ValueError...)
        return None, str(exc) or type(exc).__name__


def _syntax_name(ts: object) -> str:
    if not ts:
        return "(none)"
    return getattr(ts, "name", None) or str(ts)


def _guard(get, problems: list[str], where: str) -> object | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return get()
    except (Exception, RecursionError) as exc:
        problems.append(f"{where} ({type(exc).__name__}: {str(exc)[:80]})")
        return None


def _print_elements(ds, depth: int, problems: list[str]) -> None:
    """Each element on its line as pydicom writes it; sequences item by item, indented."""
    indent = "  " * depth
    for tag in list(ds.keys()):
        elem = _guard(lambda t=tag: ds[t], problems, str(tag))
        if elem is None:
            print(f"{indent}{tag} (cannot be decoded)")
        elif elem.VR != "SQ":
            text = _guard(lambda e=elem: str(e), problems, str(tag))
            print(f"{indent}{text if text is not None else f'{tag} (cannot be decoded)'}")
        else:
            _print_sequence(elem, depth, problems)


def _print_sequence(elem, depth: int, problems: list[str]) -> None:
    indent = "  " * depth
    items = elem.value or []
    print(f"{indent}{elem.tag} {elem.name}  {len(items)} item(s)")
    if depth >= MAX_DEPTH * 2:
        print(f"{indent}  (nested more than {MAX_DEPTH} sequences deep: not shown)")
        return
    for number, item in enumerate(items, 1):
        print(f"{indent}  item {number}")
        _print_elements(item, depth + 2, problems)
