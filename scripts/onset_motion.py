#!/usr/bin/env python3
"""Whether a key press is the only motion in the frame, in real and studio takes alike.

Run: .venv/bin/python scripts/onset_motion.py TAKE_DIR [TAKE_DIR ...]
For every note of every take: the mean absolute grey-level change, on the canonical strip (884x106,
labelled lock), over the front 60 % of the key's span and a little beside it (where the hand is),
across the 0.13 s up to the onset ("into the onset") and across the same time 0.4 s later ("after").
Prints one row per take (medians) and their ratio. On the real clip the hands move as much after an
onset as into it (ratio about 1); a studio whose ratio is far above 1 teaches that motion is a press.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from pianoedge import keys as K
from pianoedge.models.data import load_take
from pianoedge.takes import find_takes

SIZE = K.CANONICAL_SIZE
FRONT_ROWS = slice(40, None)  # of 106: the keys' front 60 %, where fingers are
BESIDE_PX = 6  # columns either side of the key's span
GAP_S, LATER_S = 0.13, 0.4


def motion(take) -> tuple[float, float, int]:
    """Median change into the onsets, median change LATER_S after them, and the note count."""
    data = load_take(take, SIZE)
    spans = K.layout(data.num_keys, data.lowest).spans_px(SIZE[0])
    gap, later = max(1, round(GAP_S * data.fps)), round(LATER_S * data.fps)
    strips = data.strips.astype(np.float32)
    into, after = [], []
    for note in data.notes:
        onset = int(round(note.start * data.fps))
        if onset < gap or onset + later >= len(strips):
            continue
        index = note.pitch - data.lowest
        cols = slice(max(int(spans[index][0]) - BESIDE_PX, 0), min(int(spans[index][1]) + BESIDE_PX, SIZE[0]))
        into.append(np.abs(strips[onset, FRONT_ROWS, cols] - strips[onset - gap, FRONT_ROWS, cols]).mean())
        t = onset + later
        after.append(np.abs(strips[t, FRONT_ROWS, cols] - strips[t - gap, FRONT_ROWS, cols]).mean())
    return float(np.median(into)), float(np.median(after)), len(into)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    args = parser.parse_args()
    print("| take | into the onset | 0.4 s later | ratio | notes |\n|---|---|---|---|---|")
    for folder in args.folders:
        for take in find_takes(folder):
            into, after, count = motion(take)
            print(f"| {folder.name}/{take.name[:40]} | {into:.1f} | {after:.1f} | {into / max(after, 1e-6):.2f} | {count} |", flush=True)


if __name__ == "__main__":
    main()
