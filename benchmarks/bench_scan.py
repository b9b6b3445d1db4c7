"""Header scan benchmark: our `scan` against a plain pydicom `dcmread(stop_before_pixels)` loop.

    python3 benchmarks/bench_scan.py [--files 10000] [--big-files 1000] [--workers N]

Generates (once, cached under benchmarks/data/, gitignored) CT slices with a realistic header
(~100 elements, a referenced-image sequence, private tags) in many series, then measures with
a warm page cache: the plain loop, our first scan into an empty cache database in a temporary
folder, and two re-scans of the unchanged folder: in the same process (folders come from the
in-process memo: a GUI re-opening a folder) and in a new process with only the SQLite cache
(timed inside that process, around the `scan` call alone). Prints a markdown table.
Targets (issue 2): first scan >= 2x faster than the loop; re-scan >= 20x faster than the first.
The "big" variant uses 512 x 512 slices: the header read must not touch the pixel data.
"""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medviewer.core.dicom.index import MEMO, scan  # noqa: E402

DATA = ROOT / "benchmarks" / "data"
SLICES_PER_SERIES = 100


def _series_template(patient: int, series: int, size: int) -> Dataset:
    """A CT slice header of the size a scanner writes (~2-3 KB), shared by one series."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = "20240105"
    ds.StudyTime = ds.SeriesTime = "101500"
    ds.AccessionNumber = f"ACC{patient:05d}"
    ds.Modality = "CT"
    ds.Manufacturer = "BenchCo"
    ds.InstitutionName = "Bench General Hospital"
    ds.ReferringPhysicianName = "Referrer^Rita"
    ds.StationName = "CT01"
    ds.StudyDescription = "CT CHEST W/O CONTRAST"
    ds.SeriesDescription = f"Axial {series} 1.0 mm"
    ds.ManufacturerModelName = "Bench 64"
    ds.PatientName = f"Patient^{patient:05d}"
    ds.PatientID = f"PID{patient:05d}"
    ds.PatientBirthDate = "19600101"
    ds.PatientSex = "F" if patient % 2 else "M"
    ds.PatientAge = "064Y"
    ds.BodyPartExamined = "CHEST"
    ds.SliceThickness = "1.0"
    ds.KVP = "120"
    ds.DataCollectionDiameter = "500"
    ds.SoftwareVersions = "1.2.3"
    ds.ReconstructionDiameter = "350"
    ds.GantryDetectorTilt = "0"
    ds.TableHeight = "150"
    ds.RotationDirection = "CW"
    ds.ExposureTime = "500"
    ds.XRayTubeCurrent = "200"
    ds.Exposure = "100"
    ds.FilterType = "BODY"
    ds.ConvolutionKernel = "B30f"
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.StudyID = "1"
    ds.SeriesNumber = series
    ds.FrameOfReferenceUID = generate_uid()
    ds.PositionReferenceIndicator = ""
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = size
    ds.PixelSpacing = [0.68359375, 0.68359375]
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.WindowCenter = ["40", "-600"]
    ds.WindowWidth = ["400", "1500"]
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.add_new(0x00290010, "LO", "BENCH PRIVATE")
    ds.add_new(0x00291010, "OB", bytes(600))
    ref = Dataset()
    ref.ReferencedSOPClassUID = CTImageStorage
    ref.ReferencedSOPInstanceUID = generate_uid()
    ds.ReferencedImageSequence = Sequence([ref])
    return ds


def _write_series(folder: Path, patient: int, series: int, count: int, size: int) -> None:
    ds = _series_template(patient, series, size)
    pixels = (np.arange(size * size, dtype=np.uint16) % 4096).reshape(size, size).tobytes()
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(count):
        ds.SOPInstanceUID = generate_uid()
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [-175.0, -175.0, -k * 1.0]
        ds.SliceLocation = -k * 1.0
        ds.AcquisitionTime = ds.ContentTime = f"1016{k % 60:02d}"
        ds.PixelData = pixels
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
        ds.save_as(folder / f"IM{k:05d}", enforce_file_format=True)


def generate(name: str, files: int, size: int) -> Path:
    """Write `files` slices (series of 100) once; reuse them when the count matches."""
    root = DATA / name
    marker = root / ".complete"
    if marker.exists() and marker.read_text() == str(files):
        return root
    for k in range(0, files, SLICES_PER_SERIES):
        series = k // SLICES_PER_SERIES
        count = min(SLICES_PER_SERIES, files - k)
        _write_series(root / f"P{series // 5:04d}" / f"S{series:04d}", series // 5, series, count,
                      size)
    marker.write_text(str(files))
    return root


def _files(root: Path) -> list[str]:
    return sorted(str(p) for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))


def _warm(files: list[str]) -> None:
    for f in files:
        with open(f, "rb") as fh:
            while fh.read(1 << 20):
                pass


def _timed(fn) -> tuple[float, object]:
    """Seconds for fn(); collects garbage first so no timing pays for an earlier one's cycles."""
    gc.collect()
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def _plain_loop(files: list[str]) -> int:
    """The baseline: what a straightforward scanner does per file."""
    for f in files:
        pydicom.dcmread(f, stop_before_pixels=True)
    return len(files)


