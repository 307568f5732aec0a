"""Reorder the point pairs that every ``cv2.findHomography`` call sees, to measure how much a lock
hangs on RANSAC's draw: the points stay the same, only the samples RANSAC draws from them differ
(``scripts/bench_lock.py --orders``, the lock's tests). A measuring tool: the lock never uses it."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import cv2
import numpy as np


@contextmanager
def shuffled_fits(order: int) -> Iterator[None]:
    """Within the block every ``cv2.findHomography`` call gets its pairs in a seeded order of their
    own (``order`` 0: as given) and returns its inlier mask in the caller's order."""
    real = cv2.findHomography

    def fit(src, dst, *args, **kwargs):
        src, dst = np.asarray(src), np.asarray(dst)
        perm = np.random.default_rng([order, len(src)]).permutation(len(src))
        h, mask = real(src[perm], dst[perm], *args, **kwargs)
        if mask is not None:
            back = np.empty_like(mask)
            back[perm] = mask
            mask = back
        return h, mask

    if order:
        cv2.findHomography = fit
    try:
        yield
    finally:
        cv2.findHomography = real
