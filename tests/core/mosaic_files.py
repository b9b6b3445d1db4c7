"""Siemens mosaic test files as a VB/VE scanner writes them: one MR image per time point holding
a grid of slices, with the private CSA image header (SV10) that names their count and normal."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, MRImageStorage, generate_uid

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)


def csa_header(fields: dict[str, tuple[str, list[str]]]) -> bytes:
    """A CSA header in Siemens' SV10 format: per tag a 64-byte name, VM, VR, syngo type, item
    count and 77; per item its length (twice), 77 and the length, then the text padded to 4."""
    out = b"SV10\x04\x03\x02\x01" + struct.pack("<2I", len(fields), 77)
    for name, (vr, values) in fields.items():
        out += struct.pack("<64si4s3i", name.encode(), len(values), vr.encode(), 3,
                           len(values), 77)
        for value in values:
            data = value.encode() + b"\0"
            out += struct.pack("<4i", len(data), len(data), 77, len(data))
            out += data + b"\0" * (-len(data) % 4)
    return out


def write_mosaics(folder: Path, volumes: np.ndarray, *, orientation=AXIAL,
                  first=(-100.0, -90.0, -20.0), spacing=(3.0, 2.0, 2.5), flip_normal=False,
                  syntax: str = ExplicitVRLittleEndian, image_type="MOSAIC") -> list[Path]:
    """One mosaic file per time point of `volumes` (time, slices, rows, columns), uint16.

    `first` is the true position of slice 0's first pixel; the file's ImagePositionPatient is
    that of the whole grid centred on slice 0, as the scanner writes it. Slice k lies k
    `spacing[0]` further along the CSA SliceNormalVector, which is the orientation's normal or,
    with `flip_normal`, its opposite (as Siemens writes for some sagittal and coronal stacks)."""
    folder.mkdir(parents=True, exist_ok=True)
    times, count, rows, columns = volumes.shape
    side = math.ceil(math.sqrt(count))
    iop = np.array(orientation, float)
    normal = np.cross(iop[:3], iop[3:]) * (-1 if flip_normal else 1)
    step, row_spacing, column_spacing = spacing
    ipp = (np.array(first, float) - iop[:3] * column_spacing * (columns * side - columns) / 2
           - iop[3:] * row_spacing * (rows * side - rows) / 2)
    csa = csa_header({"EchoLinePosition": ("IS", ["32"]),
                      "NumberOfImagesInMosaic": ("US", [str(count)]),
                      "SliceNormalVector": ("FD", [f"{v:.8f}" for v in normal]),
                      "ImaCoilString": ("LO", ["HEA;HEP"])})
    study, series = generate_uid(), generate_uid()
    paths = []
    for t in range(times):
        grid = np.zeros((rows * side, columns * side), np.uint16)
        for k in range(count):
            top, left = divmod(k, side)
            grid[top * rows:(top + 1) * rows, left * columns:(left + 1) * columns] = volumes[t, k]
        ds = _mosaic_header(t, study, series, syntax, image_type)
        ds.SliceThickness = ds.SpacingBetweenSlices = step
        ds.PixelSpacing = [row_spacing, column_spacing]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in iop]
        ds.ImagePositionPatient = [f"{v:.6f}" for v in ipp]
        ds.AcquisitionMatrix = [0, columns, rows, 0]
        ds.Rows, ds.Columns = grid.shape
        ds.private_block(0x0019, "SIEMENS MR HEADER", create=True).add_new(0x0A, "US", count)
        block = ds.private_block(0x0029, "SIEMENS CSA HEADER", create=True)
        block.add_new(0x08, "CS", "IMAGE NUM 4")
        block.add_new(0x10, "OB", csa)
        ds.PixelData = grid.astype("<u2" if UID(syntax).is_little_endian else ">u2").tobytes()
        paths.append(folder / f"MR{t + 1:04d}.dcm")
        pydicom.dcmwrite(paths[-1], ds, enforce_file_format=True)
    return paths


def _mosaic_header(t: int, study: str, series: str, syntax: str, image_type: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND", image_type]
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.PatientName, ds.PatientID, ds.Modality = "Mosaic^Test", "MOSAIC", "MR"
    ds.Manufacturer, ds.SeriesDescription = "SIEMENS", "ep2d_bold"
    ds.StudyDate = ds.SeriesDate = "20240101"
    ds.StudyTime, ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "120000", "1", "", ""
    ds.PatientBirthDate, ds.PatientSex = "19700101", "O"
    ds.SeriesNumber, ds.AcquisitionNumber, ds.InstanceNumber = 5, t + 1, t + 1
    ds.AcquisitionTime = f"12{t // 60:02d}{t % 60:02d}.000000"  # one per second
    ds.EchoTime, ds.RepetitionTime, ds.FlipAngle, ds.MagneticFieldStrength = 30, 2000, 90, 3
    ds.InPlanePhaseEncodingDirection = "COL"
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    return ds


def mosaic_volumes(times: int, slices: int, rows: int = 6, columns: int = 8, seed: int = 0
             ) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, 4000, (times, slices, rows, columns)
                                                 ).astype(np.uint16)
