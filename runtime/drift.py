"""Never play from a stale lock: check every frame that the keyboard is still where the lock says,
hold back any frame in doubt, go silent the moment the lock is stale, and come back only with a lock
that fits again and a fresh view of the keys at rest.

A check (``Lock.check``: are the black keys where the lock puts them) samples a few thousand pixels
of the frame at points worked out once (about 0.1-0.5 ms at 720p), so every frame is checked. Hands
hide some keys, so one low score is not enough: a frame that scores low is held back (not played),
and ``STRIKES`` low scores in a row mean the camera or the piano moved; a frame that fits again
releases the frames held (a frame or two late, none lost). When the lock is stale the loop sends
note-offs, drops the held frames, stops feeding the model and looks for the keyboard again: by
following the camera with SIFT from the view at lock time (one frame, ``calibration.follow``), else by
a full lock on the frames it gathers over the next seconds. Either way it plays again only once those
frames are gathered: the model reads each frame against the keys at rest, and seen from the camera's
new place they look different (on a bumped take the old view gave wrong notes; ``Pipeline.relocked``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pianoedge.calibration import acquire
from pianoedge.calibration.follow import Reference, follow
from pianoedge.calibration.lockfile import Lock
from pianoedge.errors import PianoedgeError

STRIKES = 3  # low scores in a row (consecutive frames) that mean the lock is stale
FOLLOW_EVERY_S = 1.0  # while lost: seconds between attempts to follow the camera from the reference view
GATHER_EVERY_S = 2.0 / acquire.FRAMES  # while lost: frames for a full lock and the keys at rest, spread over about two seconds


@dataclass
class DriftWatch:
    """Feed it every frame's image and time; it says whether the lock may be used, and hands back a
    new lock once it has found the keyboard again."""

    lock: Lock
    view: np.ndarray  # a frame the lock was made on: what following the camera starts from
    lost: bool = False
    relocks: int = 0
    relock_frames: list | None = None  # the frames gathered after the lock was lost (to see the keys at rest again)
    last_score: float = 1.0
    _strikes: int = 0
    _next_follow: float = 0.0
    _followed: Lock | None = None  # the lock carried over by following the camera, while the frames are gathered
    _gathered: list = field(default_factory=list)
    _next_gather: float = 0.0
    _reference: Reference | None = None  # SIFT features of ``view``, computed when first needed

    def observe(self, image: np.ndarray, t: float) -> str | None:
        """Check the lock on this frame. Returns "fits" (play it, after any frames held), "doubt" (a
        low score: hold it back), "lost" when the lock has just gone stale (drop the frames held),
        "found" when a new lock (``self.lock``) fits again (``relock_frames``: the frames gathered
        meanwhile), else None (still lost)."""
        if self.lost:
            return "found" if self._search(image, t) else None
        self.last_score = self.lock.check(image)
        self._strikes = self._strikes + 1 if self.last_score < acquire.MIN_FIT_SCORE else 0
        if self._strikes == 0:
            return "fits"
        if self._strikes < STRIKES:
            return "doubt"
        self.lost, self._strikes, self._gathered, self._followed = True, 0, [], None
        self._next_follow = self._next_gather = t
        return "lost"

    def _search(self, image: np.ndarray, t: float) -> bool:
        if self._followed is None and t >= self._next_follow:
            self._next_follow = t + FOLLOW_EVERY_S
            if self._reference is None:
                self._reference = Reference.of(self.lock, self.view)
            self._followed = follow(self.lock, self._reference, image)
        if t < self._next_gather:
            return False
        self._next_gather = t + GATHER_EVERY_S
        self._gathered.append(image.copy())
        if len(self._gathered) < acquire.FRAMES:
            return False
        frames, self._gathered = self._gathered, []
        found, self._followed = self._followed, None
        if found is None or found.check(image) < acquire.MIN_FIT_SCORE:
            try:
                found = acquire.lock_frames(frames, self.lock.num_keys, self.lock.k1)
            except PianoedgeError:
                return False  # not yet: keep looking (and stay silent)
        self.lock, self.lost, self.relock_frames = found, False, frames
        self.view, self._reference = image.copy(), None  # the camera's new place: what to follow from next time
        self.relocks += 1
        return True
