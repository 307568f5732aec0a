#!/usr/bin/env python3
"""Keyboard lock accuracy and speed on fresh studio takes (H.264 video, 1280x720 unless --size, every camera view),
beside the seed paper's Hough-line baseline on the same frames.

Run: .venv/bin/python scripts/bench_lock.py [--takes N] [--seed S] [--size WxH] [--keys-given]
For each take: `lock_frames(frames_from_video(...))` (lens distortion estimated), then the corner error
against the take's labels, whether size and octave are right, and the time (one core, video decoding
included). The baseline (`calibration.hough`) runs on the median of the same frames; it always
assumes 88 keys, so on 61/76-key takes it counts as a wrong size. "hough, any order" scores its
corners in whichever of the band's four orders fits best (how far its lines are off, apart from
telling the low end and the front).

--orders N locks every take N times, the i-th time with the point pairs of each `cv2.findHomography`
call in a seeded order of their own (`calibration.draws`; order 0: as given): the points are the same, only RANSAC's
samples differ, so a take whose outcome changes with the order is decided by the draw, not the image.
Compare a change to the lock against this spread (BENCHMARKS.md, issue 3, thirtieth session).
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from datetime import date

import cv2
import numpy as np

from pianoedge import keys as K
from pianoedge.calibration.acquire import frames_from_video, lock_frames
from pianoedge.calibration.draws import shuffled_fits
from pianoedge.calibration.hough import hough_corners
from pianoedge.errors import PianoedgeError
from pianoedge.studio import music
from pianoedge.studio.params import VIEWS
from pianoedge.studio.take import render_take


RIGHT_KEYS = ("within 3 px", "over 3 px")  # the outcomes of a lock that names the right keys


def try_lock(frames: list[np.ndarray], keys: int | None):
    """``lock_frames``'s lock and "", or None and its refusal."""
    try:
        return lock_frames(frames, keys), ""
    except PianoedgeError as exc:
        return None, str(exc)


