#!/usr/bin/env python3
"""How much a key press changes the key's own pixels, in real and studio takes alike.

Run: .venv/bin/python scripts/press_contrast.py TAKE_DIR [TAKE_DIR ...]
For every note (at least 2 frames long) of every take: the mean grey-level change, on the canonical
strip (884x106, labelled lock), over the back third of the pressed key's span (where fingers seldom
are) between 6 frames before the onset and 2 frames after it. Prints one row per take (median and
10th percentile, white and black keys) and a Markdown table to paste into BENCHMARKS.md.
Seen from above, a real pressed key's top barely changes: the studio should not show more.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from pianoedge import keys as K
from pianoedge.models.data import load_take
from pianoedge.takes import find_takes

SIZE = K.CANONICAL_SIZE
BACK_ROWS = slice(5, 35)  # of 106: the keys' back third
BEFORE, AFTER = 6, 2  # frames before and after the onset


def press_changes(take) -> dict[str, np.ndarray]:
    data = load_take(take, SIZE)
    layout = K.layout(data.num_keys, data.lowest)
    spans = layout.spans_px(SIZE[0])
    changes: dict[str, list[float]] = {"white": [], "black": []}
    for note in data.notes:
        onset, end = int(round(note.start * data.fps)), int(note.end * data.fps)
        if end - onset < AFTER + 1 or onset < BEFORE or onset + AFTER >= len(data.strips):
            continue
        index = note.pitch - data.lowest
        left, right = int(spans[index][0]) + 2, int(spans[index][1]) - 2
        if right <= left:
            continue
        before = data.strips[onset - BEFORE, BACK_ROWS, left:right].astype(float)
        after = data.strips[onset + AFTER, BACK_ROWS, left:right].astype(float)
        changes["black" if layout.black_mask[index] else "white"].append(float((after - before).mean()))
    return {k: np.array(v) for k, v in changes.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    args = parser.parse_args()
    rows = []
    for folder in args.folders:
        for take in find_takes(folder):
            c = press_changes(take)
            cells = []
            for colour in ("white", "black"):
                v = c[colour]
                cells.append(f"{np.median(v):+.1f} / {np.percentile(v, 10):+.1f} ({len(v)})" if len(v) else "-")
            rows.append(f"| {folder.name}/{take.name[:40]} | {cells[0]} | {cells[1]} |")
            print(rows[-1], flush=True)
    print("\n| take | white keys: median / 10th pct (notes) | black keys: median / 10th pct (notes) |\n|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
