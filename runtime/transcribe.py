"""``pianoedge transcribe``: a muted piano video in; MIDI with velocities, and optionally the regenerated
audio, the video with that audio, a CSV of the notes and a piano-roll picture out. It runs the live
pipeline (``pipeline.Pipeline``) frame by frame over the file.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from pianoedge.calibration import acquire
from pianoedge.errors import PianoedgeError
from pianoedge.models.decode import events_to_notes
from pianoedge.notes import Note, write_notes

from . import audio
from .backend import open_backend
from .pipeline import Pipeline, locked, rest_strip
from .source import FileSource


@dataclass
class Outputs:
    midi: Path
    audio: Path | None = None
    mux: Path | None = None
    csv: Path | None = None
    roll: Path | None = None

    def check_writable(self) -> None:
        """Fail before any work when an output folder cannot be written."""
        for path in filter(None, (self.midi, self.audio, self.mux, self.csv, self.roll)):
            folder = Path(path).resolve().parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise PianoedgeError(f"cannot create the output folder {folder}: {exc.strerror}") from None
            if not os.access(folder, os.W_OK):
                raise PianoedgeError(f"output folder {folder} is not writable: choose another -o / --audio / --mux path")


def transcribe(video: str | Path, outputs: Outputs, lock_path: Path | None = None, keys: int | None = None,
               backend_name: str | None = None, soundfont: Path | None = None, progress=None) -> list[Note]:
    """Transcribe one video; returns the notes (also written to ``outputs``)."""
    video = Path(video)
    outputs.check_writable()
    if outputs.audio or outputs.mux:
        audio.find_soundfont(soundfont)  # a missing SoundFont fails now, not after the video
    backend = open_backend(backend_name)
    source = FileSource(video)
    try:
        frames = acquire.frames_from_video(video)
        lock = locked(frames, lock_path, keys)
        pipeline = Pipeline(lock, backend, rest_strip(lock, frames, backend.artifact.strip_size), source.fps)
        bar = progress(source.frame_count or 0, "frame", video.name) if progress else None
        events = []
        frame_count = 0
        for frame in source:
            events += pipeline.step(frame.image, frame.time)
            frame_count += 1
            if bar is not None:
                bar.update(1)
        events += pipeline.finish()
        if bar is not None:
            bar.close()
    finally:
        source.close()
    notes = events_to_notes(events)
    write_notes(outputs.midi, notes)
    if outputs.csv:
        with open(outputs.csv, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["onset_s", "offset_s", "pitch", "velocity"])
            writer.writerows([f"{n.start:.4f}", f"{n.end:.4f}", n.pitch, n.velocity] for n in notes)
    if outputs.roll:
        from pianoedge.models.evaluate import piano_roll_png

        piano_roll_png(outputs.roll, [], notes, source.fps, frame_count, video.name)
    if outputs.audio or outputs.mux:
        wav = outputs.audio or outputs.mux.with_suffix(".wav")
        audio.render_wav(outputs.midi, wav, soundfont)
        if outputs.mux:
            audio.mux(video, wav, outputs.mux)
    return notes
