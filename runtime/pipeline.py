"""The runtime pipeline, live and offline alike: frame -> fixed warp -> key features -> temporal head ->
note decoder -> note events. Plain data between the stages; the backend is any of ``backend.py``.

With the live head (``run``'s default) it is causal: a frame's events are decided when that frame
arrives (zero frames of added latency beyond the frame's own processing); velocity comes from the
frames up to the onset. With the offline head (``transcribe``'s, or ``run --look-ahead``) a frame's
events are decided a few frames later, when the frames after it have been seen, and carry its own time.
Given a ``PosteriorTrack`` (a file's transcription), it also keeps every frame's onset and key-down
posteriors, for placing the notes' starts and ends between frames once the file ends (``decode.file_notes``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pianoedge.calibration import acquire
from pianoedge.calibration.lockfile import Lock
from pianoedge.errors import PianoedgeError
from pianoedge.models.data import rest_view, to_strip
from pianoedge.models.decode import Event, NoteTracker, PosteriorTrack, Thresholds

from .backend import KeyStream


def locked(frames: list[np.ndarray], lock_path: Path | None = None, keys: int | None = None) -> Lock:
    """The lock in ``lock_path`` (checked against the frames' size), or one found in ``frames``."""
    if lock_path is None:
        return acquire.lock_frames(frames, keys)
    lock = Lock.load(lock_path)
    size = (frames[0].shape[1], frames[0].shape[0])
    if tuple(lock.image_size) != size:
        raise PianoedgeError(f"{lock_path} was made on {lock.image_size[0]}x{lock.image_size[1]} frames but this source gives "
                             f"{size[0]}x{size[1]}: lock this camera again (pianoedge lock)")
    return lock


def rest_strip(lock: Lock, frames: list[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """The keyboard at rest as the model expects it (``data.rest_view``), seen in ``frames`` spread over time (``data.rest_frames``)."""
    return rest_view(np.stack([to_strip(lock, f, size) for f in frames]), lock.num_keys, lock.lowest_key)


class Pipeline:
    """Feed frames (BGR images) one at a time; get the note events each one decides."""

    def __init__(self, lock: Lock, backend, rest: np.ndarray, fps: float, head: str = "live", track: PosteriorTrack | None = None):
        artifact = backend.artifact
        self.backend, self.rest, self.fps, self.head, self.track = backend, rest, fps, head, track
        self.lock, self.size = lock, artifact.strip_size
        self.keys = KeyStream(backend, rest, lock.num_keys, lock.lowest_key, fps, head)
        self.tracker = NoteTracker(lock.lowest_key, lock.num_keys, fps, Thresholds(**artifact.decoder))
        self._buffers: dict = {}  # the warp's output arrays, reused every frame

    def relocked(self, lock: Lock, frames: list[np.ndarray]) -> Pipeline:
        """A fresh pipeline on a new lock of the same keyboard (the camera moved): same model, no frames
        of context, no notes sounding, and the keys at rest seen again in ``frames`` (spread over time,
        as at the start). The old rest view will not do: from the camera's new place the keys look
        different, and on the bumped test take the old view, even under the true corners, gave wrong notes."""
        return Pipeline(lock, self.backend, rest_strip(lock, frames, self.size), self.fps, self.head, self.track)

    def warp(self, image: np.ndarray) -> np.ndarray:
        """The frame's strip, in a buffer reused by the next frame (the features are computed before then)."""
        return to_strip(self.lock, image, self.size, self._buffers)

    def posteriors(self, strip: np.ndarray, time: float | None = None) -> tuple[np.ndarray, float | None] | None:
        """((keys, 4) posteriors, time) of the newest frame, filmed at ``time``, its features joining the
        recent frames' (``KeyStream``); with the offline head, of the frame its look-ahead before (None at first)."""
        return self.keys.posteriors(strip, time)

    def decode(self, answer: tuple[np.ndarray, float | None] | None) -> list[Event]:
        """The events of the frame ``answer`` (``posteriors``) is for, at its time (its index / fps when None)."""
        if answer is None:
            return []
        probs, time = answer
        events = self.tracker.step(probs[:, 0], probs[:, 1], probs[:, 2], probs[:, 3], time)
        if self.track is not None:
            self.track.add(self.tracker.time, probs, self.lock.lowest_key)
        return events

    def step(self, image: np.ndarray, time: float | None = None) -> list[Event]:
        return self.decode(self.posteriors(self.warp(image), time))

    def finish(self) -> list[Event]:
        """The events of the frames still owed (look-ahead), then note-offs for every sounding note: end of
        input, shutdown or any fault."""
        try:
            owed = self.keys.flush()
        except Exception:  # the model itself failed (the fault being handled): the notes end all the same
            owed = []
        return [e for answer in owed for e in self.decode(answer)] + self.tracker.finish()
