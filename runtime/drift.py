"""Never play from a stale lock: check every few seconds that the keyboard is still where the lock
says, go silent the moment it is not, and come back only with a lock that fits again.

A check (``Lock.check``: are the black keys where the lock puts them) costs a few thousand pixel
samples of the frame (about 1 ms), so it runs on one frame every ``CHECK_EVERY_S``. Hands hide some keys, so
one low score is not enough: after a low score the next frames are checked at once, and
``STRIKES`` low scores in a row mean the camera or the piano moved. Then the loop sends note-offs,
stops feeding the model, and looks for the keyboard again: first by following the camera with SIFT
from the view at lock time (one frame, ``calibration.follow``), else by a full lock on frames
gathered over the next seconds. Until one fits, nothing is played.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pianoedge.calibration import acquire
from pianoedge.calibration.follow import Reference, follow
from pianoedge.calibration.lockfile import Lock
from pianoedge.errors import PianoedgeError

CHECK_EVERY_S = 2.0  # seconds between checks while the lock fits
STRIKES = 3  # low scores in a row (checked on consecutive frames after the first) that mean the lock is stale
FOLLOW_EVERY_S = 1.0  # while lost: seconds between attempts to follow the camera from the reference view
GATHER_EVERY_S = 2.0 / acquire.FRAMES  # while lost: frames for a full lock, spread over about two seconds


@dataclass
class DriftWatch:
    """Feed it every frame's image and time; it says whether the lock may be used, and hands back a
    new lock once it has found the keyboard again."""

    lock: Lock
    view: np.ndarray  # a frame the lock was made on: what following the camera starts from
    lost: bool = False
    relocks: int = 0
    relock_frames: list | None = None  # the frames a fresh full lock was made on (to see the keys at rest again)
    last_score: float = 1.0
    _next_check: float = CHECK_EVERY_S
    _strikes: int = 0
    _next_follow: float = 0.0
    _gathered: list = field(default_factory=list)
    _next_gather: float = 0.0
    _reference: Reference | None = None  # SIFT features of ``view``, computed when first needed

    def observe(self, image: np.ndarray, t: float) -> str | None:
        """Check the lock on this frame when one is due. Returns "lost" when the lock has just gone stale,
        "found" when a new lock (``self.lock``) fits again, else None."""
        if not self.lost:
            if t < self._next_check:
                return None
            self.last_score = self.lock.check(image)
            self._strikes = self._strikes + 1 if self.last_score < acquire.MIN_FIT_SCORE else 0
            self._next_check = t if 0 < self._strikes < STRIKES else t + CHECK_EVERY_S
            if self._strikes < STRIKES:
                return None
            self.lost, self._strikes, self._gathered = True, 0, []
            self._next_follow = self._next_gather = t
            return "lost"
        return "found" if self._search(image, t) else None

    def _search(self, image: np.ndarray, t: float) -> bool:
        found, self.relock_frames = None, None
        if t >= self._next_follow:
            self._next_follow = t + FOLLOW_EVERY_S
            if self._reference is None:
                self._reference = Reference.of(self.lock, self.view)
            found = follow(self.lock, self._reference, image)
        if found is None and t >= self._next_gather:
            self._next_gather = t + GATHER_EVERY_S
            self._gathered.append(image.copy())
            if len(self._gathered) == acquire.FRAMES:
                frames, self._gathered = self._gathered, []
                try:
                    found, self.relock_frames = acquire.lock_frames(frames, self.lock.num_keys, self.lock.k1), frames
                except PianoedgeError:
                    found = None  # not yet: keep looking (and stay silent)
        if found is None:
            return False
        self.lock, self.lost = found, False
        self.view, self._reference = image.copy(), None  # the camera's new place: what to follow from next time
        self.relocks += 1
        self._next_check = t + CHECK_EVERY_S
        return True
