#!/usr/bin/env python3
"""Per-frame cost of classifying every key: PianoNet (one trunk over the strip, per-key heads; the shipped
width and a trunk twice as wide, ``train --width 2``) against the seed paper's per-key crops (88 crops
through the bundle CNNs), on one CPU core with torch.

Run: python scripts/bench_models.py [--frames N]
Prints a table (ms per frame, p50/p90) and the ratio, measured in one run.
"""
from __future__ import annotations

import argparse
import time
from datetime import date

import numpy as np
import torch

from pianoedge import keys as K
from pianoedge.calibration.layout import key_spans
from pianoedge.models.data import STRIP_SIZE, black_flags, key_pool
from pianoedge.models.net import CONTEXT, FEATURES, PianoNet
from pianoedge.models.seed import CROP, SeedCNN, crop_keys


def timed(fns: dict, frames: int) -> dict[str, np.ndarray]:
    """ms per call of each function, the functions taking turns frame by frame after 20 rounds of warm-up
    (measured one after another, the first ran slower: torch's first large allocations fault pages in)."""
    out = {name: [] for name in fns}
    for round_ in range(20 + frames):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            if round_ >= 20:
                out[name].append((time.perf_counter() - t) * 1000)
    return {name: np.array(ms) for name, ms in out.items()}


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    strip = rng.integers(0, 256, (STRIP_SIZE[1], STRIP_SIZE[0]), dtype=np.uint8)
    canonical = rng.integers(0, 256, (K.CANONICAL_SIZE[1], K.CANONICAL_SIZE[0]), dtype=np.uint8)
    pool, black = torch.from_numpy(key_pool(88, 21, STRIP_SIZE[0])), torch.from_numpy(black_flags(88, 21))
    rest = torch.from_numpy(strip)[None]

    def pianonet(width: int):
        net = PianoNet(STRIP_SIZE[1], width=width).eval()
        history = torch.zeros(1, CONTEXT, 88, FEATURES)  # each model's own recent features

        def frame():
            feats = net.key_features(torch.from_numpy(strip)[None], rest, pool)
            history[:, :-1] = history[:, 1:].clone()
            history[:, -1] = feats
            return net.head(history, black)
        return frame

    cnns = {b: SeedCNN(CROP[("bundle", b)]).eval() for b in (False, True)}
    is_black = K.layout(88).black_mask

    def seed():
        spans = key_spans(canonical, 88)
        for b in (False, True):
            cnns[b](torch.from_numpy(crop_keys(canonical, spans, np.flatnonzero(is_black == b), "bundle", b)))

    rows = list(timed({"pianonet (trunk + head, all 88 keys)": pianonet(1), "seed paper (88 bundle crops + 2 CNNs)": seed,
                       "pianonet, trunk width 2": pianonet(2)}, args.frames).items())
    print(f"model cost per frame, {date.today()}, torch {torch.__version__}, 1 thread, {args.frames} frames\n")
    print("| model | p50 ms | p90 ms |")
    print("|---|---|---|")
    for name, ms in rows:
        print(f"| {name} | {np.percentile(ms, 50):.2f} | {np.percentile(ms, 90):.2f} |")
    p50 = [np.percentile(ms, 50) for _, ms in rows]
    print(f"\nseed / pianonet (p50): {p50[1] / p50[0]:.1f}x; pianonet width 2 / width 1: {p50[2] / p50[0]:.1f}x")


if __name__ == "__main__":
    main()
