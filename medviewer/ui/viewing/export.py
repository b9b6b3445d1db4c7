"""Export View as PNG: what the reader sees (image, letters, corner text, measurements).

The PNG is written atomically (a temporary file in the chosen folder, fsync, rename), so a
full disk or a crash never leaves half an image under the chosen name. The dialog starts in
the folder of the last export, else the user's Pictures folder, never in the DICOM folder:
nothing is written next to the source data unless the reader chooses it.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from PySide6.QtCore import QSettings, QStandardPaths
from PySide6.QtGui import QImage, QPixmap

from medviewer.ui.document.study import StudyDocument

EXPORT_FOLDER_KEY = "files/exportFolder"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def save_png_atomic(image: QImage | QPixmap, path: str | Path) -> Path:
    """Write `image` as PNG to `path` via a temporary file in the same folder + os.replace."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=".png.tmp", dir=target.parent)
    os.close(fd)
    try:
        if not image.save(tmp, "PNG"):
            raise OSError(f"could not write a PNG image in {target.parent}")
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def with_png_suffix(path: str | Path) -> Path:
    """The chosen name, with ".png" added when the reader typed none."""
    path = Path(path)
    return path if path.suffix.lower() == ".png" else path.with_name(path.name + ".png")


def export_file_name(document: StudyDocument) -> str:
    """A name that says what the image is: modality, series, image number ("CT_Thorax_7.png")."""
    volume, series = document.volume, document.series
    description = (volume.description if volume else "") or (series.description if series
                                                              else "")
    parts = [document.modality, description, str(document.image_position() + 1)]  # as shown
    name = "_".join(_UNSAFE.sub("-", p).strip("-") for p in parts if p)
    return f"{name or 'view'}.png"


def export_folder(settings: QSettings) -> Path:
    """Where the save dialog starts: the last export's folder, else Pictures, else home."""
    last = settings.value(EXPORT_FOLDER_KEY)
    if last and Path(str(last)).is_dir():
        return Path(str(last))
    pictures = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.PicturesLocation)
    return Path(pictures) if pictures and Path(pictures).is_dir() else Path.home()
