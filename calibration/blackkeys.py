"""Black keys in an image: the row of dark, narrow, parallel blobs that only a keyboard makes.

Dark structures narrower than a kernel are found with a black-hat transform and Otsu's threshold;
connected blobs of a black key's shape are kept, and RANSAC finds the longest row of them whose long
axes lie across the row. Black keys often touch a dark band at their back (fallboard, felt, shadow):
a second pass removes everything long along the row (a line opening) and looks again, along the row
found first and, while that is too short to lock, along the comb that keys joined by such a band make.
Seen steeply from behind, a nameboard can hide all but the black keys' front ends, which then show as
squat blobs: when the slender ones are too few to lock, a last pass takes blobs of any aspect that
line up.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

MIN_ROW = 5  # fewer black keys than this is not a keyboard
MIN_LOCK_ROW = 8  # fewer than this cannot say which key is which
ASPECT = (2.0, 15.0)  # long / short side of a black key's blob
SQUAT_ASPECT = (1.0, ASPECT[0])  # a black key's front end alone (see the last pass)
COMB_ASPECT = 3.0  # long / short side of black keys joined by a band at their backs (at least)
COMB_TURNS_DEG = (0.0, -2.0, 2.0, -4.0, 4.0, -6.0, 6.0)  # directions tried for that band, about the comb's long axis
FILL = 0.6  # blob area over its rectangle's
SOLID = 0.85  # a blob that fills less of its rectangle than this may have lines hanging on (see ``clean``)


@dataclass
class BlackKeyRow:
    """Black-key blobs (OpenCV rotated rects) along one row, and the row's unit direction."""

    rects: list
    direction: np.ndarray

    @property
    def centres(self) -> np.ndarray:
        return np.array([r[0] for r in self.rects], float)

    def across(self) -> tuple[np.ndarray, np.ndarray]:
        """Each key's unit axis across the row (its blob's long axis; the row's normal for a squat
        blob, whose long axis says nothing) and its blob's length along that axis."""
        normal = np.array([-self.direction[1], self.direction[0]])
        axes, lengths = [], []
        for rect in self.rects:
            if _aspect(rect) >= ASPECT[0]:
                axes.append(_long_axis(rect))
                lengths.append(max(rect[1]))
            else:
                axes.append(normal)
                lengths.append(float(np.ptp(cv2.boxPoints(rect) @ normal)))
        return np.array(axes), np.array(lengths)

    def __len__(self) -> int:
        return len(self.rects)


def _long_axis(rect) -> np.ndarray:
    (_, _), (w, h), angle = rect
    a = np.deg2rad(angle)
    d = np.array([np.cos(a), np.sin(a)])
    return d if w >= h else np.array([-d[1], d[0]])


def _aspect(rect) -> float:
    return max(rect[1]) / max(min(rect[1]), 1.0)


def _blobs(binary: np.ndarray, max_area: float, aspect: tuple[float, float] = ASPECT, clean: bool = False) -> list:
    """Rotated rects of the blobs shaped like black keys (``clean``: blobs that are not plain bars are
    measured without the thin lines hanging on them)."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(binary)
    rects = []
    for i in range(1, n):
        x, y, w, h, area = stats[i]
        if area < 15 or area > max_area:
            continue
        mask = (labels[y : y + h, x : x + w] == i).astype(np.uint8)
        rect = _rect(mask, x, y)
        if clean and area < SOLID * rect[1][0] * rect[1][1]:
            mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
            area = int(mask.sum())
            if area < 15:
                continue
            rect = _rect(mask, x, y)
        rw, rh = rect[1]
        if aspect[0] <= _aspect(rect) < aspect[1] and area > FILL * rw * rh:
            rects.append(rect)
    return rects


def _rect(mask: np.ndarray, x: int, y: int):
    """OpenCV rotated rect of a blob's pixels (``mask``, its top-left corner at x, y)."""
    return cv2.minAreaRect((np.column_stack(np.nonzero(mask)[::-1]) + [x, y]).astype(np.float32))


