#!/usr/bin/env python3
"""The runtime on one CPU core: per-frame processing at 720p by stage and backend, the seed paper's
per-key crops beside it, `transcribe` against real time (all cores), and the peak memory of `run`.

Run: .venv/bin/python scripts/bench_runtime.py [--seconds S]
Renders one 1280x720, 30 fps studio take (overhead, seed 77) into a temporary folder, decodes its
frames into memory (capture excluded), then times warp, inference (features + head, all keys) and
decoding for every backend in the manifest (and torch eager when installed), and the default backend's
offline head, all in one run.
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import cv2
import numpy as np

from pianoedge.models.data import lock_of_take, rest_view
from pianoedge.models.evaluate import score
from pianoedge.notes import read_notes
from pianoedge.runtime.backend import open_backend
from pianoedge.runtime.manifest import read_manifest
from pianoedge.runtime.pipeline import Pipeline
from pianoedge.runtime.transcribe import Outputs, transcribe
from pianoedge.studio import music
from pianoedge.studio.take import render_take
from pianoedge.takes import find_takes


def stage_times(pipeline: Pipeline, frames: list[np.ndarray], fps: float) -> dict[str, np.ndarray]:
    out = {"warp": [], "inference": [], "decode": [], "total": []}
    for i, image in enumerate(frames):
        t0 = time.perf_counter()
        strip = pipeline.warp(image)
        t1 = time.perf_counter()
        answer = pipeline.posteriors(strip, i / fps)
        t2 = time.perf_counter()
        pipeline.decode(answer)
        t3 = time.perf_counter()
        for name, ms in zip(out, (t1 - t0, t2 - t1, t3 - t2, t3 - t0)):
            out[name].append(ms * 1000)
    return {k: np.array(v[20:]) for k, v in out.items()}  # the first 20 frames warm up


def seed_cost(frames: list[np.ndarray], lock, count: int) -> np.ndarray | None:
    """ms per frame of the seed paper's way: canonical 884x106 strip, key spans, 88 bundle crops, 2 CNNs."""
    try:
        import torch

        from pianoedge import keys as K
        from pianoedge.calibration.layout import key_spans
        from pianoedge.models.seed import CROP, SeedCNN, crop_keys
    except ImportError:
        return None
    torch.set_num_threads(1)
    cnns = {b: SeedCNN(CROP[("bundle", b)]).eval() for b in (False, True)}
    black = K.layout(lock.num_keys, lock.lowest_key).black_mask
    times = []
    with torch.no_grad():
        for image in frames[:count]:
            t = time.perf_counter()
            strip = lock.warp(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), K.CANONICAL_SIZE)
            spans = key_spans(strip, lock.num_keys, lock.lowest_key)
            for b in (False, True):
                cnns[b](torch.from_numpy(crop_keys(strip, spans, np.flatnonzero(black == b), "bundle", b)))
            times.append((time.perf_counter() - t) * 1000)
    return np.array(times[3:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=12.0)
    args = parser.parse_args()
    cores = os.sched_getaffinity(0) if hasattr(os, "sched_setaffinity") else None
    if cores:
        os.sched_setaffinity(0, {sorted(cores)[0]})
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(77)
        perf = music.exercise("arpeggio", rng, args.seconds, 36, 96)
        render_take(list(perf.notes), tmp, "bench", 77, num_keys=88, view="overhead", width=1280, height=720, fps=30.0)
        take = find_takes(tmp)[0]
        cap = cv2.VideoCapture(str(take.video))
        frames = []
        while True:
            ok, image = cap.read()
            if not ok:
                break
            frames.append(image)
        lock = lock_of_take(take)
        manifest = read_manifest()
        names = [n for n, a in manifest["artifacts"].items() if a["backend"] == "ort"]
        try:
            import torch  # noqa: F401

            names.append("torch")
        except ImportError:
            pass
        rows = []
        for name in names:
            backend = open_backend(name)
            size = backend.artifact.strip_size
            rest = rest_view(np.stack([lock.warp(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY), size) for f in frames[:180:20]]))
            rows.append((name, stage_times(Pipeline(lock, backend, rest, 30.0), frames, 30.0)))
            if name == manifest["default"] and "offline" in backend.artifact.heads:  # transcribe's (and run --look-ahead's) head
                rows.append((f"{name}, offline head", stage_times(Pipeline(lock, backend, rest, 30.0, "offline"), frames, 30.0)))
        seed = seed_cost(frames, lock, 40)

        if cores:  # transcribe: the whole machine, as a user runs it
            os.sched_setaffinity(0, cores)
        started = time.perf_counter()
        notes = transcribe(take.video, Outputs(Path(tmp) / "t.mid"))
        wall = time.perf_counter() - started
        duration = len(frames) / 30.0
        accuracy = score(take.notes(), read_notes(Path(tmp) / "t.mid"), 30.0, len(frames))

        child = ("from pianoedge.cli import main\n"
                 f"main(['run', '--source', {str(take.video)!r}, '--midi-out', {'file:' + str(Path(tmp) / 'r.mid')!r}])\n"
                 "print(next(line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM')))")
        done = subprocess.run([sys.executable, "-c", child], check=True, capture_output=True, text=True)
        peak_mb = int(done.stdout.split()[-1]) / 1024  # VmHWM (kB): this process's own peak, not its parent's

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), platform.processor())
    print(f"runtime on one core, {date.today()}, {cpu}, Python {platform.python_version()}, "
          f"{len(frames)} frames of 1280x720 (20 warm-up frames excluded), default backend: {manifest['default']}\n")
    print("| backend | warp p50 | inference p50 | decode p50 | total p50 ms | total p99 ms |")
    print("|---|---|---|---|---|---|")
    for name, t in rows:
        print(f"| {name} | {np.median(t['warp']):.2f} | {np.median(t['inference']):.2f} | {np.median(t['decode']):.2f} | "
              f"{np.median(t['total']):.2f} | {np.percentile(t['total'], 99):.2f} |")
    if seed is not None:
        default = dict(rows)[manifest["default"]]["total"]
        print(f"| seed paper (884x106 strip, 88 bundle crops, 2 CNNs, torch eager) | - | - | - | {np.median(seed):.1f} | "
              f"{np.percentile(seed, 99):.1f} |")
        print(f"\nseed / default backend (p50): {np.median(seed) / np.median(default):.0f}x")
    print(f"\ntranscribe (decode + lock + pipeline + MIDI), {duration:.1f} s of 720p30 video: {wall:.2f} s, "
          f"{duration / wall:.1f}x real time; {len(notes)} notes, onset F1 {accuracy['onset_f1']:.3f}, "
          f"frame F1 white {accuracy['frame_f1_white']:.3f} / black {accuracy['frame_f1_black']:.3f}")
    print(f"peak memory of `pianoedge run` on the same video: {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
