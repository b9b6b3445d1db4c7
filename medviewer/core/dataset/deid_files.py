"""De-identified copies of DICOM files, and the pseudonym table kept apart from them.

    deid = Deidentifier(DeidOptions(key="site secret"))
    report = deidentify_files(paths, out_dir, deid, progress=..., cancelled=...)
    write_pseudonym_table(somewhere_else / "pseudonyms.csv", deid)

Each copy lands at <pseudonym>/<new study uid>/<new series uid>/<new sop uid>.dcm under
out_dir, written atomically (a cancel or a crash leaves no half file). A file that cannot be
read, is cut short or is refused (burned-in annotation) is reported and skipped.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable
from pathlib import Path

from pydicom.dataset import Dataset

from medviewer.core.atomic import atomic_file, write_text_atomic
from medviewer.core.dataset.deid_report import DeidReport
from medviewer.core.dataset.deidentifier import Deidentifier, DeidError, DeidOptions
from medviewer.core.dicom.checks import pixel_data
from medviewer.core.dicom.errors import DicomError
from medviewer.core.dicom.headers import read_instance
from medviewer.core.dicom.pixels import read_dataset

TABLE_COLUMNS = ("patient_id", "patient_name", "pseudonym", "date_shift_days")


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _check_out_dir(out_dir: Path, sources: list[Path]) -> None:
    for folder in {p.resolve().parent for p in sources}:
        if _inside(out_dir, folder):
            raise DeidError(f"The export folder {out_dir} is inside a source folder ({folder}): "
                            "choose a folder outside the data being exported.")


def read_source(path: Path) -> Dataset:
    """The whole dataset, DicomError when it cannot be read or its image is cut short."""
    ds = read_dataset(str(path))
    if not (ds.get("SOPClassUID") and ds.get("SOPInstanceUID")):
        raise DicomError(path, "It has no SOP Class or Instance UID (a DICOMDIR or an "
                               "incomplete object), so it is not an image or document to copy.")
    if "PixelData" in ds:
        instance = read_instance(path)
        if instance is not None:
            pixel_data(instance)
    return ds


def target_path(out_dir: Path, ds: Dataset) -> Path:
    """Where a de-identified dataset is written under `out_dir`."""
    return (out_dir / str(ds.PatientID) / str(ds.StudyInstanceUID) /
            str(ds.SeriesInstanceUID) / f"{ds.SOPInstanceUID}.dcm")


def deidentify_files(paths: Iterable[str | Path], out_dir: str | Path,
                     options: DeidOptions | Deidentifier, *,
                     progress: Callable[[int, int], None] | None = None,
                     cancelled: Callable[[], bool] | None = None) -> DeidReport:
    """Write a de-identified copy of each file under `out_dir`; returns the report.

    `options` may be a Deidentifier already used (e.g. for the NIfTI export's pseudonyms):
    its UID map, table and report are shared. DeidError when out_dir is inside a source folder.
    """
    deid = options if isinstance(options, Deidentifier) else Deidentifier(options)
    sources, out = [Path(p) for p in paths], Path(out_dir).resolve()
    _check_out_dir(out, sources)
    deid.exports.append(out)
    report = deid.report
    for done, path in enumerate(sources):
        if cancelled is not None and cancelled():
            report.cancelled = True
            break
        try:
            clean = deid.dataset(read_source(path))
            with atomic_file(target_path(out, clean)) as f:
                clean.save_as(f, enforce_file_format=True)
            report.written += 1
        except DicomError as exc:
            report.skip(str(path), exc.reason)
        except DeidError as exc:
            report.skip(str(path), str(exc))
        except (OSError, ValueError, TypeError, AttributeError, KeyError) as exc:
            report.skip(str(path), f"It could not be de-identified or written ({exc}).")
        if progress is not None:
            progress(done + 1, len(sources))
    return report


def write_pseudonym_table(path: str | Path, deidentifier: Deidentifier) -> Path:
    """The original -> pseudonym table as CSV, written atomically. Refused inside any folder
    the deidentifier exported to: the table must travel separately from the data."""
    path = Path(path)
    target = path.resolve()
    for folder in deidentifier.exports:
        if _inside(target, Path(folder)):
            raise DeidError(f"The pseudonym table cannot go inside the export ({folder}): it "
                            "would re-identify every case. Keep it somewhere else.")
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=TABLE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(deidentifier.pseudonym_table())
    return write_text_atomic(path, text.getvalue())