def _row(rects: list, rng: np.random.Generator, iterations: int = 400) -> BlackKeyRow:
    """The largest set of blobs on one line, long axes across it (squat ones need not), of similar length."""
    if len(rects) < MIN_ROW:
        return BlackKeyRow([], np.array([1.0, 0.0]))
    centres = np.array([r[0] for r in rects], float)
    length = np.array([max(r[1]) for r in rects], float)
    axes = np.array([_long_axis(r) for r in rects])
    squat = np.array([_aspect(r) < ASPECT[0] for r in rects])
    i, j = np.array([rng.choice(len(rects), 2, replace=False) for _ in range(iterations)]).T  # pairs: two blobs on the line
    d = centres[j] - centres[i]
    dist = np.linalg.norm(d, axis=1)
    u = d / np.maximum(dist, 1e-9)[:, None]
    normal = np.column_stack([-u[:, 1], u[:, 0]])
    offset = np.abs(np.einsum("pnk,pk->pn", centres[None] - centres[i][:, None], normal))  # (pairs, blobs)
    ref = length[i][:, None]
    inliers = ((offset < 0.35 * np.maximum(ref, length[None])) & ((np.abs(u @ axes.T) < 0.6) | squat[None])
               & (length[None] > 0.4 * ref) & (length[None] < 2.5 * ref) & (dist >= 1.0)[:, None])
    k = int(np.argmax(inliers.sum(axis=1)))  # the first pair with the most blobs on its line
    best = np.flatnonzero(inliers[k])
    if len(best) < MIN_ROW:
        return BlackKeyRow([], u[k] if dist[k] >= 1.0 else np.array([1.0, 0.0]))
    # refit the direction through all inliers
    pts = centres[best]
    vx, vy, _, _ = cv2.fitLine(pts.astype(np.float32), cv2.DIST_HUBER, 0, 0.01, 0.01).ravel()
    direction = np.array([vx, vy], float)
    order = np.argsort((pts - pts.mean(axis=0)) @ direction)
    return BlackKeyRow([rects[k] for k in best[order]], direction)


def _band_direction(binary: np.ndarray) -> np.ndarray | None:
    """Long axis of the largest dark structure: black keys fused with a band at their backs make a comb."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(binary)
    if n < 2:
        return None
    i = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    pts = np.column_stack(np.nonzero(labels == i)[::-1]).astype(np.float32)
    rect = cv2.minAreaRect(pts)
    if max(rect[1]) < COMB_ASPECT * max(min(rect[1]), 1.0):
        return None
    return _long_axis(rect)


def _without_bands(binary: np.ndarray, direction: np.ndarray, length: int) -> np.ndarray:
    """``binary`` less every dark run longer than ``length`` along ``direction``."""
    h, w = binary.shape
    angle = float(np.degrees(np.arctan2(direction[1], direction[0])))
    rotate = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    upright = cv2.warpAffine(binary, rotate, (w, h), flags=cv2.INTER_NEAREST)
    band = cv2.morphologyEx(upright, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (max(length, 3), 1)))
    keys_only = cv2.warpAffine(cv2.subtract(upright, band), cv2.invertAffineTransform(rotate), (w, h), flags=cv2.INTER_NEAREST)
    return cv2.morphologyEx(keys_only, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8))


def find_black_keys(gray: np.ndarray, clean: bool = False) -> BlackKeyRow:
    """The row of black keys in a grey image (empty when there is none). ``clean``: blobs that are not
    plain bars are measured without the thin lines hanging on them (white-key gaps touching a black
    key lengthen its blob, and a row of such keys skews the fit), for a lock that fails without."""
    h, w = gray.shape
    k = max(int(w / 40) | 1, 9)
    blackhat = cv2.morphologyEx(gray, cv2.MORPH_BLACKHAT, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    _, binary = cv2.threshold(blackhat, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    rng = np.random.default_rng(0)
    max_area = 0.01 * w * h
    best = _row(_blobs(binary, max_area, clean=clean), rng)
    # second pass: cut away bands that run along the row (what black keys' backs often touch), along
    # the row found, and while that is too short to lock, along the comb that keys touching a band make
    directions = []
    if len(best) >= MIN_ROW:
        directions.append((best.direction, int(2.5 * float(np.median(np.diff(best.centres @ best.direction))))))
    if len(best) < MIN_LOCK_ROW and (comb := _band_direction(binary)) is not None:
        # the comb's rectangle leans with whatever else joined it (a case edge, white-key gaps): its band
        # may run a few degrees off its long axis, and a cut along the wrong line leaves the band whole
        for turn in np.radians(COMB_TURNS_DEG):
            c, s = np.cos(turn), np.sin(turn)
            directions.append((np.array([c * comb[0] - s * comb[1], s * comb[0] + c * comb[1]]), 3 * k))
    masks = [binary] + [_without_bands(binary, direction, length) for direction, length in directions]
    for mask in masks[1:]:
        row = _row(_blobs(mask, max_area, clean=clean), rng)
        if len(row) > len(best):
            best = row
    for mask in masks if len(best) < MIN_LOCK_ROW else []:
        row = _row(_blobs(mask, max_area, (SQUAT_ASPECT[0], ASPECT[1]), clean), rng)
        if len(row) > len(best):
            best = row
    return best
