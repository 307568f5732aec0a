"""Whole training sets: music from the corpus and exercises, rendered in parallel workers."""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from pianoedge import keys as K

from . import music
from .take import render_take

#: keyboard sizes drawn for generated takes (most pianos are 88-key)
SIZE_WEIGHTS = {88: 0.6, 76: 0.2, 61: 0.2}


def plan(count: int, seconds: float, seed: int, corpus_fraction: float = 0.5) -> list[tuple[str, music.Performance, int, int]]:
    """(name, performance, keyboard size, render seed) for each take; deterministic for ``seed``."""
    rng = np.random.default_rng(seed)
    sizes = list(SIZE_WEIGHTS)
    jobs = []
    kinds = music.EXERCISE_KINDS
    n_corpus = int(round(count * corpus_fraction))
    for i in range(count):
        size = int(rng.choice(sizes, p=list(SIZE_WEIGHTS.values())))
        lo, hi = K.keyboard_range(size)
        if i < n_corpus:
            perf = music.corpus_piece(rng, seconds, lo, hi)
        else:
            perf = music.exercise(kinds[(i - n_corpus) % len(kinds)], rng, seconds, lo, hi)
        jobs.append((f"{i:04d}-{perf.name}", perf, size, int(rng.integers(2**31))))
    return jobs


def _render(job: tuple[str, music.Performance, int, int], out_dir: str) -> str:
    import cv2

    cv2.setNumThreads(1)  # one core per worker
    name, perf, size, seed = job
    return str(render_take(list(perf.notes), out_dir, name, seed, source=perf.source, num_keys=size))


def build(out_dir: str | Path, count: int, seconds: float, seed: int, workers: int | None = None, progress=None) -> list[Path]:
    """Render ``count`` takes of about ``seconds`` each into ``out_dir``."""
    jobs = plan(count, seconds, seed)
    workers = workers or max(1, (os.cpu_count() or 1))
    done = []
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for path in pool.map(_render, jobs, [str(out_dir)] * len(jobs)):
            done.append(Path(path))
            if progress is not None:
                progress.update(1)
    return done
