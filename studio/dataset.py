"""Whole training sets: music from the corpus and exercises, rendered in parallel workers."""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from pianoedge import keys as K
from pianoedge.takes import Take, find_takes

from . import music
from .take import relabel, render_take, studio_metadata

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


def _pool(workers: int | None) -> ProcessPoolExecutor:
    """``workers`` worker processes (default: one per core), started afresh (spawned): a forked copy of a
    process whose OpenCV or torch threads are running can deadlock."""
    return ProcessPoolExecutor(max_workers=workers or max(1, os.cpu_count() or 1), mp_context=multiprocessing.get_context("spawn"))


def _render(job: tuple[str, music.Performance, int, int], out_dir: str) -> str:
    import cv2

    cv2.setNumThreads(1)  # one core per worker
    name, perf, size, seed = job
    return str(render_take(list(perf.notes), out_dir, name, seed, source=perf.source, num_keys=size))


def build(out_dir: str | Path, count: int, seconds: float, seed: int, workers: int | None = None, progress=None) -> list[Path]:
    """Render ``count`` takes of about ``seconds`` each into ``out_dir``."""
    jobs = plan(count, seconds, seed)
    done = []
    with _pool(workers) as pool:
        for path in pool.map(_render, jobs, [str(out_dir)] * len(jobs)):
            done.append(Path(path))
            if progress is not None:
                progress.update(1)
    return done


def _relabel(take: Take) -> None:
    import cv2

    cv2.setNumThreads(1)
    relabel(take)


def relabel_all(folders: list[str | Path], workers: int | None = None, progress=None) -> int:
    """Add the labels this studio writes and older takes lack (``take.relabel``) to every take in ``folders``;
    returns how many. Every take is checked to be a studio take before any is written."""
    takes = [t for folder in folders for t in find_takes(folder)]
    for take in takes:
        studio_metadata(take)
    if progress is not None:
        progress.reset(total=len(takes))
    with _pool(workers) as pool:
        for _ in pool.map(_relabel, takes):
            if progress is not None:
                progress.update(1)
    return len(takes)
