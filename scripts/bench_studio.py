#!/usr/bin/env python3
"""Studio speed: frames per second rendering 1280x720 takes on one CPU core, per camera view.

Run: .venv/bin/python scripts/bench_studio.py [--frames N] [--resolution WxH]
Prints a table (Markdown) to paste into BENCHMARKS.md. The process is pinned to one core, and
OpenCV to one thread; "render+encode" also pins ffmpeg's H.264 encoder to that same core;
"key_change label" is the training label every take also gets (``studio.keychange``: each frame
rendered again without hands and warped to the model's strip).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from datetime import date
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from pianoedge.models.data import lock_of_take  # noqa: E402
from pianoedge.studio import keychange, music  # noqa: E402
from pianoedge.studio.params import VIEWS  # noqa: E402
from pianoedge.studio.take import TakeRenderer  # noqa: E402
from pianoedge.takes import Take  # noqa: E402
from pianoedge.video import H264Writer  # noqa: E402


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--resolution", default="1280x720")
    args = parser.parse_args()
    width, height = (int(v) for v in args.resolution.split("x"))
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    cv2.setNumThreads(1)
    rng = np.random.default_rng(0)
    notes = list(music.exercise("block_chords", rng, 12.0, 21, 108).notes) + list(music.exercise("fast_run", rng, 12.0, 21, 108).notes)
    print(f"studio speed, {date.today()}, {cpu_name()}, 1 core, {width}x{height}, {args.frames} frames per row\n")
    print("| view | setup (s) | render fps | render ms/frame (p50 / p95) | render+encode fps | key_change label ms/frame |")
    print("|---|---|---|---|---|---|")
    for view in VIEWS:
        t0 = time.perf_counter()
        take = TakeRenderer(notes, 1, num_keys=88, view=view, width=width, height=height, fps=30.0)
        setup = time.perf_counter() - t0
        count = min(args.frames, take.frame_count)
        times = []
        for i in range(count):
            t = time.perf_counter()
            take.render(i)
            times.append(time.perf_counter() - t)
        with tempfile.TemporaryDirectory() as tmp:
            video = Path(tmp) / "bench.mp4"
            t = time.perf_counter()
            with H264Writer(video, width, height, 30.0, crf=23) as writer:
                for i in range(count):
                    writer.write(take.render(i))
            encode_fps = count / (time.perf_counter() - t)
            video.with_suffix(".json").write_text(json.dumps(take.metadata("bench", 1)))
            lock = lock_of_take(Take(video, video.with_suffix(".mid")))
            t = time.perf_counter()
            keychange.key_change(take.renderer, take.samples[:count], lock)
            label_ms = 1000 * (time.perf_counter() - t) / count
        ms = np.array(times) * 1000
        print(f"| {view} | {setup:.2f} | {count / sum(times):.1f} | {np.median(ms):.1f} / {np.percentile(ms, 95):.1f} | {encode_fps:.1f} "
              f"| {label_ms:.1f} |")


if __name__ == "__main__":
    main()
