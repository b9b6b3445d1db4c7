"""The cardiothoracic ratio (CTR) of a PA chest film: the detected heart over the thorax.

CTR = maximal horizontal cardiac width / maximal horizontal inner thoracic width, the standard
definition on a postero-anterior (PA) film. The cardiac width is the detected heart box's
width. The thoracic width is measured on the film itself, from the inner rib margins of the
row where the two lung fields are widest (numpy + scipy, no model):

1. the film as lab 5 prepares it (log transform, simplest colour balance, MONOCHROME1
   flipped), smoothed with a box filter about 1% of the film wide, so rib edges and noise do
   not make single-pixel spikes;
2. a dark / bright threshold by Otsu's method over the central part of the film (rows 20-80%,
   columns 15-85%), where aerated lung meets mediastinum, heart and chest wall. Otsu's
   threshold moves with the histogram, so it does not depend on the exposure, the log
   transform or the colour balance: only on lung being darker than the soft tissue around it;
3. the lung fields: dark regions that do not touch the film's edge (the air outside the body
   does) and cover at least 0.2% of it;
4. per row holding lung on both sides of the lungs' mid column, the outer edges of the lung
   fields, located to a fraction of a pixel where the smoothed profile crosses the threshold;
   the widest such row is the thoracic width. Lung only exists above the diaphragm, so the
   row is in the lung zone by construction.

It assumes a frontal chest film, upright, patient centred, both lungs aerated and darker
than the chest wall. A white-out lung, a large effusion or a film cut off at the costophrenic
angles gives no width or a short one, so the CTR comes out high: such a film needs a manual
measurement (the ruler tool). On an AP film (supine, bedside) the heart is magnified, lying
further from the detector, so the CTR is overstated and 0.50 is no threshold.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from medviewer.labs.lab5.plugin import film_to_unit

CARDIOMEGALY_CTR = 0.5  # above this on a PA film: cardiomegaly suspected
SMOOTHING = 0.01  # box filter width, fraction of the film's shorter side
MIN_LUNG = 0.002  # smallest lung field, fraction of the film
CENTRE_ROWS, CENTRE_COLS = (0.2, 0.8), (0.15, 0.85)  # where the threshold is learnt


@dataclass(frozen=True)
class ThoracicWidth:
    """The inner thorax at its widest: on film row `row`, from `left` to `right` (pixel
    edges, fractions of a pixel)."""

    row: int
    left: float
    right: float

    @property
    def width(self) -> float:
        return self.right - self.left


@dataclass(frozen=True)
class CardiothoracicRatio:
    """The CTR of one film, the widths it came from (pixels) and what it suggests."""

    ratio: float
    heart: tuple[float, float, float, float]  # the heart box (x0, y0, x1, y1)
    thorax: ThoracicWidth
    view: str = ""  # ViewPosition: PA, AP, ... ("" when the film does not say)
    verdict: str = field(default="")

    @property
    def heart_width(self) -> float:
        return self.heart[2] - self.heart[0]

    def lines(self) -> list[tuple[tuple[float, float], tuple[float, float]]]:
        """The two widths as segments (start, end) in film pixels, to draw: the heart's
        across the middle of its box, the thorax's on the row it was measured on."""
        x0, y0, x1, y1 = self.heart
        y = (y0 + y1) / 2
        t = self.thorax
        return [((x0, y), (x1, y)), ((t.left, t.row + 0.5), (t.right, t.row + 0.5))]


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """The threshold that best splits `values` into two classes (Otsu 1979): the bin edge
    with the largest between-class variance (values below it are the dark class)."""
    hist, edges = np.histogram(values, bins)
    centres = (edges[:-1] + edges[1:]) / 2
    below = np.cumsum(hist)
    above = below[-1] - below
    moment = np.cumsum(hist * centres)
    mean_below = moment / np.maximum(below, 1)
    mean_above = (moment[-1] - moment) / np.maximum(above, 1)
    return float(edges[1 + np.argmax(below * above * (mean_below - mean_above) ** 2)])


def lung_fields(smooth: np.ndarray, threshold: float) -> np.ndarray:
    """Dark regions that do not touch the film's edge and are large enough to be lung."""
    labels, count = ndimage.label(smooth < threshold)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    keep = sizes >= MIN_LUNG * labels.size
    keep[np.unique(np.r_[labels[0], labels[-1], labels[:, 0], labels[:, -1]])] = False
    keep[0] = False
    return keep[labels]


def thoracic_width(film: np.ndarray, *, inverted: bool = False) -> ThoracicWidth | None:
    """The inner thoracic width of a frontal chest film (see the module's method), or None
    when the film shows no two lung fields."""
    unit = film_to_unit(np.asarray(film), inverted=inverted)
    rows, cols = unit.shape
    size = max(3, int(min(rows, cols) * SMOOTHING) | 1)
    smooth = ndimage.uniform_filter(unit, size)
    centre = smooth[int(rows * CENTRE_ROWS[0]):int(rows * CENTRE_ROWS[1]),
                    int(cols * CENTRE_COLS[0]):int(cols * CENTRE_COLS[1])]
    threshold = otsu_threshold(centre)
    lung = lung_fields(smooth, threshold)
    if not lung.any():
        return None
    mid = np.nonzero(lung)[1].mean()
    both = lung[:, : int(mid)].any(axis=1) & lung[:, int(mid):].any(axis=1)
    best = None
    for y in np.nonzero(both)[0]:
        xs = np.nonzero(lung[y])[0]
        left = _crossing(smooth[y], xs[0] - 1, xs[0], threshold)
        right = _crossing(smooth[y], xs[-1], xs[-1] + 1, threshold)
        if best is None or right - left > best.width:
            best = ThoracicWidth(int(y), left, right)
    return best


def _crossing(profile: np.ndarray, a: int, b: int, threshold: float) -> float:
    """Where the profile crosses `threshold` between pixels a and b (a pixel edge position,
    pixel k's centre at k + 0.5). Lung never touches the edge, so a and b are on the film."""
    va, vb = float(profile[a]), float(profile[b])
    fraction = (va - threshold) / (va - vb) if va != vb else 0.5
    return float(a + 0.5 + fraction * (b - a))


def verdict(ratio: float, view: str = "") -> str:
    """What a CTR suggests, for the film's ViewPosition."""
    view = view.strip().upper()
    above = ratio > CARDIOMEGALY_CTR
    if view == "AP":
        return ("AP film: the heart is magnified and the CTR overstated; "
                + ("above 0.50, which on an AP film does not by itself mean cardiomegaly"
                   if above else "not above 0.50, so the heart is not enlarged"))
    reading = ("suggests cardiomegaly (> 0.50)" if above
               else "within normal limits (\u2264 0.50)")
    if view == "PA":
        return f"PA film: {reading}"
    return f"{reading}, read as a PA film ({'view ' + view if view else 'view not recorded'})"


def cardiothoracic_ratio(film: np.ndarray, heart_box: tuple[float, float, float, float], *,
                         inverted: bool = False, view: str = "") -> CardiothoracicRatio | None:
    """The CTR of one film from its heart box (x0, y0, x1, y1 in film pixels), or None when
    the thoracic width cannot be measured."""
    thorax = thoracic_width(film, inverted=inverted)
    if thorax is None or thorax.width <= 0:
        return None
    heart = tuple(float(v) for v in heart_box)
    ratio = float((heart[2] - heart[0]) / thorax.width)
    return CardiothoracicRatio(ratio, heart, thorax, view.strip().upper(),
                               verdict(ratio, view))
