"""DICOM SEG save of a 300-slice mask: target within 2 s (issue 4).

    python3 benchmarks/bench_seg_save.py [--slices 300] [--repeat 3] [--read]

A 300 x 512 x 512 chest CT phantom (`synthetic.ct_chest_phantom`, 1.0 x 0.7 x 0.7 mm) is
written once under benchmarks/data/seg<N>_ct/ (git-ignored) and loaded with load_series; the
label map is its ground truth `ct_chest_labels` (4 labels: body, lung, nodule, spine).
Timed: `write_seg` of the whole map to a temporary folder; the first call is reported on its
own (highdicom loads the DICOM standard tables once per process), then the median of
--repeat calls. Baseline, same run: `pydicom.dcmwrite` of a plain multi-frame dataset holding
the same bit-packed frames (np.packbits of one frame per label and non-empty slice), i.e. the
cost of the bytes alone. --read also times `read_seg` of the result.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import medviewer.core.synthetic as syn  # noqa: E402
from medviewer.core.annotations import read_seg, write_seg  # noqa: E402
from medviewer.core.dicom import load_series, scan  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"
SPACING = (1.0, 0.7, 0.7)
LABELS = ["background", "body", "lung", "nodule", "spine"]  # syn.CHEST_LABELS order
COLOURS = ["#000000", "#ffa000", "#2080ff", "#ff2020", "#ffffff"]


def ensure_series(slices: int) -> Path:
    """The phantom series on disk, generated once (it takes a while on 2 cores)."""
    folder = DATA / f"seg{slices}_ct"
    if len(list(folder.glob("*.dcm"))) != slices:
        print(f"generating {slices} x 512 x 512 chest phantom in {folder} ...", flush=True)
        hu, _ = syn.ct_chest_phantom((slices, 512, 512), SPACING)
        syn.write_series(folder, hu, spacing=SPACING, shuffle_names=True)
    return folder


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def baseline_write(label_map: np.ndarray, path: Path) -> None:
    """The same bit-packed frames in a bare multi-frame dataset, written by pydicom."""
    frames = []
    for v in range(1, len(LABELS)):
        inside = label_map == v
        frames.append(inside[inside.any(axis=(1, 2))])
    frames = np.concatenate(frames)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.66.4"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.Rows, ds.Columns = label_map.shape[1:]
    ds.NumberOfFrames = len(frames)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 1
    ds.HighBit, ds.PixelRepresentation = 0, 0
    ds.PixelData = np.packbits(frames, bitorder="little").tobytes()
    pydicom.dcmwrite(path, ds, enforce_file_format=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--read", action="store_true", help="also time read_seg")
    args = parser.parse_args()

    folder = ensure_series(args.slices)
    volume = load_series(scan(folder, cache=False).all_series()[0])
    label_map = syn.ct_chest_labels(volume.voxels.shape, SPACING)
    assert label_map.shape == volume.voxels.shape
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "seg.dcm"
        save = lambda: write_seg(label_map, volume, LABELS, out, colours=COLOURS)  # noqa: E731
        first = timed(save)
        runs = [timed(save) for _ in range(args.repeat)]
        size_mb = out.stat().st_size / 2**20
        base = [timed(baseline_write, label_map, Path(tmp) / "base.dcm")
                for _ in range(args.repeat)]
        rows.append(("write_seg, first call (imports highdicom, loads the DICOM standard)", first))
        rows.append((f"write_seg, median of {args.repeat}", statistics.median(runs)))
        rows.append((f"baseline: packbits + pydicom.dcmwrite, median of {args.repeat}",
                     statistics.median(base)))
        if args.read:
            reads = [timed(read_seg, out, volume) for _ in range(args.repeat)]
            rows.append((f"read_seg, median of {args.repeat}", statistics.median(reads)))
    shape = " x ".join(map(str, label_map.shape))
    print(f"\nSEG save of a {shape} label map, 4 labels, SEG file {size_mb:.1f} MB "
          f"(target: within 2 s)\n")
    print("| what | seconds |\n|---|---|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.2f} |")
    print(f"\ncommand: python3 benchmarks/bench_seg_save.py --slices {args.slices} "
          f"--repeat {args.repeat}{' --read' if args.read else ''}")


if __name__ == "__main__":
    main()