def outcome(lock, size: int, lo: int, truth: np.ndarray) -> tuple[str, float]:
    """What a lock came to ("refused", "wrong", "within 3 px", "over 3 px") and its mean corner error."""
    if lock is None:
        return "refused", float("nan")
    error = float(np.linalg.norm(lock.corners - truth, axis=1).mean())
    if (lock.num_keys, lock.lowest_key) != (size, lo):
        return "wrong", error
    return ("within 3 px" if error <= 3.0 else "over 3 px"), error


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--takes", type=int, default=24)
    parser.add_argument("--seed", type=int, default=500)
    parser.add_argument("--keep", metavar="DIR", help="render the takes into DIR and reuse them on the next run")
    parser.add_argument("--size", default="1280x720", help="frame size of the rendered takes, WIDTHxHEIGHT (default 1280x720)")
    parser.add_argument("--keys-given", action="store_true", help="tell the lock each take's keyboard size, as `pianoedge lock --keys` does")
    parser.add_argument("--verbose", action="store_true", help="print one line per take (error or refusal reason)")
    parser.add_argument("--orders", type=int, default=1, help="lock each take this many times, with the points of every "
                        "homography fit in another order (RANSAC's draw), and report how much the outcomes move")
    args = parser.parse_args()
    spread = []  # (take, order, outcome, error) for every order
    width, height = map(int, args.size.lower().split("x"))
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    cv2.setNumThreads(1)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        tmp = args.keep or scratch
        for i in range(args.takes):
            seed = args.seed + i
            size = (88, 76, 61)[i % 3] if i % 2 else 88
            lo, hi = K.keyboard_range(size)
            rng = np.random.default_rng(seed)
            perf = music.exercise(music.EXERCISE_KINDS[i % len(music.EXERCISE_KINDS)], rng, 3.0, lo, hi)
            view = VIEWS[i % len(VIEWS)]
            video = Path(tmp) / f"t{i}-{seed}.mp4"
            if not (video.is_file() and video.with_suffix(".json").is_file()):
                video = render_take(list(perf.notes), tmp, video.stem, seed, num_keys=size, view=view, width=width, height=height)
            meta = json.loads(video.with_suffix(".json").read_text())
            truth = np.array(meta["corners"])
            keys = size if args.keys_given else None
            t = time.perf_counter()
            frames = frames_from_video(video)
            lock, reason = try_lock(frames, keys)  # lens distortion estimated, not given
            kind, error = outcome(lock, size, lo, truth)
            rows.append(("lock", view, kind in RIGHT_KEYS, error, time.perf_counter() - t, reason))
            spread.append((video.stem, 0, kind, error))
            for order in range(1, args.orders):
                with shuffled_fits(order):
                    spread.append((video.stem, order, *outcome(try_lock(frames, keys)[0], size, lo, truth)))
                if args.verbose:
                    print(f"{video.stem} order {order}: {spread[-1][2]} ({spread[-1][3]:.1f} px)", flush=True)
            t = time.perf_counter()
            grey = np.median(np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in frames]), axis=0).astype(np.uint8)
            try:
                corners = hough_corners(grey)
                seconds = time.perf_counter() - t
                error = float(np.linalg.norm(corners - truth, axis=1).mean())
                rows.append(("hough", view, size == 88, error, seconds, ""))
                # the same band with its ends and sides in whichever order fits best: how far the
                # lines themselves are off, apart from telling the low end and the front
                unordered = min(float(np.linalg.norm(corners[list(order)] - truth, axis=1).mean())
                                for order in ((0, 1, 2, 3), (1, 0, 3, 2), (3, 2, 1, 0), (2, 3, 0, 1)))
                rows.append(("hough, any order", view, size == 88, unordered, seconds, ""))
            except PianoedgeError as exc:
                rows.append(("hough", view, False, float("nan"), time.perf_counter() - t, str(exc)))
                rows.append(("hough, any order", view, False, float("nan"), time.perf_counter() - t, str(exc)))
            if args.verbose:
                for r in rows[-3:]:
                    print(f"{video.stem} {size} keys {r[0]:5} {r[1]:8} right={r[2]} error={r[3]:.1f} px {r[4]:.2f} s {r[5][:150]}", flush=True)
    print(f"lock benchmark, {date.today()}, {args.takes} takes from seed {args.seed}, {width}x{height} H.264, 1 core\n")
    print("| method | view | takes | refused | wrong size/octave | within 3 px | mean corner error (px, right keys) | median time (s) | slowest (s) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for method in ("lock", "hough", "hough, any order"):
        for view in list(VIEWS) + ["all"]:
            sel = [r for r in rows if r[0] == method and view in ("all", r[1])]
            refused = sum(1 for r in sel if r[5])
            wrong = sum(1 for r in sel if not r[5] and not r[2])
            good = [r for r in sel if not r[5] and r[2]]
            within = sum(1 for r in good if r[3] <= 3.0)
            mean = np.mean([r[3] for r in good]) if good else float("nan")
            seconds = [r[4] for r in sel]
            print(f"| {method} | {view} | {len(sel)} | {refused} | {wrong} | {within} | {mean:.1f} | {np.median(seconds):.2f} | {max(seconds):.2f} |")
    if args.orders > 1:
        print_spread(spread, args.orders)


def print_spread(spread: list[tuple[str, int, str, float]], orders: int) -> None:
    """The lock's results under each order of the points, and the takes whose outcome moves with it."""
    print(f"\nlock under {orders} orders of the same points (order 0: as given)\n")
    print("| order | refused | wrong size/octave | within 3 px | mean corner error (px, right keys) | 95th percentile (px) |")
    print("|---|---|---|---|---|---|")
    for order in range(orders):
        sel = [r for r in spread if r[1] == order]
        errors = np.array([r[3] for r in sel if r[2] in RIGHT_KEYS])
        count = {kind: sum(1 for r in sel if r[2] == kind) for kind in ("refused", "wrong", "within 3 px")}
        print(f"| {order} | {count['refused']} | {count['wrong']} | {count['within 3 px']} | "
              f"{errors.mean():.2f} | {np.percentile(errors, 95):.2f} |")
    takes = sorted({r[0] for r in spread})
    moved = [t for t in takes if len({r[2] for r in spread if r[0] == t}) > 1]
    ranges = {t: np.ptp([r[3] for r in spread if r[0] == t]) for t in takes
              if all(r[2] in RIGHT_KEYS for r in spread if r[0] == t)}
    print(f"\ntakes whose outcome changes with the order: {len(moved)} of {len(takes)}"
          + (f" ({', '.join(moved)})" if moved else ""))
    if ranges:
        worst = max(ranges, key=ranges.get)
        print(f"corner error range across orders (takes right under all): median {np.median(list(ranges.values())):.2f} px, "
              f"largest {ranges[worst]:.2f} px ({worst})")


if __name__ == "__main__":
    main()
