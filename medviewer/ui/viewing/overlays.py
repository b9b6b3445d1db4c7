"""The text a reader expects on the image, as a PACS puts it there.

Corners: who and which study (top left: patient name, ID, sex and age, study date and
description, institution), which image (top right: plane, image, time point, table position,
thick slab; under it the modality, series number and description and slice thickness), window,
level, zoom and an "Inverted" flag (bottom left), pixel size (bottom right). Edges: orientation
letters. Middle: why an image failed to decode, instead of a silent blank. Demographics are on
every image because wrong-patient errors are a real hazard. O hides all text but the failure
message (clean screenshots, teaching). The text is light with a dark outline round every glyph
(`OutlinedLabel`), readable on black and on white alike (an inverted film, bone). The labels
are children of the SliceView, so
`widget.grab()` (and Export View) carries them.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QFont, QImage, QPainter
from PySide6.QtWidgets import QLabel, QWidget

from medviewer.core import geometry

if TYPE_CHECKING:
    from medviewer.ui.viewing.slice_view import SliceView

# light text with a dark outline round every glyph: readable on black, on white (an inverted
# film, bone, contrast) and on anything between, as PACS draw their overlays
TEXT_COLOUR, LETTER_COLOUR, OUTLINE_COLOUR = QColor("#e8e8a0"), QColor("#ffd24a"), QColor("#000")
# the outline: the text drawn shifted by each of these, under the text itself (1 px all round)
OUTLINE_OFFSETS = ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, -1), (1, -1), (-1, 1))
FAILURE_STYLE = ("color: #ff7a6e; background: rgba(0, 0, 0, 170); padding: 8px; "
                 "border: 1px solid #ff7a6e; font: bold 13px 'DejaVu Sans';")
# where each overlay sits, as fractions of the free width and height ("series" goes under
# "top_right": the image lines change on every scroll, the series lines never)
OVERLAY_PLACES = {"top_left": (0, 0), "top_right": (1, 0), "series": (1, 0),
                  "bottom_left": (0, 1), "bottom_right": (1, 1), "left": (0, 0.5),
                  "right": (1, 0.5), "top": (0.5, 0), "bottom": (0.5, 1)}
TEXT_BLOCKS = ("top_left", "top_right", "series", "bottom_left", "bottom_right")
ELIDED = ("top_left", "series")  # free text from the header: cut rather than cover a letter
MARGIN = 6
AGE_UNITS = "YMWD"  # AS: years, months, weeks, days


# ----------------------------------------------------------------------- header text
def person_name(text: str) -> str:
    """DICOM PN 'DOE^JANE^M^DR' as a reader writes it: 'DOE, JANE M' (prefix and suffix kept,
    the alphabetic group of a multi-script name)."""
    alphabetic = text.split("=")[0] or text.replace("=", " ").strip()
    family, given, middle, prefix, suffix = (alphabetic.split("^") + [""] * 5)[:5]
    first = " ".join(p for p in (prefix, given, middle) if p.strip())
    name = f"{family}, {first}" if family and first else family or first
    return f"{name} {suffix}".strip()


def dicom_date(text: str) -> str:
    """DA 'YYYYMMDD' (or the old 'YYYY.MM.DD') as 'YYYY-MM-DD'; anything else as it is."""
    digits = text.replace(".", "").strip()
    if len(digits) == 8 and digits.isdigit():
        return f"{digits[:4]}-{digits[4:6]}-{digits[6:]}"
    return text.strip()


def _parse_date(text: str) -> date | None:
    shown = dicom_date(text or "")
    try:
        return date.fromisoformat(shown) if len(shown) == 10 else None
    except ValueError:
        return None


def patient_age(header: dict[str, str]) -> str:
    """PatientAge ('066Y' -> '66Y'), else the age at the study from the birth date: years,
    months under two years, days under two months. '' when neither is known."""
    stored = header.get("PatientAge", "").strip().upper()
    if len(stored) >= 2 and stored[:-1].isdigit() and stored[-1] in AGE_UNITS:
        return f"{int(stored[:-1])}{stored[-1]}"
    born, seen = (_parse_date(header.get(k, "")) for k in ("PatientBirthDate", "StudyDate"))
    if born is None or seen is None or seen < born:
        return ""
    months = (seen.year - born.year) * 12 + seen.month - born.month - (seen.day < born.day)
    if months >= 24:
        return f"{months // 12}Y"
    return f"{months}M" if months >= 2 else f"{(seen - born).days}D"


def patient_lines(header: dict[str, str]) -> list[str]:
    """Top left: name, ID, sex and age, study date, study description, institution."""
    sex_age = "  ".join(p for p in (header.get("PatientSex", ""), patient_age(header)) if p)
    lines = [person_name(header.get("PatientName", "")),
             f"ID {header['PatientID']}" if header.get("PatientID") else "", sex_age,
             dicom_date(header.get("StudyDate", "")), header.get("StudyDescription", ""),
             header.get("InstitutionName", "")]
    return [line for line in lines if line]


def series_lines(header: dict[str, str], modality: str, description: str) -> list[str]:
    """Under the image lines: 'CT  Se 2  CHEST 2.5mm' and the slice thickness."""
    number = header.get("SeriesNumber", "")
    title = "  ".join(p for p in (modality, f"Se {number}" if number else "",
                                  header.get("SeriesDescription") or description) if p)
    lines = [title] if title else []
    try:
        thickness = float(header.get("SliceThickness", ""))
    except ValueError:
        return lines
    return lines + [f"Thk {thickness:g} mm"] if thickness > 0 else lines


# ----------------------------------------------------------------------- the labels
class OutlinedLabel(QLabel):
    """A QLabel drawn as light text with a dark outline (`colour` on `OUTLINE_COLOUR`)."""

    def __init__(self, parent: QWidget, colour: QColor, *, size_px: int,
                 bold: bool = False) -> None:
        super().__init__(parent)
        self.colour, self.outline = QColor(colour), QColor(OUTLINE_COLOUR)
        font = QFont("DejaVu Sans")
        font.setPixelSize(size_px)
        font.setBold(bold)
        self.setFont(font)
        self.setTextFormat(Qt.TextFormat.PlainText)  # header text is never markup
        self.setContentsMargins(2, 2, 2, 2)  # room for the outline
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self._cached, self._cached_key = QImage(), None

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt override
        """The text from a cached picture: the label is repainted on every slice change (the
        image under it moved) but its text rarely changes, and stroking the outline of every
        glyph again cost more than drawing the image itself."""
        key = (self.text(), self.size(), int(self.alignment().value), self.devicePixelRatioF(),
               self.font().key(), self.colour.rgba(), self.outline.rgba())
        if key != self._cached_key:
            self._cached, self._cached_key = self._draw_text(key[3]), key
        QPainter(self).drawImage(0, 0, self._cached)

    def _draw_text(self, ratio: float) -> QImage:
        """The text in its colour over itself in the outline colour shifted one pixel to each
        of the 8 sides: an outline round every glyph, from Qt's glyph cache (stroking the
        glyphs' outlines as paths took 4 ms for three lines, and one label changes per slice)."""
        image = QImage(self.size() * ratio, QImage.Format.Format_ARGB32_Premultiplied)
        image.setDevicePixelRatio(ratio)
        image.fill(Qt.GlobalColor.transparent)
        painter = QPainter(image)
        painter.setFont(self.font())
        area, align, text = self.contentsRect(), self.alignment(), self.text()
        painter.setPen(self.outline)
        for dx, dy in OUTLINE_OFFSETS:
            painter.drawText(area.translated(dx, dy), align, text)
        painter.setPen(self.colour)
        painter.drawText(area, align, text)
        painter.end()
        return image


