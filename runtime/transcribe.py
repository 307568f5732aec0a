"""``pianoedge transcribe``: a muted piano video in; MIDI with velocities, and optionally the regenerated
audio, the video with that audio, a CSV of the notes and a piano-roll picture out. It is ``run``
(``live.run``: lock, the pipeline frame by frame, note-offs at the end) over the file, with the
notes kept for the outputs, and the model's offline head where it has one (a file has no latency to
keep: each frame is judged with the frames after it seen too), and each note's start placed between
frames at its onset posterior's peak and its end where its key-down posterior fell through the
release level (``decode.file_notes``).
"""
from __future__ import annotations

import csv
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from pianoedge.errors import PianoedgeError
from pianoedge.models.decode import PosteriorTrack, Thresholds, events_to_notes, file_notes
from pianoedge.notes import Note, write_notes

from . import audio, live
from .backend import open_backend
from .manifest import file_head
from .sinks import EventLog
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
    log = EventLog()
    view = _ProgressBar(progress, source.frame_count or 0, video.name) if progress else None
    track = PosteriorTrack()
    result = live.run(source, [log], lock_path, keys, backend, status=view, head=file_head(backend.artifact.heads), track=track)
    notes = file_notes(events_to_notes(log.events), track, Thresholds(**backend.artifact.decoder).frame_off)
    write_notes(outputs.midi, notes)
    if outputs.csv:
        with open(outputs.csv, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["onset_s", "offset_s", "pitch", "velocity"])
            writer.writerows([f"{n.start:.4f}", f"{n.end:.4f}", n.pitch, n.velocity] for n in notes)
    if outputs.roll:
        from pianoedge.models.evaluate import piano_roll_png

        piano_roll_png(outputs.roll, [], notes, source.fps, result["frames"], video.name)
    if outputs.audio or outputs.mux:
        wav = outputs.audio or outputs.mux.with_suffix(".wav")
        audio.render_wav(outputs.midi, wav, soundfont)
        if outputs.mux:
            audio.mux(video, wav, outputs.mux)
    return notes


class _ProgressBar:
    """``live.run``'s per-frame view as a progress bar, shown from the first frame (after the lock)."""

    def __init__(self, progress, total: int, name: str):
        self.progress, self.total, self.name = progress, total, name
        self.started, self.bar = False, None

    def update(self, events, work_ms: float, dropped: int) -> None:
        if not self.started:  # the progress factory may give no bar (no tqdm): ask once
            self.started, self.bar = True, self.progress(self.total, "frame", self.name)
        if self.bar is not None:
            self.bar.update(1)

    def say(self, text: str) -> None:
        """A message above the bar (tqdm's ``write``, to stderr like the bar), else on stderr."""
        if self.bar is not None and hasattr(self.bar, "write"):
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
