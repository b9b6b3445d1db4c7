"""The local store that retrieved and received instances are written into.

Layout: `<root>/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm`, default root
`<user data folder>/pacs` (medviewer.core.demo.data_dir). Every file is written atomically
(a temporary sibling, fsync, os.replace), so a reader, the scan cache or a retry after a
cancelled or broken transfer sees whole instances only. UIDs come from the network: a name
that is not a plain UID (digits and dots) is replaced by a hash of it, so no server can write
outside the store.
"""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian

from medviewer.core.atomic import atomic_file
from medviewer.pacs.errors import PacsError

_UID = re.compile(r"[0-9]+(\.[0-9]+)*")


def safe_name(uid: str) -> str:
    """`uid` itself when it is a plain DICOM UID, else a stable hash of it (never a path)."""
    uid = str(uid).strip().rstrip("\0")
    if _UID.fullmatch(uid) and len(uid) <= 64:
        return uid
    return "x" + hashlib.sha256(uid.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def default_root() -> Path:
    from medviewer.core.demo import data_dir

    return data_dir() / "pacs"


class LocalStore:
    """Instances on disk under `root`, one file per SOP instance."""

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root) if root is not None else default_root()
        self._known: set[str] | None = None  # SOP instance UIDs on disk, read lazily

    def study_folder(self, study_uid: str) -> Path:
        return self.root / safe_name(study_uid)

    def series_folder(self, study_uid: str, series_uid: str) -> Path:
        return self.study_folder(study_uid) / safe_name(series_uid)

    def path_for(self, study_uid: str, series_uid: str, sop_uid: str) -> Path:
        return self.series_folder(study_uid, series_uid) / f"{safe_name(sop_uid)}.dcm"

    def _index(self) -> set[str]:
        if self._known is None:
            self._known = ({p.stem for p in self.root.glob("*/*/*.dcm")}
                           if self.root.is_dir() else set())
        return self._known

    def holds_any(self, study_uid: str, series_uid: str | None = None) -> bool:
        """Whether the store has any instance of this series (or, without one, this study)."""
        folder = (self.series_folder(study_uid, series_uid) if series_uid
                  else self.study_folder(study_uid))
        pattern = "*.dcm" if series_uid else "*/*.dcm"
        return folder.is_dir() and next(folder.glob(pattern), None) is not None

    def has(self, sop_instance_uid: str) -> bool:
        """Whether a whole file of this SOP instance is in the store."""
        return safe_name(sop_instance_uid) in self._index()

    def add(self, data: Dataset | bytes | bytearray) -> Path:
        """Write one instance (a dataset, or a whole DICOM file's bytes) atomically.

        A dataset without file meta (as pynetdicom hands it over) gets one. Raises PacsError
        when the instance lacks the UIDs that place it, or the disk refuses the write.
        """
        if isinstance(data, (bytes, bytearray)):
            try:
                ds = pydicom.dcmread(io.BytesIO(bytes(data)), stop_before_pixels=True)
            except Exception as exc:
                raise PacsError(f"The received data is not a DICOM file ({exc}); "
                                "nothing was stored.") from exc
            payload: bytes | None = bytes(data)
        else:
            ds, payload = data, None
        uids = [str(ds.get(k, "") or "").strip() for k in
                ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")]
        if not all(uids):
            raise PacsError("An instance without a study, series or SOP instance UID cannot be "
                            "placed in the local store; it was not stored.")
        path = self.path_for(*uids)
        try:
            with atomic_file(path) as f:
                if payload is not None:
                    f.write(payload)
                else:
                    _write_dataset(ds, f)
        except OSError as exc:
            raise PacsError(f"Could not write {path} ({exc.strerror or exc}); free some disk "
                            "space or choose another store folder, then retry.") from exc
        self._index().add(path.stem)
        return path


def _write_dataset(ds: Dataset, f) -> None:
    meta = getattr(ds, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta:
        meta = FileMetaDataset(meta or {})
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.setdefault("ImplementationClassUID", PYDICOM_IMPLEMENTATION_UID)
    ds.file_meta = meta
    ds.save_as(f, enforce_file_format=True)