class ImageOverlays:
    """The corner, edge and failure labels of one SliceView, and the text they carry."""

    def __init__(self, view: SliceView) -> None:
        self.view = view
        self.lines: dict[str, list[str]] = {name: [] for name in ELIDED}
        self.labels: dict[str, QLabel] = {}
        flag = Qt.AlignmentFlag
        # on the image's own widget, which has no layout: a label's new text asks its
        # parent's layout to redo itself, and over the SliceView that relaid the whole main
        # window (docks, separators) on every scroll
        over = view.graphics.viewport()
        for name, (fx, _) in OVERLAY_PLACES.items():
            label = (OutlinedLabel(over, TEXT_COLOUR, size_px=11) if name in TEXT_BLOCKS
                     else OutlinedLabel(over, LETTER_COLOUR, size_px=14, bold=True))
            label.setAlignment((flag.AlignRight if fx == 1 else flag.AlignLeft) | flag.AlignTop)
            self.labels[name] = label
        self.failure_label = QLabel(over)  # on a dark box of its own
        self.failure_label.setStyleSheet(FAILURE_STYLE)
        self.failure_label.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.failure_label.setWordWrap(True)
        self.failure_label.setAlignment(flag.AlignCenter)
        self.failure_label.hide()

    @property
    def title(self) -> str:
        """The series line (modality, number, description), as before the demographics."""
        return self.lines["series"][0] if self.lines["series"] else ""

    def update(self, *, image_only: bool = False) -> None:
        """Rewrite the labels from the document and the view, then place the ones whose text
        changed. `image_only`: another image of the same series and plane (a scroll, a time
        point, a window): the patient, series, spacing and letter labels stay as they are."""
        view, doc, o = self.view, self.view.document, self.labels
        w = doc.window
        flag = "  Inverted" if doc.display_inverted else ""
        texts = {"top_right": "\n".join(self.slice_lines()),
                 "bottom_left": f"W {w.width:.0f}  L {w.center:.0f}{flag}\n"
                                f"Zoom {view.zoom():.2f}x"}
        changed: set[str] = set()
        if not image_only:
            texts.update(self._series_texts())
            lines = self._header_lines()
            changed = {name for name in ELIDED if lines[name] != self.lines[name]}
            self.lines.update(lines)
        changed |= {name for name, text in texts.items() if o[name].text() != text}
        for name in changed & texts.keys():
            o[name].setText(texts[name])
        reason = doc.decode_failure(view.plane_name, view.slice_index)
        self.failure_label.setText(f"Image could not be decoded:\n{reason}" if reason else "")
        self.failure_label.setVisible(reason is not None)
        for label in o.values():
            label.setVisible(doc.overlays_visible)
        self.place(changed)

    def _header_lines(self) -> dict[str, list[str]]:
        doc = self.view.document
        header, series = doc.header, doc.series
        description = (doc.volume.description if doc.volume else "") or (
            series.description if series else "")
        return {"top_left": patient_lines(header),
                "series": series_lines(header, doc.modality, description)}

    def _series_texts(self) -> dict[str, str]:
        """Pixel size and orientation letters: the same on every image of a plane."""
        view, doc = self.view, self.view.document
        row_mm, col_mm = view.spacing
        letters = doc.edge_labels(view.plane_name)
        texts = {edge: letters.get(edge, "") for edge in ("left", "right", "top", "bottom")}
        texts["bottom_right"] = (f"{col_mm:.2f} x {row_mm:.2f} mm" if doc.spacing_known
                                 else "no pixel spacing")
        return texts

    def slice_lines(self) -> list[str]:
        """Top right: plane, image, time, position and slab; a projection image (no geometry)
        is "Image k / n" with no position, never an invented "Axial" at "Pos 0.0 mm"."""
        view, doc = self.view, self.view.document
        n, k = view.plane.count, doc.image_position(view.plane_name) + 1  # reading order
        located = doc.has_geometry
        lines = [f"{view.plane.name.capitalize()}  {k} / {n}" if located else f"Image {k} / {n}"]
        if doc.time_count > 1:
            lines.append(f"Time {doc.time_index + 1} / {doc.time_count}")
        if located:
            lines.append(f"Pos {self.slice_position_mm():.1f} mm")
        slab = doc.slab_label(view.plane_name)
        if slab:
            lines.append(slab)
        if doc.volume is None:
            lines.append("loading…")
        return lines

    def slice_position_mm(self) -> float:
        """Position of this image along its plane normal, as the scanner's table would read."""
        view = self.view
        col, row, slc = view.document.crosshair
        lps = geometry.voxel_to_lps(view.document.affine, col, row, slc)
        axis = {"axial": 2, "coronal": 1, "sagittal": 0}[view.plane.name]
        return float(lps[axis])

    def place(self, names: set[str] | None = None) -> None:
        """Corners and edges at their places (`names` only, or all); header text elided
        rather than cover a letter; the series lines just under the image lines."""
        w, h, m = self.view.width(), self.view.height(), MARGIN
        image_lines_height = self.labels["top_right"].height()
        for name, label in self.labels.items():  # "series" after "top_right": it goes under
            if name == "series" and names is not None and (
                    self.labels["top_right"].height() != image_lines_height):
                names = names | {"series"}
            if names is not None and name not in names:
                continue
            fx, fy = OVERLAY_PLACES[name]
            if name in ELIDED:
                width = max(60, w // 2 - 16)
                label.setText("\n".join(label.fontMetrics().elidedText(
                    line, Qt.TextElideMode.ElideRight, width) for line in self.lines[name]))
            label.adjustSize()
            below = self.labels["top_right"].height() if name == "series" else 0
            label.move(int(m + fx * (w - label.width() - 2 * m)),
                       int(m + below + fy * (h - label.height() - 2 * m)))
        failure = self.failure_label
        if failure.isVisibleTo(self.view):
            failure.setFixedWidth(max(120, int(w * 0.8)))
            failure.adjustSize()
            failure.move((w - failure.width()) // 2, (h - failure.height()) // 2)
