"""`medviewer info` on damaged files: what can be read is printed, the rest is named, and the
command exits 2 with a sentence instead of a traceback (issue 12, items 7 and 8)."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

import medviewer.core.synthetic as syn
from medviewer.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _report_file() -> bytes:
    """A small valid Basic Text SR header, explicit VR little endian, as bytes."""
    ds = Dataset()
    ds.PatientName, ds.SOPInstanceUID = "Deep^Nest", "1.2.3.4"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _nested(depth: int) -> bytes:
    """ContentSequence items nested `depth` deep, undefined lengths (as an SR writer emits)."""
    sequence = struct.pack("<HH", 0x0040, 0xA730) + b"SQ\0\0" + struct.pack("<I", 0xFFFFFFFF)
    item = struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
    close = struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    return (sequence + item) * depth + close * depth


def _run(path: Path) -> subprocess.CompletedProcess:
    """`python -m medviewer info PATH` as a user types it (a RecursionError would kill the
    interpreter's own frames, so not in-process)."""
    return subprocess.run([sys.executable, "-m", "medviewer", "info", str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_info_on_sequences_nested_1200_deep_exits_2_with_a_sentence(tmp_path):
    path = tmp_path / "deep.dcm"
    path.write_bytes(_report_file() + _nested(1200))
    done = _run(path)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "nested too deeply" in done.stderr


def test_info_prints_a_deep_but_readable_sequence_up_to_a_depth(tmp_path):
    path = tmp_path / "deep.dcm"
    path.write_bytes(_report_file() + _nested(30))
    text = _captured(path)
    assert "Deep^Nest" in text and "sequences deep: not shown" in text
    assert text.count("Content Sequence") < 30


def _captured(path: Path) -> str:
    done = _run(path)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_info_names_an_element_with_an_unknown_vr_and_exits_2(tmp_path, capsys):
    source = syn.write_series(tmp_path / "src", np.zeros((1, 16, 16), np.int16),
                              windows=[(40.0, 400.0, "SOFT")])[0]
    data = source.read_bytes()
    at = data.index(b"\x28\x00\x50\x10DS") + 4
    path = tmp_path / "badvr.dcm"
    path.write_bytes(data[:at] + b"ZZ" + data[at + 2:])
    assert main(["info", str(path)]) == 2
    captured = capsys.readouterr()
    assert "(0028,1050) (cannot be decoded)" in captured.out
    assert "(0028,1051) Window Width" in captured.out  # the rest is still printed
    assert "Unknown Value Representation" in captured.err and "damaged" in captured.err


def test_info_on_a_value_of_the_wrong_length_exits_2(tmp_path, capsys):
    """struct.error / BytesLengthException: a US element 3 bytes long."""
    path = tmp_path / "odd.dcm"
    path.write_bytes(_report_file() + struct.pack("<HH", 0x0028, 0x0010) + b"US"
                     + struct.pack("<H", 3) + b"\1\2\3")
    assert main(["info", str(path)]) == 2
    captured = capsys.readouterr()
    assert "Deep^Nest" in captured.out and "could not be decoded" in captured.err
