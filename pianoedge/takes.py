"""The data set layout of CONTRACTS.md: takes (video + MIDI + optional metadata and labels) and frame labels.

Frame ``i`` of a video is the instant ``i / fps`` of its MIDI (MIDI time 0 is the first frame).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import keys as K
from .errors import PianoedgeError
from .notes import Note, read_notes

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm")


@dataclass(frozen=True)
class Take:
    """One take: ``NAME.mp4`` + ``NAME.mid``, with ``NAME.json`` and ``NAME.npz`` when present."""

    video: Path
    midi: Path

    @property
    def name(self) -> str:
        return self.video.stem

    @property
    def meta_path(self) -> Path:
        return self.video.with_suffix(".json")

    @property
    def labels_path(self) -> Path:
        return self.video.with_suffix(".npz")

    def meta(self) -> dict:
        if not self.meta_path.is_file():
            return {}
        try:
            return json.loads(self.meta_path.read_text())
        except json.JSONDecodeError as exc:
            raise PianoedgeError(f"{self.meta_path} is not valid JSON ({exc}); fix or delete it") from None

    def notes(self) -> list[Note]:
        return read_notes(self.midi, float(self.meta().get("offset_s", 0.0)))


def find_takes(folder: str | Path) -> list[Take]:
    """Every take in a folder: a video with a MIDI file of the same name beside it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PianoedgeError(f"data folder not found: {folder}")
    takes = []
    for video in sorted(folder.iterdir()):
        if video.suffix.lower() in VIDEO_SUFFIXES and video.with_suffix(".mid").is_file():
            takes.append(Take(video, video.with_suffix(".mid")))
    return takes


def frame_labels(notes: list[Note], fps: float, frames: int) -> dict[str, np.ndarray]:
    """Per frame and key slot (``pitch - 21``): pressed, onset, offset, velocity and sub-frame onset time.

    ``pressed``: a note sounds at the frame's instant; ``onset``/``offset``: the note starts/ends
    nearest this frame; ``velocity``: the sounding (or starting) note's velocity; ``onset_shift``:
    the onset's time minus the frame's instant, in frames (-0.5 .. 0.5).
    """
    shape = (frames, K.NUM_SLOTS)
    pressed = np.zeros(shape, bool)
    onset = np.zeros(shape, bool)
    offset = np.zeros(shape, bool)
    velocity = np.zeros(shape, np.uint8)
    onset_shift = np.zeros(shape, np.float32)
    for n in notes:
        slot = n.pitch - K.LOWEST_PITCH
        if not 0 <= slot < K.NUM_SLOTS:
            raise PianoedgeError(f"note pitch {n.pitch} is outside the 88-key range {K.LOWEST_PITCH}..{K.HIGHEST_PITCH}")
        first = int(np.ceil(n.start * fps - 1e-9))  # first frame instant at or after the onset
        last = int(np.ceil(n.end * fps - 1e-9))  # first frame instant at or after the release
        a, b = max(first, 0), min(last, frames)
        if a < b:
            pressed[a:b, slot] = True
            velocity[a:b, slot] = n.velocity
        nearest = int(np.floor(n.start * fps + 0.5))
        if 0 <= nearest < frames:
            onset[nearest, slot] = True
            velocity[nearest, slot] = n.velocity
            onset_shift[nearest, slot] = n.start * fps - nearest
        end_frame = int(np.floor(n.end * fps + 0.5))
        if 0 <= end_frame < frames:
            offset[end_frame, slot] = True
    return {"pressed": pressed, "onset": onset, "offset": offset, "velocity": velocity, "onset_shift": onset_shift}
