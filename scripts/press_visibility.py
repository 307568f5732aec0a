#!/usr/bin/env python3
"""How much of each studio press the camera can see at all, and whether the model's misses are the unseen ones.

Run: .venv/bin/python scripts/press_visibility.py TAKE_DIR [TAKE_DIR ...] [--model models/weights] [--max-notes N]
Studio takes only: each is planned again from its MIDI and seed (``studio.take.replanned``; the
script stops if the planned scene differs from the take's metadata). For each note, at the frame
where its key is deepest in the first 0.1 s, the frame is rendered twice, with the key as played and
with that key alone at rest (the hands, light and sensor noise identical), and both are warped to the
model's strip with the labelled lock. The key's own signal is what differs over its columns: the
count of strip pixels that change by at least ``--levels`` grey levels (default ``VISIBLE_LEVELS``).
The same pair without hands says how much the hands hide. With ``--model``, each note also gets the model's highest P(onset)
on its key within two frames of its start (offline head), as in BENCHMARKS' twenty-first session.
Prints, per bucket of visible pixels, the share of notes and the model's answers.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from pianoedge import keys as K
from pianoedge.errors import PianoedgeError
from pianoedge.models.data import STRIP_SIZE, load_take, lock_of_take, to_strip
from pianoedge.takes import find_takes
from pianoedge.studio.keychange import LEVELS as VISIBLE_LEVELS
from pianoedge.studio.take import TakeRenderer, replanned

BESIDE_PX = 3  # columns either side of the key's span (its edges move into the gaps)
DEEPEST_WITHIN_S = 0.1
BUCKETS = (0, 1, 10, 40, 10**9)  # visible pixels: none, a few, some, plenty


def key_signal(tr: TakeRenderer, lock, frame: int, index: int, cols: slice, hands: bool, levels: int) -> int:
    """Strip pixels over ``cols`` that change by ``levels`` grey levels when key ``index`` alone goes back to rest."""
    capsules, blobs = tr.hand_geometry(frame) if hands else ((), ())
    played = tr.samples[frame]
    at_rest = played.copy()
    at_rest[:, index] = 0.0
    strips = []
    for samples in (played, at_rest):
        image = tr.renderer.finish(tr.renderer.render(samples, capsules, blobs, finish=False), noise=0)  # the same noise in both
        strips.append(to_strip(lock, image, STRIP_SIZE).astype(np.int16))
    return int((np.abs(strips[0][:, cols] - strips[1][:, cols]) >= levels).sum())


def take_rows(take, net, max_notes: int | None, levels: int) -> list[dict]:
    meta = take.meta()
    notes = take.notes()
    tr = replanned(take)
    studio = meta["studio"]
    lock = lock_of_take(take)
    lowest, fps = int(meta["lowest_key"]), float(meta["fps"])
    spans = K.layout(lock.num_keys, lowest).spans_px(STRIP_SIZE[0])
    probs = None
    if net is not None:
        from pianoedge.models.train import posteriors

        probs = posteriors(net, load_take(take), head="offline" if "offline" in net.heads() else "live")
    rows = []
    for note in notes[:max_notes]:
        index = note.pitch - lowest
        start = int(round(note.start * fps))
        window = range(start, min(start + max(1, round(DEEPEST_WITHIN_S * fps)) + 1, tr.frame_count))
        if not len(window):
            continue
        frame = max(window, key=lambda f: tr.depth[f, note.pitch - K.LOWEST_PITCH])
        cols = slice(max(int(spans[index][0]) - BESIDE_PX, 0), min(int(np.ceil(spans[index][1])) + BESIDE_PX, STRIP_SIZE[0]))
        row = {"take": take.name, "pitch": note.pitch, "black": K.is_black(note.pitch), "view": studio["params"]["view"],
               "seen": key_signal(tr, lock, frame, index, cols, hands=True, levels=levels),
               "bare": key_signal(tr, lock, frame, index, cols, hands=False, levels=levels)}
        if probs is not None:
            around = probs[max(start - 2, 0) : start + 3, index, 1]
            row["onset_peak"] = float(around.max()) if len(around) else 0.0
        rows.append(row)
    return rows


def bucket_table(rows: list[dict], key: str) -> str:
    lines = [f"| {key} pixels | notes | share | median P(onset) peak | peak >= 0.3 |", "|---|---|---|---|---|"]
    for lo, hi in zip(BUCKETS, BUCKETS[1:]):
        chosen = [r for r in rows if lo <= r[key] < hi]
        peaks = np.array([r.get("onset_peak", np.nan) for r in chosen])
        label = f"{lo}-{hi - 1}" if hi < 10**9 else f">= {lo}"
        median = f"{np.median(peaks):.2f}" if len(chosen) and not np.isnan(peaks).all() else "-"
        reached = f"{(peaks >= 0.3).mean():.0%}" if len(chosen) and not np.isnan(peaks).all() else "-"
        lines.append(f"| {label} | {len(chosen)} | {len(chosen) / max(len(rows), 1):.0%} | {median} | {reached} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--model", type=Path, help="a weights folder (e.g. models/weights) to add the model's onset peaks")
    parser.add_argument("--max-notes", type=int, help="notes per take (default: all)")
    parser.add_argument("--levels", type=int, default=VISIBLE_LEVELS, help="grey levels a pixel must change by to count")
    parser.add_argument("--rows", type=Path, help="also write every note's row to this JSON-lines file")
    args = parser.parse_args()
    net = None
    if args.model:
        from pianoedge.models.train import load_weights

        net = load_weights(args.model)
    rows = []
    for folder in args.folders:
        for take in find_takes(folder):
            try:
                got = take_rows(take, net, args.max_notes, args.levels)
            except PianoedgeError as exc:
                raise SystemExit(f"press_visibility: {exc}") from None
            print(f"{folder.name}/{take.name}: {len(got)} notes, none visible {sum(r['seen'] == 0 for r in got)}, "
                  f"none visible without hands {sum(r['bare'] == 0 for r in got)}", flush=True)
            rows += got
    if args.rows:
        args.rows.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print("\nwith the hands as rendered:\n" + bucket_table(rows, "seen"))
    print("\nwithout hands:\n" + bucket_table(rows, "bare"))
    for black in (False, True):
        chosen = [r for r in rows if r["black"] == black]
        print(f"\n{'black' if black else 'white'} keys:\n" + bucket_table(chosen, "seen"))


if __name__ == "__main__":
    main()