_NEW_PROCESS = """
import gc, sys, time
sys.path.insert(0, {root!r})
from medviewer.core.dicom.index import scan
gc.collect()
start = time.perf_counter()
result = scan({folder!r}, cache={db!r}, workers={workers!r})
seconds = time.perf_counter() - start
print(seconds, sum(s.image_count for s in result.all_series()))
"""


def _rescan_in_new_process(folder: Path, db: Path, workers: int | None) -> tuple[float, int]:
    """Seconds of one `scan` call in a fresh interpreter (imports not counted), and the
    number of images it found."""
    code = _NEW_PROCESS.format(root=str(ROOT), folder=str(folder), db=str(db), workers=workers)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout.split()
    return float(out[0]), int(out[1])


def measure(root: Path, workers: int | None, repeat: int) -> dict[str, float]:
    """Best of `repeat` runs of each: the plain loop, a first scan into an empty cache
    database, and re-scans of the unchanged folder with that database, in this process and
    in a new one."""
    files = _files(root)
    _warm(files)
    best = {"files": len(files), "plain": 1e9, "first": 1e9, "same": 1e9, "new": 1e9}
    for _ in range(repeat):
        best["plain"] = min(best["plain"], _timed(lambda: _plain_loop(files))[0])
        with tempfile.TemporaryDirectory() as tmp:
            db = Path(tmp) / "index.sqlite"
            MEMO.clear()
            run = partial(scan, root, cache=db, workers=workers)
            first, result = _timed(run)
            same, result2 = _timed(run)
            new, images = _rescan_in_new_process(root, db, workers)
        assert sum(s.image_count for s in result.all_series()) == len(files) == images
        assert result2 == result
        for key, seconds in (("first", first), ("same", same), ("new", new)):
            best[key] = min(best[key], seconds)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--big-files", type=int, default=1_000)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=3, help="best of N runs of each")
    args = parser.parse_args()
    rows = []
    for name, files, size in (("scan_64", args.files, 64), ("scan_512", args.big_files, 512)):
        if files:
            rows.append((f"{size}x{size}", measure(generate(name, files, size), args.workers,
                                                   args.repeat)))
    print(f"\ncpu_count={os.cpu_count()}  workers={args.workers or 'default'}  "
          f"best of {args.repeat}\n")
    print("| slices | files | plain dcmread loop (s) | first scan (s) | re-scan (same process) (s) "
          "| re-scan (new process, SQLite cache) (s) | plain / first | first / re-scan same "
          "| first / re-scan new |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, m in rows:
        print(f"| {label} | {m['files']} | {m['plain']:.2f} | {m['first']:.2f} | "
              f"{m['same']:.3f} | {m['new']:.3f} | {m['plain'] / m['first']:.1f}x | "
              f"{m['first'] / m['same']:.1f}x | {m['first'] / m['new']:.1f}x |")


if __name__ == "__main__":
    main()
