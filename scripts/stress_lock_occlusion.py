#!/usr/bin/env python3
"""Lock stress test: one end of each hard-view test image's keyboard covered by a uniform block.

Run: .venv/bin/python scripts/stress_lock_occlusion.py
For every image in tests/data/lock that locks right (mean corner error under 5 px), each end is
covered in turn by a dark block (grey 70) over 12 % of the keyboard's width and by a light one
(grey 200) over 20 %, from just outside the end inward. Each covered frame is locked again and
counted as right (right size and octave, under 5 px), refused, or wrong (a smaller keyboard read
where the block makes a case-like end, or the right one far off). A refusal is the wanted outcome
where the keys are not right; a wrong lock is a confident wrong answer.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from pianoedge.calibration.acquire import lock_frames
from pianoedge.errors import PianoedgeError

IMAGES = Path(__file__).resolve().parents[1] / "tests" / "data" / "lock"
BLOCKS = ((0.12, 70), (0.2, 200))  # (share of the keyboard's width covered, grey level)


def covered(grey: np.ndarray, corners: np.ndarray, end: int, share: float, shade: int) -> np.ndarray:
    """``grey`` with a block over ``share`` of the keyboard at the low (0) or high (1) end (corners in
    the CONTRACTS order: back-low, back-high, front-high, front-low), from 5 % outside the end."""
    a, b = (corners[0], corners[3]) if end == 0 else (corners[1], corners[2])
    o, p = (corners[1], corners[2]) if end == 0 else (corners[0], corners[3])
    quad = np.array([a + (o - a) * -0.05, a + (o - a) * share, b + (p - b) * share, b + (p - b) * -0.05])
    out = grey.copy()
    cv2.fillPoly(out, [np.round(quad).astype(np.int32)], shade)
    return out


def main() -> None:
    counts = {"right": 0, "refused": 0, "wrong": 0}
    for png in sorted(IMAGES.glob("*.png")):
        grey, meta = cv2.imread(str(png), cv2.IMREAD_GRAYSCALE), json.loads(png.with_suffix(".json").read_text())
        corners = np.array(meta["corners"])
        try:
            if np.linalg.norm(lock_frames([grey]).corners - corners, axis=1).mean() > 5:
                continue
        except PianoedgeError:
            continue
        for end in (0, 1):
            for share, shade in BLOCKS:
                try:
                    lock = lock_frames([covered(grey, corners, end, share, shade)])
                    error = np.linalg.norm(lock.corners - corners, axis=1).mean()
                    right = (lock.num_keys, lock.lowest_key) == (meta["num_keys"], meta["lowest_key"]) and error < 5
                    outcome, detail = ("right" if right else "wrong"), f"{lock.num_keys} keys from {lock.lowest_key}, {error:.1f} px"
                except PianoedgeError as exc:
                    outcome, detail = "refused", str(exc)[:70]
                counts[outcome] += 1
                print(f"{png.stem:45} {'low' if end == 0 else 'high'} end {share:.0%} grey {shade:3}: {outcome:7} {detail}", flush=True)
    print(f"\n{sum(counts.values())} covered frames: {counts['right']} right, {counts['refused']} refused, {counts['wrong']} wrong")


if __name__ == "__main__":
    main()
