#!/usr/bin/env python3
"""Thumbs pressing white keys at their front edge, real against studio, as the model's strip shows them.

Run: .venv/bin/python scripts/thumb_tiles.py --real ../shared/data/real --studio TAKE_DIR -o thumbs.jpg
     [--pitches 57 64] [--model models/weights] [--count 8]
One row per note: the key with ``PAD_PX`` columns either side, in four tiles: the rest view, the strip
``BEFORE`` frames before the onset, ``AFTER`` frame after it (down), and their difference x4. Each row
is labelled (and printed) with the model's highest P(onset) on the key around the onset and its mean P(down) over
the three frames from the onset (offline head). Real rows: the notes of ``--pitches`` (default the
real clip's thumb notes, A3 and E4). Studio rows: notes struck by a thumb within ``EDGE_MM`` of the
front edge, planned again from each take's seed (``studio.take.replanned``).
"""
from __future__ import annotations

import argparse

import cv2
import numpy as np

from pianoedge.calibration.layout import key_spans
from pianoedge.models.data import TakeData, load_take
from pianoedge.models.train import load_weights, posteriors
from pianoedge.studio.hands import THUMB_EDGE_Y_MM
from pianoedge.studio.take import replanned
from pianoedge.takes import find_takes

PAD_PX = 40
BEFORE, AFTER = 3, 1  # frames before / after the onset that the tiles show
EDGE_MM = THUMB_EDGE_Y_MM[1]  # a thumb strike this close to a white key's front edge (black keys are struck further back)


def note_rows(net, data: TakeData, notes: list[tuple[int, float]], label: str) -> list[np.ndarray]:
    """One BGR row of four tiles per (pitch, onset seconds)."""
    spans = key_spans(None, data.num_keys, data.lowest)
    probs = posteriors(net, data, head="offline")
    last = len(data.strips) - 1
    rows = []
    for pitch, start in notes:
        frame, key = int(round(start * data.fps)), pitch - data.lowest
        x0, x1 = max(int(spans[key][0]) - PAD_PX, 0), min(int(spans[key][1]) + PAD_PX, data.strips.shape[2])
        before = data.strips[max(frame - BEFORE, 0), :, x0:x1].astype(int)
        down = data.strips[min(frame + AFTER, last), :, x0:x1].astype(int)
        difference = np.clip(np.abs(down - before) * 4, 0, 255)
        row = cv2.cvtColor(np.hstack([data.rest[:, x0:x1], before, down, difference]).astype(np.uint8), cv2.COLOR_GRAY2BGR)
        onset = probs[max(frame - 1, 0):frame + 4, key, 1].max()
        pressed = probs[frame:frame + 3, key, 0].mean()
        text = f"{label} {pitch} at {start:.2f} s: onset {onset:.2f} down {pressed:.2f}"
        print(text)
        cv2.putText(row, text, (2, 10), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (0, 0, 255), 1, cv2.LINE_AA)
        rows.append(np.pad(row, ((0, 2), (0, 0), (0, 0))))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", required=True, help="a folder of real takes")
    parser.add_argument("--studio", required=True, help="a folder of studio takes")
    parser.add_argument("--pitches", type=int, nargs="+", default=[57, 64], help="the real takes' notes to show")
    parser.add_argument("--model", default="models/weights")
    parser.add_argument("--count", type=int, default=8, help="rows of each kind")
    parser.add_argument("-o", "--output", required=True)
    args = parser.parse_args()
    net = load_weights(args.model)
    rows = []
    for take in find_takes(args.real):
        data = load_take(take)
        rows += note_rows(net, data, [(n.pitch, n.start) for n in data.notes if n.pitch in args.pitches][:args.count - len(rows)], "real")
    studio = []
    for take in find_takes(args.studio):
        if len(studio) >= args.count:
            break
        plan = replanned(take)
        notes = [(fn.note.pitch, fn.note.start) for hand in plan.hands.values() for fn in hand.fingers[0] if fn.key_y <= EDGE_MM]
        if notes:
            studio += note_rows(net, load_take(take), notes[:2], "studio")
    rows += studio[:args.count]
    width = max(row.shape[1] for row in rows)
    cv2.imwrite(args.output, np.vstack([np.pad(row, ((0, 0), (0, width - row.shape[1]), (0, 0))) for row in rows]),
                [cv2.IMWRITE_JPEG_QUALITY, 80])
    print(f"{len(rows)} rows -> {args.output}")


if __name__ == "__main__":
    main()
