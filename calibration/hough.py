"""The seed paper's first keyboard detector (section 4.1.1), kept as the baseline the lock must beat.

Gaussian blur, Canny edges, probabilistic Hough lines, pruning of repeated lines by slope and
position, then the pair of near-parallel lines whose band looks most like keys (bright, with the
black keys' dark columns along one side). The ends are where the bright band stops. It knows
nothing of octaves: it assumes the whole band is an 88-key keyboard.
"""
from __future__ import annotations

import cv2
import numpy as np

from pianoedge.errors import PianoedgeError


def _merge(lines: np.ndarray, height: int) -> list[tuple[float, float, np.ndarray]]:
    """Lines as (angle, offset, segment), repeated ones (same slope and place) pruned to the longest."""
    kept: list[tuple[float, float, np.ndarray]] = []
    for x1, y1, x2, y2 in sorted(lines.reshape(-1, 4), key=lambda l: -np.hypot(l[2] - l[0], l[3] - l[1])):
        angle = float(np.arctan2(y2 - y1, x2 - x1)) % np.pi
        normal = np.array([-np.sin(angle), np.cos(angle)])
        offset = float(normal @ [x1, y1])
        if all(abs(angle - a) > np.deg2rad(2) or abs(offset - o) > 0.01 * height for a, o, _ in kept):
            kept.append((angle, offset, np.array([x1, y1, x2, y2], float)))
    return kept


def _band_score(gray: np.ndarray, a: np.ndarray, b: np.ndarray, n: int = 200) -> float:
    """Bright keys with dark black-key columns on one side: the mean brightness times the column contrast."""
    ts = np.linspace(0, 1, n)
    rows = []
    for s in np.linspace(0.1, 0.9, 9):
        p = (a[:2] + (a[2:] - a[:2]) * ts[:, None]) * (1 - s) + (b[:2] + (b[2:] - b[:2]) * ts[:, None]) * s
        rows.append(cv2.remap(gray, p[:, 0].astype(np.float32)[None], p[:, 1].astype(np.float32)[None], cv2.INTER_LINEAR).ravel())
    rows = np.array(rows, float)
    contrast = max(rows[:3].std(axis=1).mean(), rows[-3:].std(axis=1).mean())
    return rows.mean() / 255.0 * contrast


def hough_corners(gray: np.ndarray) -> np.ndarray:
    """Keyboard corners (CONTRACTS order) by the seed paper's Hough method; raises when none is found."""
    h, w = gray.shape
    edges = cv2.Canny(cv2.GaussianBlur(gray, (5, 5), 0), 50, 150)
    lines = cv2.HoughLinesP(edges, 1, np.pi / 360, threshold=int(0.15 * w), minLineLength=0.3 * w, maxLineGap=0.02 * w)
    if lines is None:
        raise PianoedgeError("Hough baseline: no long straight edges found")
    merged = _merge(lines, h)
    best, pair = -1.0, None
    for i in range(len(merged)):
        for j in range(i + 1, len(merged)):
            (a1, o1, s1), (a2, o2, s2) = merged[i], merged[j]
            if abs(a1 - a2) > np.deg2rad(4) or not 0.04 * h < abs(o1 - o2) < 0.5 * h:
                continue
            # orient both segments the same way
            if np.dot(s1[2:] - s1[:2], s2[2:] - s2[:2]) < 0:
                s2 = s2[[2, 3, 0, 1]]
            score = _band_score(gray, s1, s2)
            if score > best:
                best, pair = score, (s1, s2)
    if pair is None:
        raise PianoedgeError("Hough baseline: no pair of parallel lines bounds a keyboard")
    s1, s2 = pair
    # extend both lines across the image and find where the band between them is bright
    d = (s1[2:] - s1[:2]) / np.linalg.norm(s1[2:] - s1[:2])
    ts = np.linspace(-2 * w, 2 * w, 4 * w)
    mid0 = (s1[:2] + s2[:2]) / 2
    pts = mid0 + ts[:, None] * d
    inside = (pts[:, 0] >= 0) & (pts[:, 0] < w) & (pts[:, 1] >= 0) & (pts[:, 1] < h)
    values = np.zeros(len(ts))
    values[inside] = cv2.remap(gray, pts[inside, 0].astype(np.float32)[None], pts[inside, 1].astype(np.float32)[None], cv2.INTER_LINEAR).ravel()
    bright = values > np.percentile(values[inside], 50)
    runs = np.flatnonzero(np.diff(np.concatenate([[0], bright.astype(int), [0]])))
    starts, stops = runs[::2], runs[1::2]
    k = int(np.argmax(stops - starts))
    t0, t1 = ts[starts[k]], ts[stops[k] - 1]

    def on(seg: np.ndarray, t: float) -> np.ndarray:
        n = np.array([-d[1], d[0]])
        base = mid0 + t * d
        return base + n * (n @ (seg[:2] - base))

    # the back line is the one nearer the black keys: the darker half of the band
    a_half = _band_score(gray, s1, (s1 + s2) / 2)
    b_half = _band_score(gray, (s1 + s2) / 2, s2)
    back, front = (s1, s2) if a_half < b_half else (s2, s1)
    corners = np.array([on(back, t0), on(back, t1), on(front, t1), on(front, t0)])
    # low end on the image's left-hand side when looking from the front edge towards the back
    edge, side = corners[1] - corners[0], corners[3] - corners[0]
    if edge[0] * side[1] - edge[1] * side[0] < 0:
        corners = corners[[1, 0, 3, 2]]
    return corners
